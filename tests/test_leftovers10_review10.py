"""Leftovers of earlier sessions' notes mended in review 10: label words, argument checks before a load, partial
ONNX files of killed exports, a cut JSONL output read as a manifest, progress in a log, and sdd compare's --json."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.errors import ConfigError, ProtocolError

# --- 1. labels_csv takes the words a labelled folder takes -------------------------------------------------------


def test_a_labels_csv_reads_bona_fide_spelt_as_a_folder_may_be(tmp_path):
    # the folder reader took bona_fide/ (In-the-Wild's spelling); a labels CSV refused "bona_fide" and "bona fide"
    from sddkit.data.protocols import read_protocol

    (tmp_path / "labels.csv").write_text(
        "path,label\na.wav,bona_fide\nb.wav,bona fide\nc.wav,Bona Fide\nd.wav,BONA_FIDE\ne.wav,spoof\n"
    )
    table = read_protocol(tmp_path / "labels.csv", format="labels_csv")
    assert list(table.column("label")) == ["bonafide"] * 4 + ["spoof"]
    assert list(table.column("attack"))[:4] == ["bonafide"] * 4


def test_every_folder_name_of_a_class_is_a_label_of_that_class_in_a_labels_csv(tmp_path):
    # one mapping for both readers: a spelling added to one can no longer be missing from the other
    from sddkit.data.protocols import read_protocol
    from sddkit.data.protocols.folder import FOLDER_LABELS, label_folders

    words = sorted(FOLDER_LABELS)
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"f{i}.wav,{w}\n" for i, w in enumerate(words)))
    table = read_protocol(tmp_path / "labels.csv", format="labels_csv")
    assert list(table.column("label")) == [FOLDER_LABELS[w] for w in words]
    (tmp_path / "set" / "bona fide").mkdir(parents=True)  # and a folder so named is a bona fide folder
    (tmp_path / "set" / "spoof").mkdir()
    assert [label for _, label in label_folders(tmp_path / "set")] == ["bonafide", "spoof"]


# --- 2. load_detector checks its arguments before it loads the model ---------------------------------------------


def _no_load(*args, **kwargs):
    raise AssertionError("the model was loaded before the arguments were checked")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8", True])
def test_load_detector_refuses_a_bad_batch_size_before_it_loads_the_model(tmp_path, monkeypatch, batch_size):
    # batch_size=0 was refused by ScoringDetector only once the whole model had been read and built
    import sddkit
    import sddkit.detectors.model_dir as model_dir

    model = save_tiny_lcnn(tmp_path / "m")
    monkeypatch.setattr(model_dir, "load_model_dir", _no_load)
    with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1, got "):
        sddkit.load_detector(model, batch_size=batch_size)
    with pytest.raises(ConfigError, match="batch_size"):  # the bundled model too (path None)
        sddkit.load_detector(None, batch_size=batch_size)


def test_load_detector_names_a_bad_batch_size_before_a_missing_model(tmp_path):
    # the argument is the caller's mistake whatever the path: it is not hidden behind the load's own error
    import sddkit

    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        sddkit.load_detector(tmp_path / "no-such-model", batch_size=0)


def test_an_onnx_detector_refuses_a_bad_batch_size_before_it_reads_the_graph(tmp_path, monkeypatch):
    import sddkit
    from sddkit.scoring import onnx_export

    monkeypatch.setattr(onnx_export, "OnnxRunner", _no_load)
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"not read")
    for load in (
        lambda: onnx_export.load_onnx_detector(graph, batch_size=0),
        lambda: sddkit.load_detector(graph, backend="onnx", batch_size=0),
    ):
        with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
            load()


def test_a_good_batch_size_still_loads_and_scores(tmp_path):
    import sddkit

    detector = sddkit.load_detector(save_tiny_lcnn(tmp_path / "m"), batch_size=np.int64(3))
    assert detector.batch_size == 3
    x = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert np.isfinite(detector.score(x, 16000).score)


# --- 3. a killed export's OUT.<pid>.partial is removed by the next export to OUT ---------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_export_removes_the_partial_files_of_killed_exports_to_its_out_only(tiny_stats, tmp_path, capsys):
    # a crashed export left OUT.<pid>.partial (a whole graph's size) beside OUT, and no later export removed it
    model = tiny_stats(tmp_path / "m")
    out = tmp_path / "m.onnx"
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [tmp_path / f"m.onnx.{dead}.partial", tmp_path / f"m.onnx.{dead}.partial.tmp"]
        kept = [
            tmp_path / f"m.onnx.{live.pid}.partial",  # an export still running: never touched
            tmp_path / "m.onnx.partial",  # not an export's name
            tmp_path / f"other.onnx.{dead}.partial",  # another out's
            tmp_path / f"m.onnx.x{dead}.partial",
        ]
        for path in [*stale, *kept]:
            path.write_bytes(b"half a graph")
        assert main(["export-onnx", "--model", str(model), "--out", str(out)]) == 0
        assert [p.exists() for p in stale] == [False, False]
        assert all(p.read_bytes() == b"half a graph" for p in kept)
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["removed_partials"] == [str(p) for p in sorted(stale)]
        for path in stale:  # said, not done silently
            assert f"sdd export-onnx: note: removed {path}, left by an export that did not finish" in captured.err
    finally:
        live.kill()
        live.wait()
    # that export ended without a word: its partial file is now a killed export's, and the next export's clean-up
    # (export_onnx calls it first, as above) removes it
    from sddkit.scoring.onnx_export import remove_stale_partials

    assert remove_stale_partials(out) == [kept[0]]
    assert remove_stale_partials(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m", "m.onnx", *(p.name for p in kept[1:])])


# --- 4. a cut JSONL output given as a manifest -------------------------------------------------------------------


def _cut_output(tmp_path: Path, tail: str) -> Path:
    for name in ("a.wav", "b.wav"):
        write_noise_wav(tmp_path / name, 0.6, seed=len(name))
    rows = [{"path": str(tmp_path / n), "score": 1.5, "decision": "bonafide", "error": ""} for n in ("a.wav", "b.wav")]
    out = tmp_path / "scores.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return out


def test_a_jsonl_output_cut_short_is_named_so_when_read_as_a_manifest(tmp_path, capsys):
    # a crash while sdd score wrote its last row: read as a manifest the file was taken for a CSV and refused as
    # "not a manifest sddkit understands (... lines like '{"path": ...' are not audio paths)"
    from sddkit.scoring.batch import expand_inputs

    out = _cut_output(tmp_path, '{"path": "' + str(tmp_path / "c.w"))
    with pytest.raises(ProtocolError) as err:
        expand_inputs([out])
    message = str(err.value)
    assert f"{out}: JSON lines whose last line (line 3) is incomplete, cut short" in message
    assert f"Run that sdd score again with --out {out} to complete it" in message
    model = save_tiny_lcnn(tmp_path / "m")
    code = main(["score", str(out), "--model", str(model), "--out", str(tmp_path / "again.jsonl"), "--quiet"])
    assert code != 0
    assert "line 3) is incomplete, cut short" in one_line_error(capsys, "score")


def test_a_jsonl_manifest_whose_last_line_is_not_json_says_so(tmp_path):
    from sddkit.scoring.batch import expand_inputs

    out = _cut_output(tmp_path, '{"path": oops}\n\n')
    with pytest.raises(ProtocolError, match=r"last line \(line 3\) is not complete JSON: mend or remove it"):
        expand_inputs([out])
    whole = _cut_output(tmp_path, "")  # a whole output still lists its files
    assert expand_inputs([whole]) == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]


# --- 5. no carriage-return redraws in a redirected log -----------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_log(monkeypatch):
    from tqdm import std

    from sddkit import progress

    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress.progress_bar(total=4, desc="sdd score", unit="file")
    assert isinstance(bar, std.tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    log = progress.progress_bar(total=4, desc="sdd score", unit="file")
    assert isinstance(log, progress.LogProgress)
    off = progress.progress_bar(total=4, desc="sdd score", enabled=False)
    assert isinstance(off, std.tqdm) and off.disable
    # in a Jupyter kernel (stderr no terminal either) tqdm.auto's widget is kept: it draws no carriage returns
    import tqdm.auto

    widget = type("tqdm_notebook", (std.tqdm,), {"__module__": "tqdm.notebook"})
    monkeypatch.setattr(tqdm.auto, "tqdm", widget)
    assert type(progress.progress_bar(total=4, desc="sdd score")) is widget
    line = progress.LogProgress(total=200, desc="train", initial=50, interval=0)
    line.update(30)
    line.set_postfix(val_eer="0.1234")
    assert line.line().startswith("train: 80/200 it (40%), ") and line.line().endswith(" elapsed, val_eer=0.1234")


def test_sdd_score_writes_no_carriage_returns_into_a_redirected_stderr(tmp_path, capsys, monkeypatch):
    # `sdd score ... 2> log`: tqdm redrew its bar into the log, every redraw after a carriage return
    from sddkit import progress

    model = save_tiny_lcnn(tmp_path / "m")
    for i in range(3):
        write_noise_wav(tmp_path / "in" / f"{i}.wav", 0.6, seed=i)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # a line at every update
    assert main(["score", str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "sdd score: 3/3 files (100%), " in err


def test_every_progress_bar_of_sddkit_comes_from_the_one_helper():
    # scoring, training (and so sdd cv's folds) and robustness each made their own tqdm bar
    from sddkit import progress

    helper = Path(progress.__file__)
    users = [p for p in helper.parent.rglob("*.py") if p != helper and "from tqdm" in p.read_text(encoding="utf-8")]
    assert users == []
    for module in ("scoring/batch.py", "training/trainer.py", "evaluation/robustness.py"):
        assert "progress_bar(" in (helper.parent / module).read_text(encoding="utf-8")


# --- 6. sdd compare --json says which file it replaced ----------------------------------------------------------


def test_sdd_compare_json_names_the_file_it_replaces(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    (tmp_path / "p.csv").write_text(
        "path,label\n" + "".join(f"f{i}.wav,{'bonafide' if y else 'spoof'}\n" for i, y in enumerate(labels))
    )
    for name, sep in (("a", 1.0), ("b", 2.0)):
        scores = rng.normal(size=40) + sep * labels
        (tmp_path / f"{name}.csv").write_text(
            "path,score\n" + "".join(f"f{i}.wav,{float(s)!r}\n" for i, s in enumerate(scores))
        )
    out = tmp_path / "c.json"
    argv = ["compare", "--protocol", str(tmp_path / "p.csv"), "--baseline", str(tmp_path / "a.csv")]
    argv += ["--system", str(tmp_path / "b.csv"), "--bootstrap", "50", "--json", str(out)]
    assert main(argv) == 0
    assert "replaced" not in capsys.readouterr().err
    first = out.read_text()
    assert main([*argv, "--seed", "1"]) == 0
    err = capsys.readouterr().err
    assert f"sdd compare: note: replaced the earlier comparison {out}, written " in err
    assert out.read_text() != first  # still replaced
    assert json.loads(out.read_text())["bootstrap"]["seed"] == 1
    assert os.listdir(tmp_path).count(".c.json.tmp") == 0
