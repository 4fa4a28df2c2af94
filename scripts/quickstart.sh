#!/usr/bin/env bash
# Quick start on a fresh machine: make .venv, install, build the synthetic corpus, train the small demo
# model (150 s of training on the CPU), export and re-score it, and print its val_bpb beside the
# corpus's exact entropy floor, before and after the sliding window and score-first TTT. 5 to 9 minutes
# on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
bash scripts/install.sh
DATA=data/datasets/synthetic_sp1024
[ -f "$DATA/floor.json" ] || python data/synthetic_corpus.py --out "$DATA"
env $(grep -v '^#' records/recipes/cpu_demo.env | xargs) python train_gpt.py
python - "$DATA/floor.json" logs/cpu_demo.txt <<'PY'
import json, re, sys
floor = json.load(open(sys.argv[1]))["val_floor_bpb"]
log = open(sys.argv[2]).read()
for label, name in (("final_\\w+_roundtrip", "quantized artifact"), ("quantized_sliding_window", "sliding window"),
                    ("quantized_ttt_phased", "after score-first TTT")):
    found = re.findall(rf"^{label}_exact val_loss:\S+ val_bpb:(\S+)$", log, re.M)
    if found:
        print(f"demo val_bpb ({name}): {float(found[-1]):.4f}   entropy floor of the val split: {floor:.4f}   "
              f"gap: {float(found[-1]) - floor:.4f} bits/byte")
PY
