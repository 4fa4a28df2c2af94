#!/usr/bin/env bash
# GPU smoke test: run this first on a CUDA machine, before paying for a 10-minute 8xH100 run.
#   1. the GPU-only tests (pytest -m gpu: torch.compile vs eager, FlexAttention and FA3 vs SDPA, a resume
#      checkpoint restored on CUDA);
#   2-4. scripts/gpu_bench.py on one GPU, each line also appended to OUT/bench.txt: FA3 varlen with the bucketed
#      vs the trimmed cu_seqlens (fa3); the host syncs of the timed loop's steps, one a step expected (syncs);
#      one LoRA-TTT chunk step at 64 and at 1 rows, and the TTT time on 8 GPUs projected from them (ttt);
#   5. a short torchrun at VOCAB_SIZE=8192 on random-token shards (3 x 16M tokens and a tokenizer, generated
#      once: nothing is downloaded) that crosses a shard switch: stage_avg per stage, the train_loader line;
#   6. a short torchrun of the default recipe (11x512, loop, lanes, gates, GPTQ int6 + rANS export) on
#      all visible GPUs, on the built-in synthetic corpus (sp1024, generated once if missing);
#   7. summaries parsed from the logs (scripts/gpu_smoke_summary.py): ms/step overall and per stage, steps,
#      loader waits, peak memory, recompiles, artifact size and headroom, val_bpb, the steps a 600 s run would
#      make, and the gpu_bench results.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/gpu_smoke.sh [--gpus N] [--seconds S] [--sp8192-seconds S] [--skip-tests] [--skip LIST]
                                 [--out DIR] [--dry-run] [-h|--help]

GPU smoke test, a few minutes on a CUDA machine: the GPU tests (pytest -m gpu); on one GPU, the FA3
cu_seqlens benchmark, the host syncs of training steps and a TTT chunk step (scripts/gpu_bench.py); a short
torchrun at VOCAB_SIZE=8192 on random-token shards that crosses a shard switch; a short torchrun of the
default recipe on the synthetic corpus (VOCAB_SIZE=1024); then summaries of the logs and benchmarks.

  --gpus N             processes/GPUs for torchrun (default: all visible GPUs); N must divide 8
  --seconds S          training wallclock of the default-recipe run, MAX_WALLCLOCK_SECONDS (default 60;
                       includes the 8 s GPTQ reserve)
  --sp8192-seconds S   the same for the vocab-8192 run (default 75)
  --skip-tests         skip the pytest -m gpu step (the same as --skip tests)
  --skip LIST          skip stages, comma-separated, of: tests, fa3, syncs, ttt, sp8192
  --out DIR            where the logs, checkpoint and artifact go (default: a fresh runs/gpu_smoke/<time>)
  --dry-run            print the commands it would run and exit; runs nothing (works without a GPU)
  -h, --help           this help

Other knobs in your environment (e.g. ATTN_BACKEND=sdpa) pass through to train_gpt.py and gpu_bench.py.
A failed benchmark or vocab-8192 stage does not stop the later stages; the exit code reports it.
Exit codes: 0 ok, 1 a step failed, 2 bad usage or no CUDA GPU.
EOF
}

die() { echo "gpu_smoke: error: $*" >&2; exit 2; }

CALLER_DIR=$(pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
GPUS="" TRAIN_SECONDS=60 SP8192_SECONDS=75 SKIP="" OUT="" DRY_RUN=0
STAGES="tests fa3 syncs ttt sp8192"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --gpus) [ $# -ge 2 ] || die "--gpus needs a value"; GPUS=$2; shift 2 ;;
    --gpus=*) GPUS=${1#*=}; shift ;;
    --seconds) [ $# -ge 2 ] || die "--seconds needs a value"; TRAIN_SECONDS=$2; shift 2 ;;
    --seconds=*) TRAIN_SECONDS=${1#*=}; shift ;;
    --sp8192-seconds) [ $# -ge 2 ] || die "--sp8192-seconds needs a value"; SP8192_SECONDS=$2; shift 2 ;;
    --sp8192-seconds=*) SP8192_SECONDS=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --skip-tests) SKIP=$SKIP,tests; shift ;;
    --skip) [ $# -ge 2 ] || die "--skip needs a value"; SKIP=$SKIP,$2; shift 2 ;;
    --skip=*) SKIP=$SKIP,${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
for name in ${SKIP//,/ }; do
  [[ " $STAGES " == *" $name "* ]] || die "--skip $name: no such stage (the stages: ${STAGES// /, })"
done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }

if [ -n "$GPUS" ]; then
  [[ "$GPUS" =~ ^[0-9]+$ ]] || die "--gpus $GPUS: must be a whole number of GPUs (1, 2, 4 or 8)"
  case "$GPUS" in
    1|2|4|8) ;;
    *) die "--gpus $GPUS: the number of GPUs must divide 8 (1, 2, 4 or 8): gradient accumulation of 8/N keeps the global batch" ;;
  esac
fi
RESERVE=${GPTQ_RESERVE_SECONDS:-8}
check_seconds() {  # option, value
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, got '$2'"
  awk -v s="$2" -v r="$RESERVE" 'BEGIN { exit !(s > r) }' \
    || die "$1 $2 must exceed the GPTQ reserve of ${RESERVE} s (GPTQ_RESERVE_SECONDS)"
}
check_seconds --seconds "$TRAIN_SECONDS"
check_seconds --sp8192-seconds "$SP8192_SECONDS"

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
BENCH=$OUT/bench.txt
DATA=data/datasets/synthetic_sp1024
DATA8192=data/datasets/random_sp8192
OUT8192=$OUT/sp8192
LOG8192=$OUT8192/logs/gpu_smoke_sp8192.txt
CONSOLE8192=$OUT8192/console.txt

TEST_CMD=("$PY" -m pytest -m gpu -q -n 0 tests)  # -n 0: one process, the GPU to itself
FA3_CMD=("$PY" scripts/gpu_bench.py fa3)
SYNCS_CMD=("$PY" scripts/gpu_bench.py syncs --steps 5)
TTT_CMD=("$PY" scripts/gpu_bench.py ttt)
# 16M-token shards: on 1 GPU (786,432 tokens a step, 8 micro-batches) the second shard opens after ~20 steps
DATA8192_CMD=("$PY" scripts/gpu_bench.py data --out "$DATA8192" --vocab 8192 --shards 3 --shard-tokens 16000000
              --val-tokens 131072)
TRAIN8192_ENV=(DATA_PATH="./$DATA8192" TOKENIZER_PATH="./$DATA8192/tokenizer.model" VOCAB_SIZE=8192
               MAX_WALLCLOCK_SECONDS="$SP8192_SECONDS" WARMUP_STEPS=5 VAL_LOSS_EVERY=0 RUN_ID=gpu_smoke_sp8192
               ARTIFACT_DIR="$OUT8192")
TRAIN8192_CMD=(env "${TRAIN8192_ENV[@]}" "${TORCHRUN[@]}" --standalone --nproc_per_node="$GPUS" train_gpt.py)
SUMMARY8192_CMD=("$PY" scripts/gpu_smoke_summary.py "$LOG8192" --console "$CONSOLE8192" --target-seconds 600
                 --title "gpu_smoke summary: vocab-8192 run on random tokens")
DATA_CMD=("$PY" data/synthetic_corpus.py --out "$DATA")
TRAIN_ENV=(DATA_PATH="./$DATA" TOKENIZER_PATH="./$DATA/tokenizer.model" VOCAB_SIZE=1024
           MAX_WALLCLOCK_SECONDS="$TRAIN_SECONDS" VAL_LOSS_EVERY=0 RUN_ID="$RUN_ID" ARTIFACT_DIR="$OUT")
TRAIN_CMD=(env "${TRAIN_ENV[@]}" "${TORCHRUN[@]}" --standalone --nproc_per_node="$GPUS" train_gpt.py)
SUMMARY_CMD=("$PY" scripts/gpu_smoke_summary.py "$LOG" --console "$CONSOLE" --target-seconds 600 --bench "$BENCH")

show() { printf '%q ' "$@" | sed 's/ $//'; echo; }
bench_cmd() {  # the gpu_bench command of a stage
  case $1 in fa3) show "${FA3_CMD[@]}" ;; syncs) show "${SYNCS_CMD[@]}" ;; ttt) show "${TTT_CMD[@]}" ;; esac
}

if [ "$DRY_RUN" = 1 ]; then
  echo "# gpu_smoke dry run: nothing is executed. From $REPO it would run:"
  [ -z "$NOTE" ] || echo "$NOTE"
  if skipped tests; then echo "# (GPU tests skipped: --skip-tests)"; else show "${TEST_CMD[@]}"; fi
  echo "mkdir -p $(printf '%q' "$OUT")"
  for stage in fa3 syncs ttt; do
    if skipped "$stage"; then echo "# ($stage benchmark skipped: --skip $stage)"; continue; fi
    bench_cmd "$stage"
    echo "# (output also appended to $(printf '%q' "$BENCH"))"
  done
  if skipped sp8192; then
    echo "# (vocab-8192 run skipped: --skip sp8192)"
  else
    if [ -f "$DATA8192/data_info.json" ]; then echo "# (random-token sp8192 data already in $DATA8192)"
    else show "${DATA8192_CMD[@]}"; fi
    echo "mkdir -p $(printf '%q' "$OUT8192")"
    show "${TRAIN8192_CMD[@]}"
    echo "# (output also copied to $(printf '%q' "$CONSOLE8192"))"
  fi
  if [ -f "$DATA/floor.json" ]; then echo "# (synthetic corpus already in $DATA)"; else show "${DATA_CMD[@]}"; fi
  show "${TRAIN_CMD[@]}"
  echo "# (output also copied to $(printf '%q' "$CONSOLE"))"
  skipped sp8192 || show "${SUMMARY8192_CMD[@]}"
  show "${SUMMARY_CMD[@]}"
  exit 0
fi

[ ! -e "$LOG" ] || die "$OUT already holds a smoke run ($LOG); pass another --out or delete it"
mkdir -p "$OUT"
started=$(date +%s)
echo "gpu_smoke: $GPUS GPU(s), ${TRAIN_SECONDS} s of training (vocab-8192 run: ${SP8192_SECONDS} s), output in $OUT"
FAILED=()

if skipped tests; then
  echo "gpu_smoke: [1/7] GPU tests skipped (--skip-tests)"
else
  echo "gpu_smoke: [1/7] GPU tests: $(show "${TEST_CMD[@]}")"
  set +e
  "${TEST_CMD[@]}" 2>&1 | tee "$OUT/pytest.txt"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    echo "gpu_smoke: the GPU tests failed (exit $rc, $OUT/pytest.txt); fix them or rerun with --skip-tests" >&2
    exit 1
  fi
fi
tests_done=$(date +%s)

bench_stage() {  # i/7, title, stage name, command...: the output goes to the console and OUT/bench.txt
  local number=$1 title=$2 name=$3 rc
  shift 3
  if skipped "$name"; then echo "gpu_smoke: [$number] $title skipped (--skip $name)"; return 0; fi
  echo "gpu_smoke: [$number] $title: $(show "$@")"
  set +e
  "$@" 2>&1 | tee -a "$BENCH"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || FAILED+=("$name (exit $rc)")
}
bench_stage 2/7 "FA3 cu_seqlens benchmark" fa3 "${FA3_CMD[@]}"
bench_stage 3/7 "host syncs of training steps" syncs "${SYNCS_CMD[@]}"
bench_stage 4/7 "TTT chunk step" ttt "${TTT_CMD[@]}"
bench_done=$(date +%s)

rc8192=skipped
if skipped sp8192; then
  echo "gpu_smoke: [5/7] vocab-8192 run skipped (--skip sp8192)"
else
  if [ ! -f "$DATA8192/data_info.json" ]; then
    echo "gpu_smoke: generating the random-token sp8192 data: $(show "${DATA8192_CMD[@]}")"
    "${DATA8192_CMD[@]}" || FAILED+=("sp8192 data")
  fi
  if [ -f "$DATA8192/data_info.json" ]; then
    mkdir -p "$OUT8192"
    echo "gpu_smoke: [5/7] vocab-8192 run: $(show "${TRAIN8192_CMD[@]}")"
    set +e
    "${TRAIN8192_CMD[@]}" 2>&1 | tee "$CONSOLE8192"
    rc8192=${PIPESTATUS[0]}
    set -e
    [ "$rc8192" = 0 ] || FAILED+=("sp8192 run (exit $rc8192, $CONSOLE8192)")
  fi
fi
sp8192_done=$(date +%s)

if [ ! -f "$DATA/floor.json" ]; then
  echo "gpu_smoke: generating the synthetic corpus: $(show "${DATA_CMD[@]}")"
  "${DATA_CMD[@]}"
fi

echo "gpu_smoke: [6/7] training: $(show "${TRAIN_CMD[@]}")"
set +e
"${TRAIN_CMD[@]}" 2>&1 | tee "$CONSOLE"
rc=${PIPESTATUS[0]}
# the per-group byte breakdown is read from the artifact (the run logs only budget:total); appended to the log
[ -f "$OUT/final_model.int6.ptz" ] && "$PY" scripts/budget.py "$OUT/final_model.int6.ptz" >> "$LOG"
set -e
train_done=$(date +%s)

echo
echo "gpu_smoke: [7/7] summaries"
set +e
if [ "$rc8192" != skipped ]; then
  "${SUMMARY8192_CMD[@]}" || FAILED+=("sp8192 summary (the run did not finish)")
  echo
fi
"${SUMMARY_CMD[@]}"
summary_rc=$?
set -e
echo "wallclock:   tests $((tests_done - started)) s, benchmarks $((bench_done - tests_done)) s, vocab-8192 run" \
     "$((sp8192_done - bench_done)) s, corpus + training + export + eval $((train_done - sp8192_done)) s"
echo "output:      $OUT"
if [ "$rc" != 0 ]; then
  echo "gpu_smoke: the training run failed (exit $rc); see $CONSOLE" >&2
  exit 1
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  printf -v failures '%s; ' "${FAILED[@]}"
  echo "gpu_smoke: stages failed: ${failures%; }" >&2
  exit 1
fi
[ "$summary_rc" = 0 ] || exit 1
