"""Main-thread cost of train_gpt.py's TrainLoader: what a training step waits for its next batch, at shard
switches and in between, on this CPU (one torch thread, as torchrun sets).

    python scripts/loader_bench.py [--shards 3] [--shard-tokens 20000000] [--steps 120] [--step-ms 100]

Writes shards of random tokens with a BOS every ~957 tokens (FineWeb's mean document) to a temporary
directory, then runs rank 0 of an 8-rank loader at the default batch (786,432 tokens a step: one 98,305-token
row a step for this rank), sleeping --step-ms between batches as a GPU step would keep the host waiting.
Prints the main thread's time in next_batch per batch (median, max), the same for the batches right after a
shard switch, and the thread's own time to open a shard. The goal is <= 5 ms per shard switch.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "data"))
import shard_io  # noqa: E402
import train_gpt as tg  # noqa: E402


def write_shards(directory: Path, count: int, tokens: int, seed: int = 0) -> str:
    gen = np.random.default_rng(seed)
    for i in range(count):
        shard = gen.integers(2, 8192, tokens, dtype=np.uint16)
        shard[np.cumsum(gen.geometric(1 / 957, tokens // 900)) % tokens] = tg.BOS_ID
        shard[0] = tg.BOS_ID
        shard_io.write_shard(directory / f"fineweb_train_{i:06d}.bin", shard)
    return str(directory / "fineweb_train_*.bin")


def run(pattern: str, steps: int, step_ms: float, batch_tokens: int, span: int) -> dict:
    rt = tg.Runtime(rank=0, world_size=8, local_rank=0, device=torch.device("cpu"), autocast=False)
    loader = tg.TrainLoader(pattern, rt, batch_tokens)
    times, switched, shard = [], [], loader.state_dict()["file_index"]
    try:
        for i in range(steps):
            time.sleep(step_ms / 1000)  # the host waits on the GPU step; the loader's thread works meanwhile
            start = time.perf_counter()
            loader.next_batch(span)
            times.append(time.perf_counter() - start)
            if loader.state_dict()["file_index"] != shard:  # the first batch of the next shard
                shard = loader.state_dict()["file_index"]
                switched.append(i)
    finally:
        loader.close()
    return dict(times=times, switched=switched, stats=dict(loader.stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--shard-tokens", type=int, default=20_000_000)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--step-ms", type=float, default=100.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    hp = tg.Hyperparameters()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(write_shards(Path(tmp), args.shards, args.shard_tokens), args.steps, args.step_ms,
                     hp.train_batch_tokens, hp.train_seq_len)
    ms = [1000 * t for t in result["times"]]
    near = result["switched"]  # the first batch of each new shard
    stats = result["stats"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {args.shards} shards of "
          f"{args.shard_tokens:,} tokens, {args.steps} steps of {args.step_ms:g} ms")
    print(f"main thread, first batch (starts the thread, opens shard 0): {ms[0]:.3f} ms")
    print(f"main thread per batch after it: median {statistics.median(ms[1:]):.3f} ms, max {max(ms[1:]):.3f} ms")
    print(f"main thread at the {len(near)} shard switches (the first batch of each new shard): max "
          f"{max((ms[j] for j in near), default=0):.3f} ms (goal <= 5 ms)")
    print(f"loader thread per shard opened: {1000 * stats['open_s'] / stats['opened']:.2f} ms "
          f"({stats['opened']} opened)")

if __name__ == "__main__":
    main()
