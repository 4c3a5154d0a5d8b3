"""Review figures17: the figures the 120-band default model (bundled 2026-12-05, 09:18 UTC) brought into README.md,
its model card and docs/benchmarks.md, checked against the bundled files and against each other.

Pinned here: README's parameter count is the bundled model's (it said 239k, the count of a 128-band variant timed
by mistake in the plan; the model has 192,514); the summary's count of probes run agrees with the probe table,
whose 35 rows include one stopped probe (the summary counted it twice); the probe section's end-to-end cost ratio
and mean `val` EER follow from the timings and EERs it states (it said 1.29x and 9.62 %); the card's rebuild check,
made on the weights bundled before these, says so; the section's limit on the band count is the filterbank's (it
called 120 the most bands below 128 that leave no filter empty at n_fft 512; up to 126 do).
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

from docs_support import flat, markdown_section
from safetensors.numpy import load_file

from sddkit.features.spectral import mel_filterbank

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "src" / "sddkit" / "assets" / "default_model"
README = (REPO / "README.md").read_text()
CARD = (MODEL_DIR / "MODEL_CARD.md").read_text()
BENCHMARKS = (REPO / "docs" / "benchmarks.md").read_text()


def _parameters() -> int:
    # batch-norm running statistics are buffers, not parameters
    tensors = load_file(MODEL_DIR / "model.safetensors")
    return sum(
        int(v.size)
        for k, v in tensors.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )


def test_readme_and_card_give_the_bundled_models_parameter_count():
    n = _parameters()
    assert f"{n:,} parameters" in CARD
    assert f"a {round(n / 1000)}k-parameter" in flat(README)


def test_the_summary_counts_the_probe_tables_rows_once():
    glance = markdown_section(BENCHMARKS, "The default model's probes at a glance")
    rows = [line for line in glance.splitlines() if re.match(r"\| \d+(st|nd|rd|th)\b", line)]
    stopped = [r for r in rows if "not run to completion" in r]
    adopted = [r for r in rows if "**adopted**" in r]
    summary = flat(markdown_section(BENCHMARKS, "Summary against the issues' targets"))
    run = re.search(
        r"(\d+) probes \(recipe changes, checkpoint choices, seed ensembles, other model families\)", summary
    )
    assert run is not None and int(run.group(1)) == len(rows) - len(stopped)
    assert f"whose {len(rows)} rows also hold" in summary
    assert f"; {len(adopted)} changes were adopted" in summary


def test_the_120_band_probes_ratio_and_mean_follow_from_its_own_figures():
    section = flat(markdown_section(BENCHMARKS, "120 log-Mel bands up to the Nyquist frequency"))
    new = re.search(r"scored the 279 files in ([\d.]+) and ([\d.]+) s", section)
    old = re.search(r"in the same minute, ([\d.]+) and ([\d.]+) s\)", section)
    assert new is not None and old is not None
    ratio = float(new.group(1)) / float(old.group(1))  # rule (b) takes the best of 2 of each
    assert f"the end-to-end timing of rule (b) below is of the model trained, {ratio:.1f}x)" in section
    mean = re.search(r"\(a\) mean `val` EER ([\d.]+) % \(([\d.]+) / ([\d.]+)\)", section)
    assert mean is not None
    # seed 1's finalized final/ (bundled 09:18-11:43 UTC, now the ensemble's log-Mel expert): its val EER as
    # scripts/finalize_default_model.py printed it
    assert mean.group(2) == "8.92"
    assert abs(float(mean.group(1)) - (float(mean.group(2)) + float(mean.group(3))) / 2) <= 0.005 + 1e-9


def test_the_cards_rebuild_check_names_the_model_it_checked():
    # the card's history gives the replaced model's interval, "(bundled 06:30-09:18 UTC)": its end is these weights'
    bundled = re.search(r"The model it replaced \(bundled \d\d:\d\d-(\d\d:\d\d) UTC\)", flat(CARD))
    check = re.search(r"\*\*Rebuild check[^(]*\((\d{4}-\d\d-\d\d), (\d\d:\d\d)-", CARD)
    assert bundled is not None and check is not None
    start = datetime.strptime(f"{check.group(1)} {check.group(2)}", "%Y-%m-%d %H:%M")
    since = datetime.strptime(f"2026-12-05 {bundled.group(1)}", "%Y-%m-%d %H:%M")
    paragraph = flat(CARD[check.start() : CARD.index("\n\n", check.start())])
    # a check of one expert of the bundled mixture names that expert (the card gives each expert's check)
    # and a check of the gate, run before its install over the same run, says byte-identical to the bundled weights
    of_expert = re.match(r"\*\*Rebuild check of the (`\w+` expert|gate)", paragraph)
    if of_expert and of_expert.group(1) == "gate":
        assert "byte-identical to the bundled" in paragraph
    if start < since and not of_expert:
        assert "bundled before these weights" in paragraph and "not yet repeated for these weights" in paragraph


def test_the_band_count_limit_is_the_filterbanks():
    # the section called 120 "the most below 128" bands that leave no filter empty; 121-126 leave none either
    def empty(n: int) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fb = mel_filterbank(n_mels=n, n_fft=512, sample_rate=16000, f_min=20.0, f_max=None)
        return int((fb.sum(dim=1) == 0).sum())

    most = max(n for n in range(1, 129) if empty(n) == 0)
    assert empty(most + 1) and empty(128)
    section = flat(markdown_section(BENCHMARKS, "120 log-Mel bands up to the Nyquist frequency"))
    assert f"as would {most + 1}; up to {most} leave none" in section


def test_the_cards_speed_figures_name_the_weights_they_were_measured_on():
    # the bullet gave 236-250x (2026-12-04) and 217x as if of "the 80-band model before it", bundled 2026-12-05;
    # the earlier models' figures moved to "History", into a bullet of their own (review card20)
    def bullet(label: str) -> str:
        return CARD[CARD.index(label) :].split("\n- ")[0].split("\n\n")[0]

    speed = flat(bullet("- **Speed:**") + "\n" + bullet("- **Speed, the models bundled before:**"))
    assert "the 80-band weights bundled from 2026-12-04, 23:20 UTC, 236-250x" in speed
    assert "An 80-band model (the 1 s-crop weights bundled from 2026-12-02, 15:50 UTC) reached 217x" in speed
    assert "same architecture" not in speed  # these weights have 120 bands: no earlier model shares their architecture


def test_the_cards_dc_offset_check_does_not_claim_these_weights_front_end():
    # measured on the 80-band weights of 2026-12-02; the card said "same front-end", untrue since 120 bands
    gain = flat(CARD[CARD.index("- **Gain-invariant:**") :].split("\n- ")[0])
    assert "same front-end" not in gain
    assert "2026-12-02, 00:50 UTC: the same level normalisation, 80 bands" in gain
