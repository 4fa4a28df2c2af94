"""CPU training throughput of the baseline and default shapes, next to their FLOPs per token and the 8xH100
step time scripts/gpu_plan.py projects for them.

    python scripts/benchmark_throughput.py [--steps 2]

Measured: train tokens/s on this machine's CPU (fp32, one process, forward + backward + optimizer step on
one TRAIN_SEQ_LEN row of random tokens, the last plan: looping on). Computed by gpu_plan.py: training FLOPs
per token averaged over the stages by the share of training they run, and the mean ms/step at its MFU
calibrated on #1855 (a projection, not a measurement), next to the step times the records reported.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
import gpu_plan  # noqa: E402
import train_gpt as tg  # noqa: E402

# ms/step on 8xH100 SXM as the records logged them (sota_stack.md section 7)
REPORTED_MS = {"baseline": "43.5 (record log)", "top": "96 plain / 141 looped (#1855 log)"}


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
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("| recipe | params | CPU train tok/s (measured) | train GFLOP/token | projected 8xH100 ms/step | reported ms/step |")
    print("|---|---|---|---|---|---|")
    for name in ("baseline", "top"):
        hp = gpu_plan.hyperparameters(gpu_plan.recipe_env(name))
        train = gpu_plan.training_plan(hp, gpu_plan.meta_model(hp), gpu_plan.modelled_lengths(), gpus=8)
        flops = sum(s["share"] * s["flops_per_step"] for s in train["stages"]) / train["tokens_per_step"]
        params = sum(p.numel() for p in gpu_plan.meta_model(hp).parameters())
        print(f"| {name} | {params:,} | {cpu_tokens_per_second(hp, args.steps):,.0f} | {flops / 1e9:.3f} | "
              f"{train['projected_mean_ms_per_step']:.1f} (projection) | {REPORTED_MS[name]} |")


if __name__ == "__main__":
    main()
