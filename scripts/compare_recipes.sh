#!/usr/bin/env bash
# Equal-compute comparison on the synthetic corpus (CPU): the default recipe scaled down
# (records/recipes/cpu_demo.env) against the official baseline's recipe at the same scale and parameter
# budget (cpu_demo_baseline.env). For each seed the two runs train at the same time, each pinned to its
# own core with one thread, so both see the same machine noise; each gets SECONDS of training.
# Each run keeps its log, checkpoint and artifact in runs/compare/RECIPE_seedN/.
# Usage: bash scripts/compare_recipes.sh [SECONDS=600] [SEED ...]   (default seeds: 1 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
SECONDS_PER_RUN=${1:-600}
shift || true
SEEDS=${*:-1 2 3}
DATA=data/datasets/synthetic_sp1024
[ -f "$DATA/floor.json" ] || python data/synthetic_corpus.py --out "$DATA"
run() {  # recipe core seed
  mkdir -p runs/compare/$1_seed$3
  env $(grep -v '^#' records/recipes/$1.env | xargs) MAX_WALLCLOCK_SECONDS=$SECONDS_PER_RUN SEED=$3 \
    OMP_NUM_THREADS=1 ARTIFACT_DIR=runs/compare/$1_seed$3 RUN_ID=train VAL_LOSS_EVERY=0 \
    taskset -c $2 python train_gpt.py > /dev/null
}
for seed in $SEEDS; do
  run cpu_demo_baseline 0 "$seed" & baseline=$!
  run cpu_demo 1 "$seed" & demo=$!
  wait $baseline; wait $demo  # a failed run stops the script (set -e)
done
python data/synthetic_corpus.py --print-floor "$DATA" | head -1
echo "| recipe | seed | steps | val_bpb before export | val_bpb of the artifact |"
echo "|---|---|---|---|---|"
for seed in $SEEDS; do
  for recipe in cpu_demo_baseline cpu_demo; do
    log=runs/compare/${recipe}_seed$seed/logs/train.txt
    steps=$(grep -oE '^stopping_early: wallclock_cap .* step:[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    before=$(grep -E "^(step:[0-9]+/[0-9]+|diagnostic pre-quantization post-average) val_loss" "$log" | tail -1 \
      | grep -oE 'val_bpb:[0-9.]+' | cut -d: -f2)
    after=$(grep -E "^final_\w+_roundtrip_exact" "$log" | tail -1 | grep -o 'val_bpb:\S*' | cut -d: -f2)
    echo "| $recipe | $seed | $steps | $before | $after |"
  done
done
