"""Review of the twenty-seventh session's changes (diffrev8): defects mended, each with its test."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from sddkit.audio.io import load_audio
from sddkit.errors import AudioDecodeError

SR = 16000


def _write_mp4(path, seconds: float, codec: str = "aac", *, gap_at: float | None = None, gap_s: float = 0.0, **options):
    """``path``: an MP4 of ``seconds`` of noise; with ``gap_at``, the packets from that second on are stamped
    ``gap_s`` later (a recorder that paused its audio): a whole file whose timeline has a hole."""
    pcm = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR)) * 32767).astype(np.int16)[None, :]
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=SR)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SR, 0, Fraction(1, SR)
        resampler = av.AudioResampler(
            format=stream.format.name, layout="mono", rate=SR, frame_size=stream.codec_context.frame_size or None
        )
        packets, done = [], 0
        for part in resampler.resample(frame):
            part.pts, part.time_base = done, Fraction(1, SR)
            done += part.samples
            packets += stream.encode(part)
        packets += stream.encode(None)
        for packet in packets:
            if gap_at is not None and packet.pts is not None and packet.pts >= gap_at * SR:
                packet.pts += int(gap_s * SR)
                packet.dts += int(gap_s * SR)
            container.mux(packet)


@pytest.mark.parametrize("codec", ["aac", "libmp3lame"])
def test_a_whole_mp4_with_a_gap_in_its_timeline_is_not_refused_as_truncated(tmp_path, codec):
    # the stream's length counts the 0.5 s hole, which decodes to nothing: the samples fall short of it as a cut
    # file's do, but the packets reach the end; it was refused as "truncated ... an incomplete download or copy"
    _write_mp4(tmp_path / "paused.mp4", 3.0, codec, gap_at=1.0, gap_s=0.5)
    with av.open(str(tmp_path / "paused.mp4")) as container:
        stream = container.streams.audio[0]
        assert float(stream.duration * stream.time_base) > 3.4  # the header counts the hole
    audio = load_audio(tmp_path / "paused.mp4")
    assert abs(audio.size - 3 * SR) <= 2048  # the 3 s of audio it holds, as before the truncation check


def test_an_mp4_cut_off_is_still_refused_as_truncated(tmp_path):
    _write_mp4(tmp_path / "whole.mp4", 4.0, movflags="faststart")
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        AudioDecodeError, match=r"truncated: the header declares 4\.\d\d s, the audio data ends at 1\.9"
    ):
        load_audio(tmp_path / "cut.mp4")


# --- sdd robustness: journals of the previous version ---------------------------------------------------------


def _robustness_setup(root):
    import soundfile as sf
    from scoring_support import save_tiny_lcnn

    rng = np.random.default_rng(8)
    for top in ("a", "b"):
        for label in ("bonafide", "spoof"):
            (root / top / "data" / label).mkdir(parents=True)
            for i in range(4):
                x = ((0.02 if label == "spoof" else 0.1) * rng.standard_normal(6000 + 900 * i)).astype(np.float32)
                sf.write(root / top / "data" / label / f"u{i}.wav", x, SR)
    return save_tiny_lcnn(root / "model")


def _robustness_args(model, protocol, out) -> list[str]:
    return [
        "robustness",
        *("--model", str(model), "--protocol", str(protocol), "--out", str(out)),
        *("--conditions", "mulaw", "--workers", "0", "--batch-size", "4", "--quiet"),
    ]


def _as_written_before(journal) -> None:
    """Rewrite ``journal``'s header as sddkit before this round wrote it: the utterances' paths hashed as the
    protocol gave them (relative to the folder the run started in), not made absolute."""
    import hashlib
    import json
    import os

    from sddkit.data.protocols import read_protocol

    def utterances_digest(records, as_given=False):
        rows = hashlib.sha256()
        for r in records:
            path = r["path"] if as_given else os.path.abspath(r["path"])
            rows.update(f"{r['utt_id']}\x00{path}\x00{r['label']}\n".encode())
        return rows.hexdigest()

    lines = journal.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    records = read_protocol("data").df[["utt_id", "path", "label"]].to_dict("records")
    assert header["utterances"]["digest"] == utterances_digest(records)  # the header of this version
    header["utterances"]["digest"] = utterances_digest(records, as_given=True)
    assert header["utterances"]["digest"] != utterances_digest(records)  # the paths are relative: another digest
    lines[0] = json.dumps(header, separators=(",", ":")) + "\n"
    journal.write_text("".join(lines))


def test_a_journal_of_the_previous_version_is_resumed_in_the_folder_it_was_written_in(tmp_path, monkeypatch, capsys):
    """Journals written before the paths were made absolute hashed them as given: an interrupted run resumed after
    the upgrade, in the same folder with the same options, was refused as "another robustness run (the utterances:
    earlier 8, now 8 (... another --protocol ...?))", its journaled work lost. It resumes now; from another folder,
    where the same relative paths name other files, it is still refused."""
    from scoring_support import run_interrupted_at_second_batch

    from sddkit.cli.main import main
    from sddkit.evaluation.robustness import JOURNAL_NAME

    model = _robustness_setup(tmp_path)
    monkeypatch.chdir(tmp_path / "a")
    assert main(_robustness_args(model, "data", tmp_path / "whole")) == 0
    whole = (tmp_path / "whole" / "robustness.json").read_text()

    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _robustness_args(model, "data", out))
    _as_written_before(out / JOURNAL_NAME)
    before = (out / JOURNAL_NAME).read_bytes()

    # from b/, "data" names other audio: refused, the journal kept as it was
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    assert main(_robustness_args(model, "data", out)) == 2
    assert "holds the scores of another robustness run" in capsys.readouterr().err
    assert (out / JOURNAL_NAME).read_bytes() == before

    # from a/, where it was written: resumed, and the report is the uninterrupted run's
    monkeypatch.chdir(tmp_path / "a")
    assert main(_robustness_args(model, "data", out)) == 0
    assert "resumed from" in capsys.readouterr().err
    import json

    assert json.loads((out / "robustness.json").read_text())["rows"] == json.loads(whole)["rows"]


# --- sdd eval --asv-scores --------------------------------------------------------------------------------------


def test_asv_scores_whose_asv_accepts_no_spoof_leave_the_2019_tdcf_out_naming_the_file(tmp_path, capsys):
    """An ASV system that rejects every spoof at its EER threshold (Pfa_spoof 0) leaves the legacy t-DCF undefined:
    sdd eval read the protocol and scores, then failed with the metric's bare "C2 ... is 0", not saying that the
    --asv-scores file was the cause. It was then refused as soon as the file was read (review 8); since 2026-12-06
    the report stands, its 2019 t-DCF null with the reason, and a note names the file (the 2021 form, the t-EER
    and every other figure are defined)."""
    from sddkit.cli.main import main

    rng = np.random.default_rng(0)
    (tmp_path / "p.csv").write_text(
        "path,label\n" + "".join(f"a{i}.wav,{'bonafide' if i < 20 else 'spoof'}\n" for i in range(40))
    )
    (tmp_path / "s.csv").write_text(
        "path,score\n" + "".join(f"a{i}.wav,{rng.normal(2 if i < 20 else -2):.4f}\n" for i in range(40))
    )
    lines = [f"bonafide target {rng.normal(3):.3f}" for _ in range(30)]
    lines += [f"bonafide nontarget {rng.normal(-3):.3f}" for _ in range(30)]
    lines += [f"A07 spoof {rng.normal(-10):.3f}" for _ in range(30)]  # far below every target and non-target
    (tmp_path / "asv.txt").write_text("\n".join(lines) + "\n")
    argv = ["eval", "--scores", str(tmp_path / "s.csv"), "--protocol", str(tmp_path / "p.csv")]
    assert main([*argv, "--out", str(tmp_path / "r"), "--asv-scores", str(tmp_path / "asv.txt")]) == 0
    err = capsys.readouterr().err
    assert "asv.txt: at its EER threshold the ASV system accepts none of its spoof trials (Pfa_spoof 0)" in err, err
    pooled = json.loads((tmp_path / "r" / "report.json").read_text())["pooled"]
    assert pooled["min_tdcf"]["2019"] is None and "legacy t-DCF is undefined" in pooled["min_tdcf_notes"]["2019"]
    assert pooled["min_tdcf"]["2021"] == pytest.approx(1.0)  # the CM cannot help an ASV that accepts no spoof
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| - (the legacy t-DCF is undefined when C2" in md
    shutil.rmtree(tmp_path / "r")

    # an ASV system that accepts some spoofs: evaluated, with its rates
    lines[-1] = "A07 spoof 5.0"
    (tmp_path / "asv.txt").write_text("\n".join(lines) + "\n")
    assert main([*argv, "--out", str(tmp_path / "r"), "--asv-scores", str(tmp_path / "asv.txt")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["asv"]["pfa_spoof"] == pytest.approx(1 / 30)


def test_an_mp4_with_corrupt_frames_in_the_middle_is_still_refused(tmp_path):
    # its packets reach the end, but a third of them fail to decode: not a gap in the timeline
    _write_mp4(tmp_path / "whole.mp4", 4.0, movflags="faststart")
    data = bytearray((tmp_path / "whole.mp4").read_bytes())
    start, size = int(len(data) * 0.4), int(len(data) * 0.15)
    data[start : start + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError, match=r"the header declares 4\.00 s.*frames lost to corruption"):
        load_audio(tmp_path / "bad.mp4")


# --- Calibration's counts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [5.0, "5", True])
def test_calibration_counts_that_are_not_whole_numbers_are_refused_naming_the_field(count):
    # 5.0 and '5' failed with a bare "'float' object cannot be interpreted as an integer"; True was stored as 1
    from sddkit.scoring.calibration import Calibration

    with pytest.raises(TypeError, match=r"calibration n_spoof must be a whole number of scores, got"):
        Calibration(a=1.0, b=0.0, n_spoof=count)
    assert Calibration(a=1.0, b=0.0, n_spoof=np.int64(5)).n_spoof == 5  # numpy's integers are whole numbers
    assert type(Calibration(a=1.0, b=0.0, n_spoof=np.int64(5)).n_spoof) is int


def test_asv_rates_match_the_official_asvspoof2019_script_on_random_scores_with_ties():
    """Not a fix: the rates checked against a transcription of the official script's compute_det_curve,
    compute_eer and obtain_asv_error_rates (eval_metrics.py), on scores rounded so that ties are common."""
    from sddkit.metrics import asv_rates_from_scores

    def official(tar, non, spoof):
        scores = np.concatenate((tar, non))
        labels = np.concatenate((np.ones(tar.size), np.zeros(non.size)))[np.argsort(scores, kind="mergesort")]
        tar_sums = np.cumsum(labels)
        non_sums = non.size - (np.arange(1, scores.size + 1) - tar_sums)
        frr = np.concatenate((np.atleast_1d(0), tar_sums / tar.size))
        far = np.concatenate((np.atleast_1d(1), non_sums / non.size))
        thresholds = np.concatenate((np.atleast_1d(np.sort(scores)[0] - 0.001), np.sort(scores, kind="mergesort")))
        threshold = thresholds[np.argmin(np.abs(frr - far))]
        return (
            np.sum(non >= threshold) / non.size,
            np.sum(tar < threshold) / tar.size,
            1.0 - np.sum(spoof < threshold) / spoof.size,
        )

    rng = np.random.default_rng(2019)
    for _ in range(500):
        n_tar, n_non, n_spoof = rng.integers(1, 25, 3)
        step = rng.choice([0.25, 1.0, 0.0])
        draw = (lambda x: np.round(x / step) * step) if step else (lambda x: x)  # noqa: B023
        tar, non, spoof = (
            draw(rng.normal(2, 1.5, n_tar)),
            draw(rng.normal(0, 1.5, n_non)),
            draw(rng.normal(1, 2, n_spoof)),
        )
        rates = asv_rates_from_scores(tar, non, spoof)
        assert (rates.pfa, rates.pmiss, rates.pfa_spoof) == pytest.approx(official(tar, non, spoof))
