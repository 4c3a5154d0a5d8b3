"""Review 9 of the shipped recipes: their data specs against the real corpus layouts, their stage-2 links.

The corpus test builds, in a temporary working directory, the folder trees the recipes' paths name (as the
corpora unpack: ASVspoof 2019 LA, ASVspoof 5, Fake-or-Real for-norm, ADD 2022 train/dev, In-the-Wild with the
split tables its recipe comment says to write), with empty stand-in audio files, and reads every recipe's
train / val / old_eval specs as `sdd train` does: every listed audio path must exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.config import load_yaml
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.training.data import read_tables
from sddkit.training.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# the recipes whose data live under data/ (the sddbench ones read ../shared/data/sddbench, checked elsewhere)
CORPUS_RECIPES = sorted(p for p in RECIPES.rglob("*.yaml") if p.parent.name != "sddbench")


def _write_corpora(data: Path) -> None:
    """The official layouts, a few trials each."""
    la = data / "ASVspoof2019" / "LA"
    for part, code, name in (("train", "T", "train.trn"), ("dev", "D", "dev.trl")):
        lines = []
        for i, (attack, key) in enumerate((("-", "bonafide"), ("A01", "spoof"), ("A02", "spoof"), ("-", "bonafide"))):
            utt = f"LA_{code}_{1000 + i}"
            lines.append(f"LA_00{i} {utt} - {attack} {key}")
            touch(la / f"ASVspoof2019_LA_{part}" / "flac" / f"{utt}.flac")
        protocols = la / "ASVspoof2019_LA_cm_protocols"
        protocols.mkdir(parents=True, exist_ok=True)
        (protocols / f"ASVspoof2019.LA.cm.{name}.txt").write_text("\n".join(lines) + "\n")
    a5 = data / "ASVspoof5"
    for name, code, folder in (("ASVspoof5.train.tsv", "T", "flac_T"), ("ASVspoof5.dev.track_1.tsv", "D", "flac_D")):
        lines = []
        for i, (tag, attack, key) in enumerate((("-", "bonafide", "bonafide"), ("AC3", "A05", "spoof"))):
            utt = f"{code}_000000000{i}"
            lines.append(f"{code}_48{i} {utt} F - - - {tag} {attack} {key} -")
            touch(a5 / folder / f"{utt}.flac")
        (a5 / name).write_text("\n".join(lines) + "\n")
    for split in ("training", "validation", "testing"):
        for label in ("real", "fake"):
            for i in range(2):
                touch(data / "fake_or_real" / "for-norm" / split / label / f"{label}{i}.wav")
    add = data / "ADD2022" / "ADD_train_dev"
    (add / "label").mkdir(parents=True)
    for part, code in (("train", "T"), ("dev", "D")):
        lines = []
        for i, key in enumerate(("genuine", "fake")):
            name = f"ADD_{code}_0000000{i}.wav"
            lines.append(f"{name} {key}")
            touch(add / part / name)
        (add / "label" / f"{part}_label.txt").write_text("\n".join(lines) + "\n")
    itw = data / "release_in_the_wild"
    rows = ["file,speaker,label"]
    for i in range(8):
        rows.append(f"{i}.wav,spk{i % 4},{'bona-fide' if i % 2 else 'spoof'}")
        touch(itw / f"{i}.wav")
    (itw / "meta.csv").write_text("\n".join(rows) + "\n")


def _write_in_the_wild_splits() -> None:
    """What the In-the-Wild recipes' comment says to do, from the working directory of the runs."""
    table = read_protocol("data/release_in_the_wild/meta.csv", "in_the_wild")
    df = table.df
    UtteranceTable(df[df["speaker"].isin(["spk0", "spk1"])]).save("data/release_in_the_wild/splits/train.csv")
    UtteranceTable(df[df["speaker"] == "spk2"]).save("data/release_in_the_wild/splits/val.csv")
    UtteranceTable(df[df["speaker"] == "spk3"]).save("data/release_in_the_wild/splits/test.csv")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    _write_corpora(root / "data")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        _write_in_the_wild_splits()
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("path", CORPUS_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_data_specs_find_the_audio_of_the_official_layouts(path, corpora, monkeypatch):
    # the In-the-Wild specs joined root data/release_in_the_wild in front of the paths the split tables hold
    # (data/release_in_the_wild/0.wav, as the comment's read_protocol + save writes them): every In-the-Wild
    # file of the MELE / MILE recipes pointed at data/release_in_the_wild/data/release_in_the_wild/0.wav
    monkeypatch.chdir(corpora)
    recipe = load_recipe(path)
    specs = {"data.train": recipe.data.train, "data.val": recipe.data.val}
    if recipe.molex is not None and recipe.molex.old_eval is not None:
        specs["molex.old_eval"] = recipe.molex.old_eval
    read = 0
    for what, spec in specs.items():
        if not spec:
            continue
        table = read_tables(spec, what)
        paths = [str(p) for p in table.column("path")]
        missing = [p for p in paths if not os.path.isfile(p)]
        assert paths and not missing, f"{path.name} {what}: no such audio files {missing[:3]}"
        read += 1
    if "train" in (load_yaml(path).get("data") or {}):
        assert read >= 2, f"{path.name}: train and val were not both read"


def test_stage2_init_from_names_a_shipped_first_stage_output():
    """`init_from` (the MoLEx expert-addition stage) names `<trainer.out_dir>/best` of a shipped recipe that trains
    a MoLEx model, as the mixtures' `expert_dirs` do (tests/test_recipes_mixtures.py)."""
    outputs = {}
    for p in RECIPES.rglob("*.yaml"):
        data = load_yaml(p)
        if data.get("model") and "out_dir" in (data.get("trainer") or {}):
            outputs[data["trainer"]["out_dir"].rstrip("/") + "/best"] = data["model"]
    staged = [p for p in RECIPES.rglob("*.yaml") if "init_from" in load_yaml(p)]
    assert staged
    for p in staged:
        data = load_yaml(p)
        model = outputs.get(data["init_from"])
        assert model is not None, f"{p}: no shipped recipe writes {data['init_from']}"
        assert model["frontend"]["adapter"] == "molex", p


def test_sddbench_recipes_augment_as_their_comment_says():
    """The sddbench expert / joint / gate recipes said their augmentation was "as recipes/sddbench/default_model.yaml"
    while they leave out two of its entries (band_filter, rawboost); the comment now names what is kept."""
    default = load_yaml(RECIPES / "sddbench" / "default_model.yaml")["data"]["augment"]
    kept = [a for a in default if a["name"] not in ("band_filter", "rawboost")]
    # the default recipe's noise changed on 2026-12-05; the mixture benchmark recipes keep the one their results used
    # (low_hz 0 since 2026-12-06: every shipped recipe keeps the coloured noise its results were trained with)
    before = [{"name": "noise", "snr_db": [15, 40], "low_hz": 0, "p": 0.2} if a["name"] == "noise" else a for a in kept]
    assert before != kept
    citing = [p for p in sorted((RECIPES / "sddbench").glob("*.yaml")) if "default_model.yaml" in p.read_text()]
    # recipes that train something (default_model_ensemble.yaml cites it for its experts and trains nothing)
    citing = [p for p in citing if p.name != "default_model.yaml" and "train" in (load_yaml(p).get("data") or {})]
    assert len(citing) >= 11
    for p in citing:
        augment = load_yaml(p)["data"]["augment"]
        comment = [line for line in p.read_text().splitlines() if "default_model.yaml" in line]
        if augment == default:
            continue
        assert augment in (kept, before), p
        text = " ".join(line.strip(" #") for line in p.read_text().splitlines() if line.strip().startswith("#"))
        assert "not its band_filter and rawboost" in text, f"{p}: {comment}"
        if augment == before:
            assert "as they were before 2026-12-05" in text, f"{p}: {comment}"


# spoof domains of each MLDG recipe's training data: ASVspoof 2019 LA train attacks A01-A06; sddbench train's
# 14 generator systems (its README)
MLDG_TRAIN_DOMAINS = {"asvspoof2019": 6, "sddbench": 14}


@pytest.mark.parametrize(
    "path", sorted(p for p in RECIPES.rglob("*mldg*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_mldg_recipes_batch_layout_is_the_one_their_comment_gives(path):
    """ "batches of 16 = 4 attack domains x 4 items (2 bona fide + 2 spoof ...), 1 of the 4 held out": what the
    recipe's domain_batch sampler and MLDG strategy make of its training data's domains."""
    import re

    import numpy as np

    from sddkit.data.samplers import DomainBatchSampler

    claim = re.search(
        r"batches of (\d+) = (\d+) [a-z ]+? x (\d+) items \((\d+) bona fide \+\s*#?\s*(\d+) spoof", path.read_text()
    )
    assert claim, f"{path}: its comment should give the batch layout"
    batch, n_dom, per, n_bona, n_spoof = map(int, claim.groups())
    held = re.search(r"(\d+) of the (\d+) (?:domains|systems) held out", " ".join(path.read_text().split()))
    recipe = load_recipe(path)
    assert recipe.data.sampler == "domain_batch" and recipe.data.batch_size == batch
    domains = MLDG_TRAIN_DOMAINS[path.parent.name]
    labels = np.array([1] * 40 + [0] * (10 * domains))
    attacks = ["bonafide"] * 40 + [f"A{d:02d}" for d in range(domains) for _ in range(10)]
    options = dict(recipe.data.sampler_options)
    sampler = DomainBatchSampler(attacks, labels, batch_size=recipe.data.batch_size, **options)
    assert (sampler.n_domains_per_step, sampler.per_domain) == (n_dom, per), path
    assert (sampler.n_bonafide, sampler.n_spoof) == (n_bona, n_spoof), path
    assert held and (int(held.group(1)), int(held.group(2))) == (recipe.strategy.config.n_meta_test, n_dom), path
