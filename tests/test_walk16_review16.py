"""Following README.md as a new user (walk16): mismatches between what it says and what the commands do."""

from __future__ import annotations

import json
import math

import numpy as np
import soundfile as sf

from sddkit.cli.main import main
from sddkit.scoring.inference import read_inference


def _model_and_protocol(tmp_path, tiny_stats):
    model = tiny_stats(tmp_path / "model")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        path = tmp_path / "wav" / f"f{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, ((0.1 + 0.05 * i) * rng.standard_normal(2400)).astype(np.float32), 16000)
        rows.append(f"{path},{('spoof', 'bonafide')[i % 2]}")
    protocol = tmp_path / "val.csv"
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    return model, protocol


def test_calibrate_bayes_threshold_at_prior_half_is_zero_not_negative_zero(tmp_path, tiny_stats, capsys):
    # README: `bayes`: `-logit(prior)`, 0 at 0.5; the report and config.json printed "-0.0"
    model, protocol = _model_and_protocol(tmp_path, tiny_stats)
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--threshold", "bayes"]) == 0
    out = capsys.readouterr().out
    assert '"threshold": 0.0' in out and "-0.0" not in out
    assert json.loads(out)["threshold"] == 0.0
    stored = read_inference(model).threshold
    assert stored == 0.0 and math.copysign(1.0, stored) == 1.0
    assert "-0.0" not in (model / "config.json").read_text()


def test_eval_out_naming_a_report_file_is_refused_before_anything_is_written(tmp_path, capsys):
    # README: `sdd eval ... --out DIR`; `--out report.json` made a folder "report.json" holding report.json
    scores = tmp_path / "scores.tsv"
    scores.write_text("utt_id\tscore\na\t1.0\nb\t-1.0\n")
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\na,bonafide\nb,spoof\n")
    out = tmp_path / "report.json"
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "report.json" in err and "folder" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # a folder of that name that is already there is taken as the folder it is
    out.mkdir()
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out)]) == 0
    assert (out / "report.json").is_file()


def test_train_summary_line_says_1_epoch_not_1_epochs(tmp_path, monkeypatch, capsys):
    # `sdd train RECIPE trainer.max_steps=2` on a small protocol printed "trained 2 steps (1 epochs)"
    from pathlib import Path

    from sddkit.training import trainer as trainer_mod

    class FakeTrainer:
        assembled = False
        em_fitted = False

        def __init__(self, recipe, resume=False):
            pass

        def fit(self):
            return trainer_mod.TrainResult(
                out_dir=tmp_path, step=1, epoch=1, best_eer=0.2, best_step=1, stopped_early=False,
                best_dir=tmp_path / "best", final_dir=tmp_path / "final", final_eer=0.2, history=[],
            )  # fmt: skip

    monkeypatch.setattr(trainer_mod, "Trainer", FakeTrainer)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sddbench" / "default_model.yaml"
    assert main(["train", str(recipe), f"trainer.out_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "trained 1 step (1 epoch)" in out and "epochs" not in out
