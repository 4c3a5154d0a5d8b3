"""A researcher's first day: the shipped recipes on corpora laid out as the real ones are on disk.

Each journey writes a tiny corpus in the on-disk layout of the real one (ASVspoof 2019 LA CM protocols
and ``ASVspoof2019_LA_{train,dev,eval}/flac``, ASVspoof 5 TSVs and ``flac_{T,D}``, In-the-Wild
``meta.csv``), runs ``sdd train`` on a shipped recipe with the ``key=value`` overrides the README names
(only what shrinks the run: a tiny encoder preset, crops, batches, steps, the corpus paths), then scores
the result with ``sdd score`` and evaluates it with ``sdd eval`` as the README documents them.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.cli.main import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SR = 16000
SCORE_COLUMNS = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score"]


def _audio(spoof: bool, seed: int, seconds: float = 0.5) -> np.ndarray:
    """A short voiced-like tone; spoofs carry an extra square-wave harmonic (something to learn)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds * rng.uniform(1.0, 1.5))) / SR
    f0 = rng.uniform(100, 250)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    if spoof:
        x = x + 0.05 * np.sign(np.sin(2 * np.pi * 2 * f0 * t))
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _asvspoof2019_la(root: Path, n: int = 8, n_eval: int = 4) -> Path:
    """``LA/ASVspoof2019_LA_cm_protocols/*.txt`` + ``LA/ASVspoof2019_LA_{train,dev,eval}/flac/*.flac``."""
    la = root / "LA"
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True)
    seed = 0
    for part, code, name in (("train", "T", "train.trn"), ("dev", "D", "dev.trl"), ("eval", "E", "eval.trl")):
        flac = la / f"ASVspoof2019_LA_{part}" / "flac"
        flac.mkdir(parents=True)
        attacks = ["A01", "A02", "A03", "A04"] if part != "eval" else ["A07", "A08"]
        lines = []
        for i in range(n if part == "train" else n_eval):
            spoof = i % 2 == 1
            utt = f"LA_{code}_{1000000 + i}"
            seed += 1
            sf.write(flac / f"{utt}.flac", _audio(spoof, seed), SR)
            attack, key = (attacks[(i // 2) % len(attacks)], "spoof") if spoof else ("-", "bonafide")
            lines.append(f"LA_00{70 + i % 4} {utt} - {attack} {key}")
        (protocols / f"ASVspoof2019.LA.cm.{name}.txt").write_text("\n".join(lines) + "\n")
    return la


def _in_the_wild(root: Path, n: int = 12) -> Path:
    """``release_in_the_wild/meta.csv`` (file,speaker,label with bona-fide/spoof) next to ``<i>.wav``."""
    itw = root / "release_in_the_wild"
    itw.mkdir(parents=True)
    with open(itw / "meta.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "speaker", "label"])
        for i in range(n):
            spoof = i % 2 == 1
            sf.write(itw / f"{i}.wav", _audio(spoof, 1000 + i), SR)
            w.writerow([f"{i}.wav", f"Speaker {i % 3}", "spoof" if spoof else "bona-fide"])
    return itw


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _score_and_eval(model: Path, inputs: Path, protocol: Path, out: Path, n_files: int) -> dict:
    """``sdd score INPUTS --model DIR --out FILE.csv`` then ``sdd eval``, checked against the README."""
    scores = out / "scores.csv"
    assert main(["score", str(inputs), "--model", str(model), "--out", str(scores)]) == 0
    rows = _rows(scores)
    assert len(rows) == n_files
    header = list(rows[0])
    assert header[: len(SCORE_COLUMNS)] == SCORE_COLUMNS and header[-1] == "error"
    assert all(r["error"] == "" and np.isfinite(float(r["score"])) for r in rows)
    assert {r["decision"] for r in rows} <= {"bonafide", "spoof"}
    report_dir = out / "report"
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(report_dir)]) == 0
    for name in ("report.json", "report.md", "det.png", "roc.png"):  # README: report.json, report.md, CSVs, plots
        assert (report_dir / name).is_file(), name
    assert list(report_dir.glob("*.csv"))
    report = json.loads((report_dir / "report.json").read_text())
    assert report["units"]["eer"] == "percent" and 0.0 <= report["pooled"]["eer"] <= 100.0
    assert report["matching"]["n_matched"] == n_files and report["matching"]["n_failed_scores"] == 0
    return report


def test_asvspoof2019_lora_erm_recipe_from_train_to_report(tmp_path, capsys):
    la = _asvspoof2019_la(tmp_path / "data")
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    out = tmp_path / "run"
    overrides = [
        "model.frontend.encoder.name=wav2vec2_tiny",
        "model.frontend.encoder.pretrained=null",
        # the README's override of a recipe's corpus path, plus the audio root the recipe names
        f"data.train.protocol={protocols / 'ASVspoof2019.LA.cm.train.trn.txt'}",
        f"data.train.options.root={la}",
        f"data.val.protocol={protocols / 'ASVspoof2019.LA.cm.dev.trl.txt'}",
        f"data.val.options.root={la}",
        "data.crop_samples=4000",
        "data.batch_size=4",
        "data.val_batch_size=8",
        "data.num_workers=0",
        "trainer.epochs=1",  # 2 steps; validation runs at the end of an epoch
        "trainer.bf16=false",
        "trainer.device=cpu",
        "trainer.progress=false",
        f"trainer.out_dir={out}",
    ]
    recipe = str(RECIPES / "asvspoof2019" / "xlsr300m_aasist_lora_r2_erm.yaml")
    assert main(["train", recipe, *overrides]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"best val EER: \d+\.\d\d% \(step 2\)", printed), printed
    config = json.loads((out / "best" / "config.json").read_text())
    lora = config["model"]["frontend"]["lora"]
    assert (lora["rank"], lora["alpha"], lora["targets"]) == (2, 2.0, ["q", "k", "v", "out"])
    assert config["inference"]["window_samples"] == 4000

    eval_flac = la / "ASVspoof2019_LA_eval" / "flac"
    report = _score_and_eval(out / "best", eval_flac, protocols / "ASVspoof2019.LA.cm.eval.trl.txt", tmp_path, 4)
    assert report["pooled"]["n_bonafide"] == 2 and report["pooled"]["n_spoof"] == 2
    assert {row["attack"] for row in report["per_attack"]} == {"A07", "A08"}  # the eval attacks, per attack


def _recipe_command(recipe: Path) -> list[str]:
    """The ``sdd train ...`` command a shipped average-ensemble recipe's comment tells the user to run, as argv."""
    commands = re.findall(r"^#\s+sdd (train \S+)\s*$", recipe.read_text(), flags=re.M)
    assert len(commands) == 1, f"{recipe}: its comment should give one sdd train command"
    return commands[0].split()


def test_mele_experts_and_their_average_ensemble_from_the_recipe_comment(tmp_path, monkeypatch):
    """MELE stage 1 on two real layouts (ASVspoof 2019 LA, In-the-Wild split as the recipe says), then the
    average ensemble built by the `sdd train` command in recipes/mele/average_ensemble.yaml, scored and evaluated."""
    from sddkit.data.protocols import read_protocol

    data = tmp_path / "data"
    la = _asvspoof2019_la(data, n=8)
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    itw = _in_the_wild(data)
    # "write a speaker-disjoint train/val/test split of meta.csv as sddkit utterance tables ... read_protocol(
    # '.../meta.csv', 'in_the_wild') and UtteranceTable.save"
    table = read_protocol(itw / "meta.csv", "in_the_wild")
    (itw / "splits").mkdir()
    table.where(speaker=["Speaker 0", "Speaker 1"]).save(itw / "splits" / "train.csv")
    table.where(speaker=["Speaker 2"]).save(itw / "splits" / "val.csv")

    monkeypatch.chdir(tmp_path)  # the recipes' runs/... paths are relative to the working directory
    small = ["data.crop_samples=8000", "data.batch_size=4", "data.num_workers=0", "trainer.epochs=1"]
    small += ["trainer.device=cpu", "trainer.progress=false", "model.backend.channels=4", "model.backend.lstm_layers=1"]
    asv = [
        f"data.train.0.protocol={protocols / 'ASVspoof2019.LA.cm.train.trn.txt'}",
        f"data.val.0.protocol={protocols / 'ASVspoof2019.LA.cm.dev.trl.txt'}",
    ]
    wild = [
        f"data.train.0.protocol={itw / 'splits' / 'train.csv'}",
        f"data.train.0.options.root={itw}",
        f"data.val.0.protocol={itw / 'splits' / 'val.csv'}",
        f"data.val.0.options.root={itw}",
    ]
    assert main(["train", str(RECIPES / "mele" / "expert_asvspoof2019.yaml"), *small, *asv]) == 0
    assert main(["train", str(RECIPES / "mele" / "expert_in_the_wild.yaml"), *small, *wild]) == 0

    # the two other experts the ensemble names: the same trained directory stands in for them
    for name in ("expert_fake_or_real", "expert_add2022"):
        (tmp_path / "runs" / "mele" / name).symlink_to(tmp_path / "runs" / "mele" / "expert_asvspoof2019")
    (tmp_path / "recipes" / "mele").mkdir(parents=True)
    recipe = RECIPES / "mele" / "average_ensemble.yaml"
    (tmp_path / "recipes" / "mele" / recipe.name).write_text(recipe.read_text())
    assert main(_recipe_command(recipe)) == 0  # the documented command, run as documented

    model = tmp_path / "runs" / "mele" / "average_ensemble" / "best"
    config = json.loads((model / "config.json").read_text())
    assert config["architecture"] == "mixture" and config["inference"]["window_samples"] == 48000
    report = _score_and_eval(model, itw, itw / "meta.csv", tmp_path, 12)
    assert report["pooled"]["n_bonafide"] == 6
    # sdd eval tabulates the mixture's gate weights (gate_w0..) per source and attack: uniform for an average;
    # the experts are named after their run folders (recorded by sdd score beside its output)
    names = ["expert_asvspoof2019", "expert_fake_or_real", "expert_add2022", "expert_in_the_wild"]
    assert report["gate_weights"]["experts"] == names
    assert [round(report["gate_weights"]["by_source"][-1][n], 6) for n in names] == [0.25] * 4
    rows = _rows(tmp_path / "scores.csv")
    for row in rows:  # README: a mixture adds gate_w0,... and expert_score0,...; the average gate is uniform
        weights = [float(row[f"gate_w{i}"]) for i in range(4)]
        experts = [float(row[f"expert_score{i}"]) for i in range(4)]
        assert weights == pytest.approx([0.25] * 4)
        assert float(row["raw_score"]) == pytest.approx(np.mean(experts), abs=1e-5)


@pytest.mark.parametrize(
    "recipe", sorted(RECIPES.rglob("*average_ensemble.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_average_ensemble_recipes_build_with_the_sdd_train_command_their_comment_gives(
    recipe, tmp_path, monkeypatch, capsys, caplog
):
    """The comment's `sdd train RECIPE` exports the mixture as built (nothing to learn): best/ and final/ hold
    the experts' own weights with the scoring window the recipe names, its val EER is measured when the recipe
    has val data, and training data, when given, is not read (a warning says so)."""
    import torch
    import yaml

    from sddkit.config import from_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import load_model_dir, save_model_dir

    monkeypatch.chdir(tmp_path)
    expert = {
        "frontend": {"name": "logmel", "n_mels": 32},
        "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1},
    }
    torch.manual_seed(0)
    experts = []
    for d in yaml.safe_load(recipe.read_text())["mixture"]["expert_dirs"]:
        experts.append(build_detector(from_dict(DetectorConfig, expert)).eval())
        save_model_dir(tmp_path / d, experts[-1], model_config=expert)
    sf.write(tmp_path / "a.wav", _audio(False, 1), SR)
    sf.write(tmp_path / "b.wav", _audio(True, 2), SR)
    (tmp_path / "val.csv").write_text("path,label\na.wav,bonafide\nb.wav,spoof\n")
    data = yaml.safe_load(recipe.read_text())
    window = data["data"].get("val_crop_samples") or data["data"]["crop_samples"]
    (tmp_path / "recipes" / recipe.parent.name).mkdir(parents=True)  # the command names it from the repo root
    (tmp_path / "recipes" / recipe.parent.name / recipe.name).write_text(recipe.read_text())

    # as shipped (the sddbench recipes' val protocol is replaced by a tiny one; the others have none)
    val = ["data.val=[{protocol: val.csv, format: labels_csv}]"] if "val" in data["data"] else []
    assert main([*_recipe_command(recipe), *val, "trainer.device=cpu"]) == 0
    printed = capsys.readouterr().out
    assert "nothing to train" in printed
    out = tmp_path / data["trainer"]["out_dir"]
    for name in ("best", "final"):
        model = load_model_dir(out / name)
        assert model.architecture == "mixture" and model.inference["window_samples"] == window
        for built, saved in zip(experts, model.model.experts):
            for (k, a), b in zip(built.state_dict().items(), saved.state_dict().values()):
                assert torch.equal(a, b), k
        meta = json.loads((out / name / "config.json").read_text())["metadata"]
        assert meta["steps"] == 0 and meta["selection"].startswith("nothing to train")
        assert (meta["val_eer"] is not None) == bool(val)
    if val:
        assert "val EER: " in printed and "n/a" not in printed
        assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0]

    # training data given: still nothing to learn, so it is not read (not even opened), and a warning says so
    caplog.set_level(logging.WARNING)
    missing = ["data.train=[{protocol: no_such_file.csv, format: labels_csv}]", "trainer.out_dir=runs/again"]
    assert main([*_recipe_command(recipe), *val, *missing, "trainer.device=cpu"]) == 0
    assert "data.train is not read" in caplog.text
    assert (tmp_path / "runs" / "again" / "best" / "config.json").is_file()


def _sddbench(root: Path, per_class: int = 2) -> Path:
    """An sddbench-style ``manifest.csv`` (paths relative to it) with the six train sources of sddbench-dev."""
    sources = {"tortoise": "Tortoise", "yourtts_demo": "YourTTS", "hifigan_demo": "HiFiGAN"}
    sources |= {"umelgan_demo": "UnivNet", "vits_demo": "VITS", "resemblyzer": None}
    rows, seed = [], 0
    for part in ("train", "val"):
        for source, system in sources.items():
            for label in ("bonafide", "spoof") if system else ("bonafide",):
                for i in range(per_class):
                    seed += 1
                    rel = f"audio/{source}/{part}_{label}_{i}.flac"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    sf.write(root / rel, _audio(label == "spoof", 5000 + seed), SR)
                    system_ = system if label == "spoof" else "bonafide"
                    rows.append([rel, label, part, system_, "tts", source, f"{source}_{i}", "1.0"])
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "partition", "system", "attack_type", "source", "speaker", "duration_s"])
        w.writerows(rows)
    return root / "manifest.csv"


def test_default_model_recipe_cross_validation_as_the_readme_runs_it(tmp_path, capsys):
    """README: `sdd cv recipes/sddbench/default_model.yaml --hold-out tortoise --hold-out yourtts_demo
    --hold-out hifigan_demo,umelgan_demo,vits_demo --out runs/cv`, on an sddbench-style manifest."""
    manifest = _sddbench(tmp_path / "sddbench")
    out = tmp_path / "cv"
    folds = [
        "--hold-out",
        "tortoise",
        "--hold-out",
        "yourtts_demo",
        "--hold-out",
        "hifigan_demo,umelgan_demo,vits_demo",
    ]
    overrides = [f"data.train.0.protocol={manifest}", f"data.val.0.protocol={manifest}", "data.batch_size=8"]
    overrides += ["data.num_workers=0", "trainer.epochs=1", "data.augment=[]"]
    recipe = str(RECIPES / "sddbench" / "default_model.yaml")
    assert main(["cv", recipe, *folds, "--out", str(out), *overrides]) == 0
    assert "mean held-out EER" in capsys.readouterr().out
    cv = json.loads((out / "cv.json").read_text())
    held = [fold["held_out"] for fold in cv["folds"]]
    assert held == [["tortoise"], ["yourtts_demo"], ["hifigan_demo", "umelgan_demo", "vits_demo"]]
    for fold in cv["folds"]:  # scored on the held-out group's train + val files, both classes
        assert fold["n_bonafide"] == fold["n_spoof"] == 4 * len(fold["held_out"])
        assert (out / f"fold_{'+'.join(fold['held_out'])}" / "best" / "config.json").is_file()
    assert cv["mean_eer"] == pytest.approx(np.mean([fold["eer"] for fold in cv["folds"]]))


def _asvspoof5(root: Path, n: int = 8, n_dev: int = 4) -> Path:
    """``ASVspoof5.train.tsv`` / ``ASVspoof5.dev.track_1.tsv`` (10 space-separated fields) + ``flac_{T,D}/``."""
    a5 = root / "ASVspoof5"
    for code, name, count in (("T", "ASVspoof5.train.tsv", n), ("D", "ASVspoof5.dev.track_1.tsv", n_dev)):
        (a5 / f"flac_{code}").mkdir(parents=True)
        lines = []
        for i in range(count):
            spoof = i % 2 == 1
            utt = f"{code}_{i:010d}"
            sf.write(a5 / f"flac_{code}" / f"{utt}.flac", _audio(spoof, 2000 + i + (100 if code == "D" else 0)), SR)
            tag, attack, key = (
                ("AC3", ["A01", "A02"][(i // 2) % 2], "spoof") if spoof else ("-", "bonafide", "bonafide")
            )
            lines.append(f"{code}_48{i % 4}0 {utt} F - - - {tag} {attack} {key} -")
        (a5 / name).write_text("\n".join(lines) + "\n")
    return a5


def test_molex_then_added_experts_on_a_new_domain(tmp_path):
    """recipes/asvspoof5: MoLEx on ASVspoof 5, then xlsr300m_molex_add_experts.yaml grows it on ASVspoof 2019 LA.

    The added experts must take part: with the former top-2 router of the first recipe they started below
    every old expert, were never routed to (gate 0 in molex_report.json) and never trained.
    """
    a5 = _asvspoof5(tmp_path / "data")
    la = _asvspoof2019_la(tmp_path / "data", n=8)
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    small = ["data.crop_samples=4000", "data.batch_size=4", "data.val_batch_size=8", "data.num_workers=0"]
    small += ["trainer.epochs=1", "trainer.bf16=false", "trainer.device=cpu", "trainer.progress=false"]
    first = [
        "model.frontend.encoder.name=wav2vec2_tiny",
        "model.frontend.encoder.pretrained=null",
        f"data.train.protocol={a5 / 'ASVspoof5.train.tsv'}",
        f"data.train.options.root={a5}",
        f"data.val.protocol={a5 / 'ASVspoof5.dev.track_1.tsv'}",
        f"data.val.options.root={a5}",
        f"trainer.out_dir={tmp_path / 'molex'}",
    ]
    assert main(["train", str(RECIPES / "asvspoof5" / "xlsr300m_molex.yaml"), *small, *first]) == 0
    assert (tmp_path / "molex" / "molex_report.json").is_file()
    second = [
        f"init_from={tmp_path / 'molex' / 'final'}",
        f"data.train.protocol={protocols / 'ASVspoof2019.LA.cm.train.trn.txt'}",
        f"data.train.options.root={la}",
        f"data.val.protocol={protocols / 'ASVspoof2019.LA.cm.dev.trl.txt'}",
        f"data.val.options.root={la}",
        f"molex.old_eval.protocol={a5 / 'ASVspoof5.dev.track_1.tsv'}",
        f"molex.old_eval.options.root={a5}",
        "schedule.warmup_steps=1",
        f"trainer.out_dir={tmp_path / 'added'}",
    ]
    assert main(["train", str(RECIPES / "asvspoof5" / "xlsr300m_molex_add_experts.yaml"), *small, *second]) == 0
    report = json.loads((tmp_path / "added" / "molex_report.json").read_text())
    assert report["added_experts"] == 2
    assert {"before", "after", "forgetting_eer"} <= set(report["old_domains"])
    use = report["new_domain"]["expert_use"]["molex_gate_mean"]
    for attack, gates in use.items():
        assert len(gates) == 6 and min(gates[4:]) > 0, f"{attack}: the added experts are never routed to: {gates}"
