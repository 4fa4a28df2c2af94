"""Export methods side by side on trained checkpoints: packed bytes, bits per matrix parameter,
quantization tax in val_bpb and time, averaged over the checkpoints given.

    python scripts/compare_exports.py RECIPE.env CHECKPOINT.pt [CHECKPOINT.pt ...] [KNOB=VALUE ...]
    e.g. python scripts/compare_exports.py records/recipes/cpu_demo.env final_model.pt

A checkpoint is the raw final_model.pt a run writes (after EMA); the recipe (plus overrides) gives
the model shape and data. GPTQ calibrates on training tokens as in a real run; the tax is the
val_bpb of the dequantized artifact minus that of the float weights, on the full val split.
"""

import pickle
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt as tg  # noqa: E402
from budget import budget_report  # noqa: E402
from records.tool import EnvFileError, read_env_file  # noqa: E402

OFF = dict(rans_coding=False)
METHODS = [  # (label, overrides)
    ("int8 per-row + zlib (baseline)", dict(quant_method="int8", compressor="zlib", **OFF)),
    ("GPTQ-lite int8 + zstd (#895)", dict(quant_method="gptq_lite", matrix_bits=8, embed_bits=8, compressor="zstd", **OFF)),
    ("GPTQ-lite int6 + brotli", dict(quant_method="gptq_lite", compressor="brotli", **OFF)),
    ("round-to-nearest int6, SDClip scales, rANS + brotli", dict(quant_method="rtn", lqer_enabled=False)),
    ("GPTQ int6, no LQER, rANS + brotli", dict(quant_method="gptq", lqer_enabled=False)),
    ("GPTQ int6 + LQER + brotli, no rANS", dict(quant_method="gptq", lqer_enabled=True, **OFF)),
    ("GPTQ int6 + LQER, rANS + brotli (default)", dict(quant_method="gptq", lqer_enabled=True)),
    ("GPTQ int6 + LQER, rANS + lzma", dict(quant_method="gptq", lqer_enabled=True, compressor="lzma")),
]


def top_matrix_params() -> int:
    """Large-matrix parameters of the default (top record) model: what bits per parameter is multiplied by."""
    top = tg.Hyperparameters()
    with torch.device("meta"):
        state = tg.GPT(top).state_dict()
    return sum(t.numel() for name, t in state.items() if t.ndim == 2 and t.numel() > top.keep_float_max_numel
               and tg.tensor_role(name) in ("embed", "attn", "mlp"))


def export_row(model, hp, changes, val, rt) -> tuple[int, float, float, float]:
    """(packed bytes, bits per matrix param, val_bpb of the artifact, seconds) of one export method."""
    quiet = lambda *a, **k: None  # noqa: E731
    rtn = changes.get("quant_method") == "rtn"  # GPTQ's own scales without the Hessian: its equal-bits baseline
    method = replace(hp, **{**changes, "quant_method": "gptq"} if rtn else changes)
    start = time.perf_counter()
    quantized = (tg.quantize_state_dict(model.state_dict(), method, hessians={}) if rtn
                 else tg.quantize_for_export(model, method, rt, quiet))
    rans = tg.rans_groups(quantized, method.rans_coding)
    blob = tg.pack_artifact(quantized, method.model_config(), method.compressor, rans)
    seconds = time.perf_counter() - start
    report = budget_report(quantized, method.compressor, rans)
    bits = float(re.search(r"budget:matrices params:\d+ bits_per_param:(\S+)", "\n".join(report)).group(1))
    scored = tg.build_model(hp, rt.device)
    scored.load_state_dict(tg.dequantize_state_dict(tg.unpack_artifact(blob)[0]))
    return len(blob), bits, tg.eval_val(scored, val, hp, rt)[1], seconds


class CheckpointError(ValueError):
    pass


def load_checkpoint(path: str, hp, rt):
    """The float model of a final_model.pt; a missing, damaged or foreign file is one line."""
    model = tg.build_model(hp, rt.device)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not a final_model.pt of this recipe's model"
        raise CheckpointError(f"{path}: {why}") from None
    return model


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    recipe, *args = argv
    checkpoints, overrides = [a for a in args if "=" not in a], [a for a in args if "=" in a]
    try:
        if not checkpoints:
            raise CheckpointError("no CHECKPOINT.pt given (usage: compare_exports.py RECIPE.env CHECKPOINT.pt ...)")
        env = read_env_file(recipe)
        env.update(o.split("=", 1) for o in overrides)
        hp = tg.Hyperparameters.from_env(env)
        rt = tg.Runtime(0, 1, 0, torch.device("cpu"), False)
        val = tg.load_validation(hp, rt, lambda *a, **k: None)
        models = [load_checkpoint(c, hp, rt) for c in checkpoints]  # every file checked before the long part
    except (EnvFileError, tg.HyperparameterError, tg.DataError, CheckpointError) as e:
        print(f"compare_exports: error: {e}", file=sys.stderr)
        return 2
    rows = {label: [] for label, _ in METHODS}
    for checkpoint, model in zip(checkpoints, models):
        float_bpb = tg.eval_val(model, val, hp, rt)[1]
        print(f"checkpoint {checkpoint}: float val_bpb {float_bpb:.5f}")
        for label, changes in METHODS:
            size, bits, bpb, seconds = export_row(model, hp, changes, val, rt)
            rows[label].append((size, bits, bpb - float_bpb, seconds))
            print(f"  {label}: {size:,} bytes, {bits:.3f} bits, tax {bpb - float_bpb:+.5f}, {seconds:.1f} s")
    top_params = top_matrix_params()
    print(f"\nmeans over {len(checkpoints)} checkpoint(s); large matrices = 2-D tensors over "
          f"{hp.keep_float_max_numel} elements; last column: bits / matrix param x the top model's "
          f"{top_params:,} large-matrix parameters (a projection; the cap is 16 MB for everything)")
    print("| export | packed bytes | bits / matrix param | quantization tax (val_bpb), min..max | time | top-size matrices |")
    print("|---|---|---|---|---|---|")
    for label, results in rows.items():
        size, bits, tax, seconds = (sum(col) / len(col) for col in zip(*results))
        taxes = [r[2] for r in results]
        print(f"| {label} | {size:,.0f} | {bits:.3f} | {tax:+.5f} ({min(taxes):+.5f}..{max(taxes):+.5f}) | "
              f"{seconds:.1f} s | {bits * top_params / 8e6:.2f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
