#!/usr/bin/env bash
# Raw-waveform AASIST-L and the logspec LCNN, each trained from scratch by the default recipe on sddbench `train`
# (seeds 1, 1234 and 2), the average ensemble of the two per seed, and all nine models scored on `val` and
# `test_unseen` (docs/benchmarks.md, "Raw-waveform AASIST-L and its average ensemble with the logspec LCNN").
# Written for the one GPU lent to the twenty-ninth session; it runs anywhere (DEVICE=cpu), only slower.
#
#   bash benchmarks/gpu_aasist_mile.sh OUT_DIR
#
# From the repository root, with the corpus at DATA (default ../shared/data/sddbench, the recipes' path).
# Environment: DEVICE (cuda), WORKERS (loader workers per training, 2), SEEDS ("1 1234 2"), RUNS (runs/gpu),
# TRAIN_TIMEOUT (seconds for the six trainings together, 0 = none), EXTRA (more overrides for every training),
# SCORE_JOBS (scorings at a time, 3), PYTHON (the interpreter with sddkit: .venv/bin/python where scripts/setup.sh
# made it, else python3). Run it again after a time-out to continue. Writes OUT_DIR/{val,test_unseen}.txt,
# OUT_DIR/logs/*.log, OUT_DIR/scores/MODEL.csv and OUT_DIR/status.txt (one line per model: trained / scored or what
# failed).
set -u
OUT=${1:?usage: gpu_aasist_mile.sh OUT_DIR}
DATA=${DATA:-../shared/data/sddbench}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-2}
SEEDS=${SEEDS:-"1 1234 2"}
RUNS=${RUNS:-runs/gpu}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-0}
EXTRA=${EXTRA:-}
SCORE_JOBS=${SCORE_JOBS:-3}
# the checkout's .venv (scripts/setup.sh installs sddkit there, and nothing activates it): a bare python3 had no
# sddkit, or another version of it
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SDD=("$PYTHON" -m sddkit.cli.main)
RECIPE=recipes/sddbench/default_model.yaml
mkdir -p "$OUT/logs" "$OUT/scores" "$RUNS"
status() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/status.txt"; }

# the two partitions as file lists (absolute paths under DATA as given, so the score files name the same files here
# and on the machine that evaluates them when DATA is the same absolute path on both)
"$PYTHON" - "$DATA" "$OUT" <<'EOF' || exit 1
import csv, os, sys
data, out = sys.argv[1], sys.argv[2]
base = os.path.abspath(data)
rows = list(csv.DictReader(open(os.path.join(data, "manifest.csv"), encoding="utf-8")))
for part in ("val", "test_unseen"):
    paths = [os.path.join(base, r["path"]) for r in rows if r["partition"] == part]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.exit(f"{len(missing)} {part} files missing under {data}, e.g. {missing[0]}")
    with open(os.path.join(out, f"{part}.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(paths) + "\n")
train = [r for r in rows if r["partition"] == "train" and r["source"] != "resemblyzer"]
missing = [r["path"] for r in train if not os.path.isfile(os.path.join(data, r["path"]))]
if missing:
    sys.exit(f"{len(missing)} train files missing under {data}, e.g. {missing[0]}")
print(f"lists written; {len(train)} train files present")
EOF

# name -> the overrides that make the default recipe train it
declare -A FRONT=(
  [aasistl]='model.frontend={name: raw, normalize: true}'
  [logspec]='model.frontend={name: logspec, normalize: true, level_db: -27}'
)
declare -A BACK=(
  [aasistl]='model.backend={name: aasist_l}'
  [logspec]='model.backend={name: lcnn, channels: 16, dropout: 0.3}'
)

# Run again after a time-out: a finished training is kept, an interrupted one continues from its last checkpoint.
pids=()
for seed in $SEEDS; do
  for name in aasistl logspec; do
    run=$RUNS/${name}_s$seed
    [ -f "$run/best/config.json" ] && continue
    resume=(); [ -e "$run/checkpoints/latest" ] && resume=(--resume)
    timeout_cmd=(); [ "$TRAIN_TIMEOUT" != 0 ] && timeout_cmd=(timeout -s INT "$TRAIN_TIMEOUT")
    # shellcheck disable=SC2086  # EXTRA holds several overrides
    "${timeout_cmd[@]}" "${SDD[@]}" train "${resume[@]}" "$RECIPE" "seed=$seed" "trainer.device=$DEVICE" \
      "data.num_workers=$WORKERS" "${FRONT[$name]}" "${BACK[$name]}" "trainer.out_dir=$run" $EXTRA \
      >> "$OUT/logs/train_${name}_s$seed.log" 2>&1 &
    pids+=("$!:${name}_s$seed")
  done
done
for entry in "${pids[@]}"; do
  wait "${entry%%:*}"; rc=$?
  status "train ${entry#*:} rc=$rc best=$([ -f "$RUNS/${entry#*:}/best/config.json" ] && echo yes || echo no)"
done

models=()
for seed in $SEEDS; do
  for name in aasistl logspec; do
    [ -f "$RUNS/${name}_s$seed/best/config.json" ] && models+=("${name}_s$seed")
  done
  if [ -f "$RUNS/aasistl_s$seed/best/config.json" ] && [ -f "$RUNS/logspec_s$seed/best/config.json" ] \
      && [ ! -f "$RUNS/avg2_s$seed/best/config.json" ]; then
    # no training: an average gate over frozen experts is exported as built
    "${SDD[@]}" train recipes/sddbench/mile_average_ensemble.yaml "seed=$seed" "trainer.device=$DEVICE" \
      "trainer.out_dir=$RUNS/avg2_s$seed" \
      "mixture.expert_dirs=[$RUNS/aasistl_s$seed/best, $RUNS/logspec_s$seed/best]" \
      > "$OUT/logs/train_avg2_s$seed.log" 2>&1
    status "ensemble avg2_s$seed rc=$?"
  fi
  [ -f "$RUNS/avg2_s$seed/best/config.json" ] && models+=("avg2_s$seed")
done

running=0
for model in "${models[@]}"; do
  # sdd score skips the files an earlier, interrupted scoring already wrote
  ( "${SDD[@]}" score "$OUT/val.txt" "$OUT/test_unseen.txt" --model "$RUNS/$model/best" --device "$DEVICE" \
      --workers 4 --batch-size 32 --quiet --out "$OUT/scores/$model.csv" > "$OUT/logs/score_$model.log" 2>&1
    status "score $model rc=$?" ) &
  running=$((running + 1))
  if [ "$running" -ge "$SCORE_JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
status "done"
