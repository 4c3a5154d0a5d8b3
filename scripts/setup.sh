#!/usr/bin/env bash
# One command from nothing to a working install, then the main job.
#   bash scripts/setup.sh
# Creates .venv (Python 3.11), installs the local CPU torch 2.13.0 wheel first so that no
# dependency can pull another torch or CUDA packages, installs sddkit with its dev extras,
# and runs the main job (scripts/main_job.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
# pip's own status decides (a pipe into grep, which fails when it filters every line, hid a failed install)
if ! .venv/bin/python -m pip install -q -e ".[dev]" >.venv/pip-install.log 2>&1; then
  cat .venv/pip-install.log >&2
  echo "setup.sh: installing sddkit failed (log above, kept in .venv/pip-install.log)" >&2
  exit 1
fi
grep -v "is ignored: it is neither" .venv/pip-install.log || true
.venv/bin/python -c "import torch, sddkit; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('sddkit', sddkit.__version__, 'torch', torch.__version__)"
[ "${SDD_SKIP_MAIN_JOB:-0}" = 1 ] || bash scripts/main_job.sh
