#!/usr/bin/env bash
# One command from nothing to a working install, then the main job.
#   bash scripts/setup.sh
# Creates .venv (Python 3.11), installs the local CPU torch 2.13.0 wheel first so that no
# dependency can pull another torch or CUDA packages, installs sddkit with its dev extras,
# and runs the main job (scripts/main_job.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
  if ! command -v "$PY" >/dev/null; then  # named on purpose: not silently replaced by whatever python3 is
    echo "setup.sh: PYTHON=$PY is not an executable Python; set it to a Python 3.11 or leave it unset" >&2
    exit 1
  fi
else
  PY=python3.11
  command -v "$PY" >/dev/null || PY=python3
fi
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Python 3.11 only: the local CPU torch wheel is built for it, and for another Python pip would fetch torch from
# the index (a CUDA build with its nvidia-* packages). Checked before anything is created or installed, and for
# an existing .venv too (a .venv left by a run with another Python would be reused on every later run).
is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }
if [ -x .venv/bin/python ]; then
  if ! is_py311 .venv/bin/python; then
    echo "setup.sh: .venv holds $(.venv/bin/python -V 2>&1 || echo 'a broken Python'), not Python 3.11:" \
      "remove it (rm -rf .venv) and run again with Python 3.11" >&2
    exit 1
  fi
else
  if ! command -v "$PY" >/dev/null; then
    echo "setup.sh: no python3.11 or python3 on PATH; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if ! is_py311 "$PY"; then
    echo "setup.sh: needs Python 3.11, but $PY is $("$PY" -V 2>&1 || echo 'not a working Python');" \
      "install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  "$PY" -m venv .venv
fi
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
