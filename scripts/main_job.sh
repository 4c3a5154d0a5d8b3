#!/usr/bin/env bash
# The main job: score the example file with the bundled default model and show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=${SDD_MAIN_JOB_OUT:-sdd-main-job}
mkdir -p "$out"
rm -f "$out/scores.csv"
.venv/bin/sdd score examples/synthetic_speech_espeak.wav --out "$out/scores.csv" --quiet
echo "== $out/scores.csv (score: calibrated LLR, higher = more bona fide)"
cat "$out/scores.csv"
