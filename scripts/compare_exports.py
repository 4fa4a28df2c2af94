"""Export methods side by side on one trained checkpoint: packed bytes, bits per matrix parameter,
quantization tax in val_bpb and time.

    python scripts/compare_exports.py RECIPE.env CHECKPOINT.pt [KNOB=VALUE ...]
    e.g. python scripts/compare_exports.py records/recipes/cpu_demo.env final_model.pt

The checkpoint is the raw final_model.pt a run writes (after EMA); the recipe (plus overrides) gives
the model shape and data. GPTQ calibrates on training tokens as in a real run; the tax is the
val_bpb of the dequantized artifact minus that of the float weights, on the full val split.
"""

import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt as tg  # noqa: E402

METHODS = [  # (label, overrides)
    ("int8 per-row + zlib (baseline)", dict(quant_method="int8", compressor="zlib")),
    ("GPTQ-lite int8 + zstd (#895)", dict(quant_method="gptq_lite", matrix_bits=8, embed_bits=8, compressor="zstd")),
    ("GPTQ-lite int6 + brotli", dict(quant_method="gptq_lite", compressor="brotli")),
    ("round-to-nearest int6, SDClip scales + brotli", dict(quant_method="rtn", lqer_enabled=False, compressor="brotli")),
    ("GPTQ int6, no LQER + brotli", dict(quant_method="gptq", lqer_enabled=False, compressor="brotli")),
    ("GPTQ int6 + LQER + brotli (default)", dict(quant_method="gptq", lqer_enabled=True, compressor="brotli")),
    ("GPTQ int6 + LQER + lzma", dict(quant_method="gptq", lqer_enabled=True, compressor="lzma")),
]


def main() -> None:
    recipe, checkpoint, *overrides = sys.argv[1:]
    env = dict(line.split("=", 1) for line in Path(recipe).read_text().splitlines() if line and line[0] != "#")
    env.update(dict(o.split("=", 1) for o in overrides))
    hp = tg.Hyperparameters.from_env(env)
    rt = tg.Runtime(0, 1, 0, torch.device("cpu"), False)
    quiet = lambda *a, **k: None  # noqa: E731
    val = tg.load_validation(hp, rt, quiet)
    model = tg.build_model(hp, rt.device)
    state = torch.load(checkpoint, map_location="cpu")
    model.load_state_dict(state)
    _, float_bpb = tg.eval_val(model, val, hp, rt)
    print(f"checkpoint {checkpoint}: float val_bpb {float_bpb:.5f}; large matrices = 2-D tensors over "
          f"{hp.keep_float_max_numel} elements")
    print("| export | packed bytes | bits / matrix param | quantization tax (val_bpb) | time |")
    print("|---|---|---|---|---|")
    for label, changes in METHODS:
        rtn = changes.get("quant_method") == "rtn"  # GPTQ's own scales without the Hessian: its equal-bits baseline
        method = replace(hp, **{**changes, "quant_method": "gptq"} if rtn else changes)
        start = time.perf_counter()
        quantized = (tg.quantize_state_dict(model.state_dict(), method, hessians={}) if rtn
                     else tg.quantize_for_export(model, method, rt, quiet))
        blob = tg.pack_artifact(quantized, method.model_config(), method.compressor)
        seconds = time.perf_counter() - start
        report = tg.budget_report(quantized, method.compressor, 0, len(blob))
        bits = re.search(r"budget:matrices params:\d+ bits_per_param:(\S+)", "\n".join(report)).group(1)
        scored = tg.build_model(hp, rt.device)
        scored.load_state_dict(tg.dequantize_state_dict(tg.unpack_artifact(blob)[0]))
        _, bpb = tg.eval_val(scored, val, hp, rt)
        print(f"| {label} | {len(blob):,} | {bits} | {bpb - float_bpb:+.5f} | {seconds:.1f} s |")
    model.load_state_dict(state)


if __name__ == "__main__":
    main()
