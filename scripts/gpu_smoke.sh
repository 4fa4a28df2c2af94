#!/usr/bin/env bash
# GPU smoke test: run this first on a CUDA machine, before paying for a 10-minute 8xH100 run.
#   1. the GPU-only tests (pytest -m gpu: torch.compile vs eager, FlexAttention and FA3 vs SDPA, a resume
#      checkpoint restored on CUDA);
#   2. a short torchrun of the default recipe (11x512, loop, lanes, gates, GPTQ int6 + rANS export) on
#      all visible GPUs, on the built-in synthetic corpus (sp1024, generated once if missing);
#   3. a summary parsed from the run's log (scripts/gpu_smoke_summary.py): ms/step, steps, peak memory,
#      recompiles, artifact size and headroom, val_bpb, and the steps a 600 s run would make.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/gpu_smoke.sh [--gpus N] [--seconds S] [--skip-tests] [--out DIR] [--dry-run] [-h|--help]

GPU smoke test, a few minutes on a CUDA machine: the GPU tests (pytest -m gpu), then a short
torchrun of the default recipe on the synthetic corpus (VOCAB_SIZE=1024), then a summary of the log.

  --gpus N       processes/GPUs for torchrun (default: all visible GPUs); N must divide 8
  --seconds S    training wallclock, MAX_WALLCLOCK_SECONDS (default 60; includes the 8 s GPTQ reserve)
  --skip-tests   skip the pytest -m gpu step
  --out DIR      where the logs, checkpoint and artifact go (default: a fresh runs/gpu_smoke/<time>)
  --dry-run      print the commands it would run and exit; runs nothing (works without a GPU)
  -h, --help     this help

Other knobs in your environment (e.g. ATTN_BACKEND=sdpa) pass through to train_gpt.py.
Exit codes: 0 ok, 1 a step failed, 2 bad usage or no CUDA GPU.
EOF
}

die() { echo "gpu_smoke: error: $*" >&2; exit 2; }

CALLER_DIR=$(pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
GPUS="" TRAIN_SECONDS=60 SKIP_TESTS=0 OUT="" DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --gpus) [ $# -ge 2 ] || die "--gpus needs a value"; GPUS=$2; shift 2 ;;
    --gpus=*) GPUS=${1#*=}; shift ;;
    --seconds) [ $# -ge 2 ] || die "--seconds needs a value"; TRAIN_SECONDS=$2; shift 2 ;;
    --seconds=*) TRAIN_SECONDS=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --skip-tests) SKIP_TESTS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [ -n "$GPUS" ]; then
  [[ "$GPUS" =~ ^[0-9]+$ ]] || die "--gpus $GPUS: must be a whole number of GPUs (1, 2, 4 or 8)"
  case "$GPUS" in
    1|2|4|8) ;;
    *) die "--gpus $GPUS: the number of GPUs must divide 8 (1, 2, 4 or 8): gradient accumulation of 8/N keeps the global batch" ;;
  esac
fi
RESERVE=${GPTQ_RESERVE_SECONDS:-8}
[[ "$TRAIN_SECONDS" =~ ^[0-9]+$ ]] || die "--seconds must be a whole number of seconds, got '$TRAIN_SECONDS'"
awk -v s="$TRAIN_SECONDS" -v r="$RESERVE" 'BEGIN { exit !(s > r) }' \
  || die "--seconds $TRAIN_SECONDS must exceed the GPTQ reserve of ${RESERVE} s (GPTQ_RESERVE_SECONDS)"

cd "$REPO"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ -x .venv/bin/torchrun ]; then TORCHRUN=(.venv/bin/torchrun)
elif command -v torchrun >/dev/null 2>&1; then TORCHRUN=(torchrun)
else TORCHRUN=("$PY" -m torch.distributed.run)
fi

# CUDA: nvidia-smi (train_gpt.py logs its output) and torch.cuda.is_available() in the Python we use.
VISIBLE=0 NO_CUDA=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
  NO_CUDA="nvidia-smi not found"
else
  VISIBLE=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' \
    2>/dev/null | tail -n 1 || true)
  [[ "$VISIBLE" =~ ^[0-9]+$ ]] || VISIBLE=0
  [ "$VISIBLE" -gt 0 ] || NO_CUDA="torch.cuda.is_available() is False in $PY"
fi
if [ -n "$NO_CUDA" ] && [ "$DRY_RUN" = 0 ]; then
  die "no CUDA GPU on this machine ($NO_CUDA); run this on a GPU machine (--dry-run shows the commands)"
fi

NOTE=""
if [ -z "$GPUS" ]; then
  if [ "$VISIBLE" -gt 0 ]; then
    GPUS=$VISIBLE
    case "$GPUS" in
      1|2|4|8) ;;
      *) die "$GPUS GPUs are visible but the number must divide 8: pass --gpus 1, 2, 4 or 8 (or set CUDA_VISIBLE_DEVICES)" ;;
    esac
  else
    GPUS=8 NOTE="# no CUDA GPU visible here ($NO_CUDA): showing --gpus 8"
  fi
elif [ "$DRY_RUN" = 0 ] && [ "$GPUS" -gt "$VISIBLE" ]; then
  die "--gpus $GPUS but only $VISIBLE CUDA GPU(s) are visible"
fi

if [ -z "$OUT" ]; then
  OUT=$REPO/runs/gpu_smoke/$(date +%Y%m%d-%H%M%S)
  while [ -e "$OUT" ]; do OUT=$OUT-$$; done
else
  case "$OUT" in /*) ;; *) OUT=$CALLER_DIR/$OUT ;; esac
fi
RUN_ID=gpu_smoke
LOG=$OUT/logs/$RUN_ID.txt
CONSOLE=$OUT/console.txt
DATA=data/datasets/synthetic_sp1024

TEST_CMD=("$PY" -m pytest -m gpu -q tests)
DATA_CMD=("$PY" data/synthetic_corpus.py --out "$DATA")
TRAIN_ENV=(DATA_PATH="./$DATA" TOKENIZER_PATH="./$DATA/tokenizer.model" VOCAB_SIZE=1024
           MAX_WALLCLOCK_SECONDS="$TRAIN_SECONDS" VAL_LOSS_EVERY=0 RUN_ID="$RUN_ID" ARTIFACT_DIR="$OUT")
TRAIN_CMD=(env "${TRAIN_ENV[@]}" "${TORCHRUN[@]}" --standalone --nproc_per_node="$GPUS" train_gpt.py)
SUMMARY_CMD=("$PY" scripts/gpu_smoke_summary.py "$LOG" --console "$CONSOLE" --target-seconds 600)

show() { printf '%q ' "$@" | sed 's/ $//'; echo; }

if [ "$DRY_RUN" = 1 ]; then
  echo "# gpu_smoke dry run: nothing is executed. From $REPO it would run:"
  [ -z "$NOTE" ] || echo "$NOTE"
  if [ "$SKIP_TESTS" = 1 ]; then echo "# (GPU tests skipped: --skip-tests)"; else show "${TEST_CMD[@]}"; fi
  if [ -f "$DATA/floor.json" ]; then echo "# (synthetic corpus already in $DATA)"; else show "${DATA_CMD[@]}"; fi
  echo "mkdir -p $(printf '%q' "$OUT")"
  show "${TRAIN_CMD[@]}"
  echo "# (output also copied to $(printf '%q' "$CONSOLE"))"
  show "${SUMMARY_CMD[@]}"
  exit 0
fi

[ ! -e "$LOG" ] || die "$OUT already holds a smoke run ($LOG); pass another --out or delete it"
mkdir -p "$OUT"
started=$(date +%s)
echo "gpu_smoke: $GPUS GPU(s), ${TRAIN_SECONDS} s of training, output in $OUT"

if [ "$SKIP_TESTS" = 0 ]; then
  echo "gpu_smoke: [1/3] GPU tests: $(show "${TEST_CMD[@]}")"
  set +e
  "${TEST_CMD[@]}" 2>&1 | tee "$OUT/pytest.txt"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    echo "gpu_smoke: the GPU tests failed (exit $rc, $OUT/pytest.txt); fix them or rerun with --skip-tests" >&2
    exit 1
  fi
else
  echo "gpu_smoke: [1/3] GPU tests skipped (--skip-tests)"
fi
tests_done=$(date +%s)

if [ ! -f "$DATA/floor.json" ]; then
  echo "gpu_smoke: generating the synthetic corpus: $(show "${DATA_CMD[@]}")"
  "${DATA_CMD[@]}"
fi

echo "gpu_smoke: [2/3] training: $(show "${TRAIN_CMD[@]}")"
set +e
"${TRAIN_CMD[@]}" 2>&1 | tee "$CONSOLE"
rc=${PIPESTATUS[0]}
set -e
train_done=$(date +%s)

echo
echo "gpu_smoke: [3/3] summary of $LOG"
set +e
"${SUMMARY_CMD[@]}"
summary_rc=$?
set -e
echo "wallclock:   tests $((tests_done - started)) s, corpus + training + export + eval $((train_done - tests_done)) s"
echo "output:      $OUT"
if [ "$rc" != 0 ]; then
  echo "gpu_smoke: the training run failed (exit $rc); see $CONSOLE" >&2
  exit 1
fi
[ "$summary_rc" = 0 ] || exit 1
