"""Research review 17: `sdd eval` tabulates a MoLEx model's expert use per attack and per source.

`sdd score` writes a MoLEx model's mean router weight per expert (``molex_gate_mean_0, ...``); `sdd eval` read
only a mixture's ``gate_w*`` columns and dropped these without a word, so the expert use per attack of a scored
test set (unseen attacks, an expert added later) was nowhere in its report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.detectors import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.scores import read_scores
from sddkit.scoring.api import stat_columns

# utt_id, label, attack, source, score, mean router weight of experts 0..2
ROWS = [
    ("b1", "bonafide", "", "web", 2.0, (0.5, 0.3, 0.2)),
    ("b2", "bonafide", "", "studio", 1.5, (0.7, 0.2, 0.1)),
    ("s1", "spoof", "A01", "web", -1.0, (0.1, 0.8, 0.1)),
    ("s2", "spoof", "A01", "studio", 0.5, (0.3, 0.6, 0.1)),
    ("s3", "spoof", "A02", "web", -2.0, (0.2, 0.2, 0.6)),
]
USE = stat_columns("molex_gate_mean", 3)  # the columns sdd score writes
TOP1 = stat_columns("molex_top1_count", 3)


def _protocol(tmp_path):
    path = tmp_path / "protocol.csv"
    path.write_text("path,label,attack,source\n" + "".join(f"{u}.wav,{y},{a},{s}\n" for u, y, a, s, *_ in ROWS))
    return path


def _molex_scores_csv(path, rows=ROWS):
    """A score file laid out as `sdd score` writes it for a three-expert MoLEx model."""
    header = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score", *USE, *TOP1, "error"]
    lines = [",".join(header)]
    for u, *_, sc, use in rows:
        lines.append(",".join([f"{u}.wav", str(sc), "0.5", "bonafide", "4", "1", str(sc), *map(str, use), "3,1,0", ""]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sdd_eval_reports_molex_expert_use_per_attack_and_source(tmp_path):
    scores = _molex_scores_csv(tmp_path / "scores.csv")
    out = tmp_path / "report"
    args = ["eval", "--scores", str(scores), "--protocol", str(_protocol(tmp_path)), "--out", str(out)]
    assert main([*args, "--bootstrap", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    use = report["molex_expert_use"]
    assert use["experts"] == ["expert0", "expert1", "expert2"]
    by_attack = {r["attack"]: r for r in use["by_attack"]}
    assert set(by_attack) == {"A01", "A02", "bonafide", "all"}
    assert by_attack["A01"]["expert1"] == pytest.approx(0.7) and by_attack["A01"]["n"] == 2
    assert by_attack["bonafide"]["expert0"] == pytest.approx(0.6)
    by_source = {r["source"]: r for r in use["by_source"]}
    assert by_source["web"]["expert2"] == pytest.approx((0.2 + 0.1 + 0.6) / 3)
    assert report["gate_weights"] is None  # a MoLEx model is not a mixture of detectors
    table = pd.read_csv(out / "expert_use_by_attack.csv").set_index("attack")
    assert table.loc["A02", "expert2"] == pytest.approx(0.6)
    assert (out / "expert_use_by_source.png").is_file()
    assert "## MoLEx expert use (mean router weight)" in (out / "report.md").read_text()
    # a rerun on scores without them removes the tables, rather than leave them to pass for this run's
    plain = tmp_path / "plain.csv"
    plain.write_text("utt_id,score\n" + "".join(f"{u},{sc}\n" for u, *_, sc, _ in ROWS))
    assert main(["eval", "--scores", str(plain), "--protocol", str(_protocol(tmp_path)), "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["molex_expert_use"] is None
    assert not (out / "expert_use_by_attack.csv").exists()


def test_molex_expert_use_follows_the_protocol_order_and_reads_jsonl(tmp_path):
    reordered = read_scores(_molex_scores_csv(tmp_path / "s.csv", rows=ROWS[::-1]))
    table = UtteranceTable.from_records(
        [{"utt_id": u, "label": y, "attack": a, "source": s, "path": f"{u}.wav"} for u, y, a, s, *_ in ROWS]
    )
    by_attack = {r["attack"]: r for r in evaluate(table, reordered, EvalConfig(bootstrap=0)).expert_use["by_attack"]}
    assert by_attack["A02"]["expert2"] == pytest.approx(0.6)
    lines = [
        json.dumps({"path": f"{u}.wav", "score": sc, **dict(zip(USE, use)), "error": ""}) for u, *_, sc, use in ROWS
    ]
    lines.append(json.dumps({"path": "broken.wav", "score": None, **dict.fromkeys(USE), "error": "unreadable"}))
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scores = read_scores(path)
    np.testing.assert_allclose(scores.expert_use, [use for *_, use in ROWS])
    assert scores.failed == ("broken.wav",) and scores.gate_weights is None


def test_malformed_molex_expert_use_is_refused_with_the_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("utt_id,score,molex_gate_mean_0,molex_gate_mean_2\nb1,1.0,0.5,0.5\n")
    with pytest.raises(ProtocolError, match="molex_gate_mean_0 .. molex_gate_mean_<E-1>, got \\[0, 2\\]"):
        read_scores(path)
    path.write_text("utt_id,score,molex_gate_mean_0,molex_gate_mean_1\nb1,1.0,0.5,x\n")
    with pytest.raises(ProtocolError, match=r"s.csv:2: molex_gate_mean_1 'x' is not a number"):
        read_scores(path)


def test_a_tiny_molex_models_sdd_score_output_gives_sdd_eval_its_expert_use(tmp_path):
    torch.manual_seed(0)
    spec = {
        "frontend": {
            "name": "ssl",
            "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0},
            "adapter": "molex",
            "molex": {"num_experts": 3, "rank": 2},
        },
        "backend": {"name": "linear"},
    }
    cfg = from_dict(DetectorConfig, spec)
    model_dir = save_model_dir(tmp_path / "model", build_detector(cfg).eval(), model_config=to_dict(cfg))
    rng = np.random.default_rng(0)
    for u, *_ in ROWS:
        sf.write(tmp_path / f"{u}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    protocol, scores = _protocol(tmp_path), tmp_path / "scores.csv"
    assert main(["score", str(protocol), "--model", str(model_dir), "--out", str(scores), "--quiet"]) == 0
    written = pd.read_csv(scores)
    written.index = [Path(p).stem for p in written["path"]]
    report = evaluate(read_protocol(protocol), read_scores(scores), EvalConfig(bootstrap=0))
    a01 = next(r for r in report.expert_use["by_attack"] if r["attack"] == "A01")
    assert [a01[f"expert{k}"] for k in range(3)] == pytest.approx(written.loc[["s1", "s2"], USE].mean().tolist())
    assert sum(a01[f"expert{k}"] for k in range(3)) == pytest.approx(1.0, abs=1e-5)


def test_readme_names_the_tensorboard_tags_a_molex_erm_step_logs():
    """README said nowhere where the training losses (MoLEx orthogonality among them) go: TensorBoard's
    ``train/<metric>`` for every metric a strategy's step returns."""
    from sddkit.training.erm import ERM
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.recipe import LossConfig
    from sddkit.training.strategy import StepContext

    torch.manual_seed(0)
    spec = {
        "frontend": {
            "name": "ssl",
            "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0, "freeze": True},
            "adapter": "molex",
            "molex": {"num_experts": 2, "rank": 2},
        },
        "backend": {"name": "linear"},
    }
    model = build_detector(from_dict(DetectorConfig, spec)).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ctx = StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()))
    batch = {"waveform": 0.1 * torch.randn(2, 4000), "label": torch.tensor([0, 1]), "domain": torch.tensor([0, 1])}
    tags = {f"train/{k}" for k in ERM().step(batch, ctx).metrics}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    bullet = next(p for p in readme.split("\n- ") if p.startswith("What `sdd train` logs"))
    named = set(re.findall(r"`(train/[a-z_/]+[a-z])`", bullet))
    assert {"train/aux/molex_orthogonality", "train/aux/molex_load_balance", "train/loss", "train/ce"} <= named
    assert named - {"train/lr"} <= tags  # every tag README names for an ERM step is one the step logs


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"molex_gate_mean_0": 1.0}, r"s\.jsonl:2: 1 MoLEx expert-use values, where the rows before have 2"),
        ({}, r"s\.jsonl:2: 0 MoLEx expert-use values, where the rows before have 2"),
    ],
)
def test_a_jsonl_row_with_another_number_of_router_weights_is_refused_on_its_line(tmp_path, second, message):
    first = {"utt_id": "a", "score": 0.5, "molex_gate_mean_0": 0.25, "molex_gate_mean_1": 0.75}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps({"utt_id": "b", "score": 0.1, **second}) + "\n")
    with pytest.raises(ProtocolError, match=message):
        read_scores(path)
