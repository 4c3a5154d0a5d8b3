"""Leftovers of earlier sessions' notes mended in the twenty-eighth."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector


def test_an_export_leaves_another_export_to_the_same_out_alone(tiny_stats, tmp_path):
    # two exports to one `out` at once wrote one temporary graph, OUT.partial: the first to finish replaced `out`
    # with it and the other's check then read (and removed) a graph it had not written
    model = tiny_stats(tmp_path / "m")
    out = tmp_path / "m.onnx"
    other = tmp_path / "m.onnx.partial"  # where the other export's graph lay
    other.write_bytes(b"another export's graph, being written")
    export_onnx(model, out)
    assert other.read_bytes() == b"another export's graph, being written"
    assert load_onnx_detector(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.onnx", "m.onnx.partial"]


def test_a_dotted_override_of_a_component_the_recipe_does_not_name_says_so():
    # `sdd train recipe.yaml strategy.beta=0.5` on an ERM recipe (no strategy named) made {beta: 0.5} and the error
    # said only "a strategy needs a 'name'"
    from sddkit.errors import ConfigError
    from sddkit.training import STRATEGIES

    with pytest.raises(ConfigError) as err:
        STRATEGIES.parse({"beta": 0.5}, path="strategy")
    message = str(err.value)
    assert "needs a 'name'" in message and "it has only {beta: 0.5}" in message
    assert "'strategy={name: NAME, beta: 0.5}'" in message
    with pytest.raises(ConfigError) as err:  # a list item is no target of a dotted override: no such hint
        STRATEGIES.parse({"beta": 0.5}, path="augment[0]")
    assert "dotted override" not in str(err.value)


def _sixty_trials():
    """(a protocol table of 30 bona fide and 30 spoof trials, their scores: the classes 1.5 apart)."""
    from sddkit.data.table import UtteranceTable

    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    scores = rng.normal(size=60) + 1.5 * labels
    table = UtteranceTable.from_records(
        {"utt_id": f"u{i}", "label": "bonafide" if y else "spoof", "attack": "-" if y else "A01"}
        for i, y in enumerate(labels)
    )
    return table, scores


def test_an_interval_of_too_few_replicates_is_not_called_a_95_percent_ci():
    # `sdd eval --bootstrap 10` warned that the interval is not a 95 % one, and its summary line and report.md then
    # printed "(95% CI a to b)" all the same
    from sddkit.evaluation import EvalConfig, evaluate, render_markdown

    table, scores = _sixty_trials()
    few = evaluate(table, scores, EvalConfig(bootstrap=10))
    low, high = few.pooled["eer_ci"]
    for text, digits in ((few.summary(), 2), (render_markdown(few), 3)):
        assert "(95% CI" not in text
        assert f"(bootstrap interval {low:.{digits}f} to {high:.{digits}f}, too few replicates for a 95% CI)" in text
    enough = evaluate(table, scores, EvalConfig(bootstrap=40))
    low, high = enough.pooled["eer_ci"]
    assert f"(95% CI {low:.2f} to {high:.2f})" in enough.summary()


def test_a_csv_score_file_may_name_its_score_column_cm_score(tmp_path):
    # the TSV and ASVspoof 5 readers took `cm_score`, the CSV reader only `score` and `cm-score`
    from sddkit.evaluation.scores import read_scores

    path = tmp_path / "s.csv"
    path.write_text("utt_id,cm_score\nu1,0.5\nu2,-1.25\n")
    scores = read_scores(path)
    assert list(scores.ids) == ["u1", "u2"] and list(scores.scores) == [0.5, -1.25]


def test_a_duration_limit_below_the_models_shortest_input_is_refused(tmp_path, capsys):
    # `sdd score --max-duration-s 0.05` ran and wrote an error row for every file (journey9's leftover)
    import soundfile as sf

    from sddkit.cli.main import main

    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    out = tmp_path / "s.csv"
    assert main(["score", str(wav), "--out", str(out), "--max-duration-s", "0.05", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--max-duration-s 0.05: below this model's shortest input, 0.1 s" in err
    assert not out.exists()
    # a limit the file is over but the model's minimum is not: it runs, and its one file gets the error row
    assert main(["score", str(wav), "--out", str(out), "--max-duration-s", "0.5", "--quiet"]) == 1
    # the error row names the option (the decoder's words are "max_duration", which sdd score has no option of)
    assert "max_duration 0.5 s (decoding stopped there); sdd score --max-duration-s sets the limit (0: none)" in (
        out.read_text()
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_output_read_as_a_manifest_from_another_folder_finds_its_files(tmp_path, monkeypatch, suffix):
    # its relative paths are relative to the folder it was written from (`cwd` of its run record): scored again
    # with another model from another folder, every file was "no such file" (diffrev10's leftover)
    import soundfile as sf

    from sddkit.cli.main import main

    (tmp_path / "b" / "clips").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "b" / "clips" / "a.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    first = tmp_path / "a" / f"scores{suffix}"
    monkeypatch.chdir(tmp_path / "b")
    assert main(["score", "clips/a.wav", "--out", str(first), "--quiet"]) == 0
    assert "clips/a.wav" in first.read_text()  # written relative to b/
    monkeypatch.chdir(tmp_path / "c")
    again = tmp_path / "c" / "again.csv"
    assert main(["score", str(first), "--out", str(again), "--quiet"]) == 0
    rows = again.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(tmp_path / "b" / "clips" / "a.wav") + ",")
    assert rows[1].split(",")[1] != ""  # scored, not an error row


def test_paired_runs_of_different_lengths_are_called_so():
    # numpy's "inhomogeneous shape" came out as "scores_a are not numbers" (diffrev9's leftover)
    from sddkit.metrics import MetricError, eer, paired_bootstrap

    labels = np.array([0, 1, 0, 1])
    with pytest.raises(MetricError, match=r"^scores_a: runs of different lengths \[4, 3\]: every run scores the same"):
        paired_bootstrap(eer, labels, [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3]], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(MetricError, match="scores_b are not numbers"):  # no runs of lengths: numbers it is not
        paired_bootstrap(eer, labels, [0.1, 0.2, 0.3, 0.4], ["a", "b", "c", "d"])


def test_report_md_says_how_its_interval_was_drawn():
    """report.md gave "95% CI a to b" without its replicates or seed (report.json beside it holds both)."""
    from sddkit.evaluation import EvalConfig, evaluate, render_markdown

    table, scores = _sixty_trials()
    assert "The EER interval: 40 bootstrap replicates, seed 7." in render_markdown(
        evaluate(table, scores, EvalConfig(bootstrap=40, seed=7))
    )
    assert "bootstrap replicates" not in render_markdown(evaluate(table, scores, EvalConfig(bootstrap=0)))
