"""Function depth: no function of src/sddkit past a McCabe complexity of 18 (ruff's C901, selected in
pyproject.toml so `ruff check` refuses it too), so the deep ones split into named helpers (the recipe type converter,
the robustness run, the PyAV stream decoder, the MLDG batch sampler's set-up) do not grow back."""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_COMPLEXITY = 18


def test_the_lint_settings_keep_the_limit():
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"]
    assert lint["mccabe"]["max-complexity"] <= MAX_COMPLEXITY


def test_no_function_in_src_is_deeper_than_the_limit():
    # ruff is a dev dependency (scripts/setup.sh installs it; .ci/run lints with it): run as a module of this
    # interpreter with the project's settings, checking only C901
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "C901", "--output-format", "concise"]
    proc = subprocess.run([*cmd, "src/sddkit"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"functions past complexity {MAX_COMPLEXITY} (split them):\n{proc.stdout}{proc.stderr}"
