#!/usr/bin/env bash
# Score one artifact under every eval mode, eval-only, one fresh process per pass, and print a table:
# pass 1 = round trip + sliding window + Hedge (+ tilt), pass 2 = LoRA TTT, pass 3 = phased TTT (+ tilt).
#   bash scripts/eval_modes.sh RECIPE.env ARTIFACT.ptz OUT_DIR [VAR=value ...]
# The recipe gives the model and data knobs the artifact was trained with; VAR=value pairs override the
# eval knobs of every pass (e.g. EVAL_SEQ_LEN=256 TTT_EVAL_SEQ_LEN=256 PHASED_TTT_PREFIX_DOCS=40).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,6p "$0"; exit 2; }
RECIPE=$1 ARTIFACT=$(realpath "$2") OUT=$3
shift 3
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
mkdir -p "$OUT"
run() {  # name, then the pass's own knobs
  local name=$1
  shift
  env $(grep -v '^#' "$RECIPE" | xargs) ARTIFACT_DIR="$OUT" RUN_ID="eval_$name" EVAL_ONLY_PATH="$ARTIFACT" \
    EVAL_SUMMARY_JSON="$OUT/$name.json" "$@" "${OVERRIDES[@]}" "$PY" "$REPO/train_gpt.py" > "$OUT/$name.log" 2>&1 \
    || { echo "eval_modes: pass $name failed, see $OUT/$name.log" >&2; exit 1; }
}
OVERRIDES=("$@")
run windows TTT_ENABLED=0 SLIDING_WINDOW_ENABLED=1 USE_HEDGE=1 NGRAM_TILT_ENABLED=1
run lora_ttt TTT_ENABLED=1 PHASED_TTT_ENABLED=0
run phased_ttt TTT_ENABLED=1 PHASED_TTT_ENABLED=1 NGRAM_TILT_ENABLED=1
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print(f"| {'stage':36} | val_loss | val_bpb | targets | seconds |")
print("|---|---|---|---|---|")
for name in ("windows", "lora_ttt", "phased_ttt"):
    summary = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())
    for s in summary["stages"]:
        if name != "windows" and s["label"].startswith("final_"):
            continue  # the round trip is the same in every pass
        print(f"| {s['label']:36} | {s['val_loss']:.5f} | {s['val_bpb']:.5f} | {s['tokens']} | {s['seconds']:.1f} |")
    print(f"| ({name}: total eval {summary['timers']['total']:.1f} s) | | | | |")
PY
