"""docs/cli.md against the code after the day's changes (26th review of README.md, docs/cli.md, docs/architecture.md).

What the reference got wrong or left out: ``sdd eval --asv-scores FILE`` alone writes ``inputs.asv_key`` only when
``--asv-key`` is given (the reference listed it unconditionally), and it takes ``--bootstrap``/``--seed`` without
reading them, unsaid beside the options it refuses; ``sdd import-aasist``'s synopsis left out ``--config``, which
README's command table names; ``robustness.json``'s ``condition_configs`` marks a time stretch scored whole
(``"length": "stretched"``), which the reference did not name among its keys.
"""

from __future__ import annotations

import json
import re

import numpy as np
from docs_support import REPO, cli_section, flat

from sddkit.cli.main import main
from sddkit.evaluation.robustness import condition_configs


def _sasv_scores(path) -> None:
    """An ASVspoof 5 README-layout SASV score file, 'SPEAKER UTT SCORE KIND', 10 trials of each kind."""
    rng = np.random.default_rng(0)
    lines = [
        f"spk{i % 3} {kind}_{i} {rng.normal(mu, 1.0):.4f} {kind}"
        for i in range(10)
        for kind, mu in (("target", 2.0), ("nontarget", -1.0), ("spoof", 0.0))
    ]
    path.write_text("\n".join(lines) + "\n")


def _sasv_alone_bullet() -> str:
    section = flat(cli_section("sdd eval"))
    start = section.index("`--asv-scores FILE [--asv-key KEY]` given without `--scores` and `--protocol`")
    return section[start : section.index(" - ", start)]


def test_sasv_alone_report_inputs_and_bootstrap_are_as_the_reference_says(tmp_path):
    scores = tmp_path / "sasv.txt"
    _sasv_scores(scores)
    assert main(["eval", "--asv-scores", str(scores), "--out", str(tmp_path / "a")]) == 0
    assert (
        main(["eval", "--asv-scores", str(scores), "--bootstrap", "7", "--seed", "3", "--out", str(tmp_path / "b")])
        == 0
    )
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    # without --asv-key there is no asv_key in inputs: the reference must not list it unconditionally
    assert set(a["inputs"]) == {"asv_scores", "asv_scores_sha256", "sddkit_version", "sddkit_git"}
    # --bootstrap and --seed change nothing there: the reference says they are not read
    assert a["pooled"] == b["pooled"] and a["config"] == b["config"]
    bullet = _sasv_alone_bullet()
    assert "`asv_scores` and `asv_scores_sha256`, with `--asv-key` also `asv_key` and `asv_key_sha256`" in bullet
    assert "`--bootstrap` and `--seed` are accepted but not read" in bullet


def test_import_aasist_synopsis_names_config_as_the_readme_table_does():
    synopsis = cli_section("sdd import-aasist").split("\n")[2]
    assert synopsis.startswith("`sdd import-aasist "), synopsis
    readme = (REPO / "README.md").read_text().splitlines()
    readme_row = next(line for line in readme if line.startswith("| `sdd import-aasist"))
    for flag in re.findall(r"--[a-z-]+", readme_row.split("|")[1]):
        assert flag in synopsis, f"{flag} in README's row but not in docs/cli.md's synopsis {synopsis}"


def test_robustness_reference_names_the_stretch_length_record():
    stretched = condition_configs(["stretch_1.1", "stretch_0.9", "mp3_32k"])
    assert stretched["stretch_1.1"]["length"] == stretched["stretch_0.9"]["length"] == "stretched"
    assert "length" not in stretched["mp3_32k"]
    output = flat(cli_section("sdd robustness"))
    assert '`"length": "stretched"`' in output
