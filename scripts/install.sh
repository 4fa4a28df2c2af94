#!/usr/bin/env bash
# Install the project's dependencies into the active Python environment.
# A machine without a GPU gets a CPU build of torch first (TORCH_CPU_SPEC overrides which one), so
# requirements.txt does not pull a multi-GB CUDA build; a GPU machine keeps the torch it already has.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install "torch>=2.9"
  else
    python -m pip install ${TORCH_CPU_SPEC:-torch==2.13.0}
  fi
fi
python -m pip install -r requirements.txt
