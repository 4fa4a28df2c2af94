"""CPU training throughput of the baseline and default shapes, FLOPs per token, and a projected 8xH100 step.

    python scripts/benchmark_throughput.py [--steps 2] [--mfu 0.40]

Measured: train tokens/s on this machine's CPU (fp32, one process, forward + backward + optimizer step on
one TRAIN_SEQ_LEN row of random tokens). Computed: training FLOPs per token from the shapes (matmuls
6 * params applied per token, causal attention 6 * T * d per layer application; looping counted for the
fraction of training it is on). Projected, not measured: the 8xH100 step time at the stated MFU
(989 TFLOP/s dense bf16 per H100 SXM), next to the step times the records reported.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train_gpt as tg  # noqa: E402

H100_BF16_FLOPS = 989e12
# ms/step on 8xH100 SXM as the records logged them (sota_stack.md section 7)
REPORTED_MS = {"baseline": "43.5 (record log)", "top": "96 plain / 141 looped (#1855 log)"}


def recipe(name: str) -> tg.Hyperparameters:
    lines = (REPO / "records" / "recipes" / f"{name}.env").read_text().splitlines()
    return tg.Hyperparameters.from_env(dict(l.split("=", 1) for l in lines if l and not l.startswith("#")))


def plan_flops_per_token(model: tg.GPT, plan: tg.LayerPlan, hp: tg.Hyperparameters) -> float:
    """Forward FLOPs per token of one plan: 2 per matmul weight applied, plus causal attention."""
    block_matmul = sum(m.weight.numel() for m in model.blocks[0].modules() if isinstance(m, tg.CastedLinear))
    head = hp.vocab_size * hp.model_dim
    attention = 2 * hp.train_seq_len * hp.model_dim  # QK^T and AV over T/2 average causal context
    return 2 * (block_matmul * len(plan.order) + head) + attention * len(plan.order)


def train_flops_per_token(hp: tg.Hyperparameters) -> float:
    """3x forward (backward costs two forwards), averaged over the plans by the share of training they run."""
    model = tg.GPT(hp)
    shares = [0.0] * len(model.plans)
    for i in range(1000):
        shares[tg.plan_index_at((i + 0.5) / 1000, hp)] += 1 / 1000
    return 3 * sum(s * plan_flops_per_token(model, p, hp) for s, p in zip(shares, model.plans))


def cpu_tokens_per_second(hp: tg.Hyperparameters, steps: int) -> float:
    rt = tg.Runtime(0, 1, 0, torch.device("cpu"), False)
    model = tg.build_model(hp, rt.device)
    optimizers = tg.build_optimizers(model, hp, rt)
    tokens = torch.randint(0, hp.vocab_size, (1, hp.train_seq_len + 1))
    plan = len(model.plans) - 1  # the most expensive plan (looping on)
    times = []
    for _ in range(steps + 1):  # the first step pays one-time allocation costs
        start = time.perf_counter()
        model(tokens[:, :-1], tokens[:, 1:], plan_index=plan).backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return hp.train_seq_len / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mfu", type=float, default=0.40)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; projection at MFU {args.mfu:.0%}")
    print("| recipe | params | CPU train tok/s (measured) | train GFLOP/token | projected 8xH100 ms/step | reported ms/step |")
    print("|---|---|---|---|---|---|")
    for name in ("baseline", "top"):
        hp = recipe(name)
        params = sum(p.numel() for p in tg.GPT(hp).parameters())
        flops = train_flops_per_token(hp)
        projected_ms = 1000 * hp.train_batch_tokens * flops / (8 * H100_BF16_FLOPS * args.mfu)
        print(f"| {name} | {params:,} | {cpu_tokens_per_second(hp, args.steps):,.0f} | {flops / 1e9:.3f} | "
              f"{projected_ms:.1f} (projection) | {REPORTED_MS[name]} |")


if __name__ == "__main__":
    main()
