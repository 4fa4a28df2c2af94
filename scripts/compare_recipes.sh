#!/usr/bin/env bash
# Equal-wall-time comparison on the synthetic corpus (CPU): the default recipe scaled down
# (records/recipes/cpu_demo.env) against the official baseline's recipe at the same scale
# (cpu_demo_baseline.env). Usage: bash scripts/compare_recipes.sh [SECONDS=300]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
SECONDS_PER_RUN=${1:-300}
DATA=data/datasets/synthetic_sp1024
[ -f "$DATA/floor.json" ] || python data/synthetic_corpus.py --out "$DATA"
for recipe in cpu_demo_baseline cpu_demo; do
  env $(grep -v '^#' records/recipes/$recipe.env | xargs) MAX_WALLCLOCK_SECONDS=$SECONDS_PER_RUN \
    RUN_ID=compare_$recipe VAL_LOSS_EVERY=0 python train_gpt.py > /dev/null
done
python data/synthetic_corpus.py --print-floor "$DATA" | head -1
for recipe in cpu_demo_baseline cpu_demo; do
  printf "%-18s %s  %s\n" "$recipe" \
    "$(grep -o 'stopping_early.*' logs/compare_$recipe.txt | tail -1 | grep -o 'step:[0-9]*' || true)" \
    "$(grep -E "^final_\w+_roundtrip_exact" logs/compare_$recipe.txt | tail -1)"
done
