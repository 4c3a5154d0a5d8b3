#!/usr/bin/env bash
# The main job: what a new user sees working right after install.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
.venv/bin/sdd list
