"""Seconds data/audit.py takes per 100M train tokens on this CPU.

    python scripts/audit_bench.py [--val-tokens 1000000] [--train-shards 2] [--shard-tokens 50000000]

Writes a synthetic shard set to a temporary directory (random ids up to 8192, documents of log-normal
length with FineWeb's mean of ~957 tokens, a BOS before each; val disjoint from train), times one audit
of it (the shards are in the page cache, as right after a download) and deletes it.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "data"))
import audit  # noqa: E402
import shard_io  # noqa: E402

MEAN_DOC_TOKENS, SIGMA = 957, 1.0


def synthetic_stream(rng: np.random.Generator, n_tokens: int) -> np.ndarray:
    tokens = rng.integers(2, 8192, n_tokens, dtype=np.uint16)
    mu = np.log(MEAN_DOC_TOKENS) - SIGMA**2 / 2  # so the log-normal's mean is MEAN_DOC_TOKENS
    lengths = np.maximum(1, rng.lognormal(mu, SIGMA, n_tokens // MEAN_DOC_TOKENS * 2).astype(np.int64))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    tokens[starts[starts < n_tokens]] = audit.BOS_ID
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-tokens", type=int, default=1_000_000)
    parser.add_argument("--train-shards", type=int, default=2)
    parser.add_argument("--shard-tokens", type=int, default=50_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="audit_bench_") as tmp:
        directory = Path(tmp)
        shard_io.write_shard(directory / shard_io.shard_name("val", 0), synthetic_stream(rng, args.val_tokens))
        for index in range(args.train_shards):
            shard_io.write_shard(directory / shard_io.shard_name("train", index),
                                 synthetic_stream(rng, args.shard_tokens))
        start = time.perf_counter()
        result = audit.audit(directory)
        seconds = time.perf_counter() - start
    train_tokens = result.tokens["train"]
    print("\n".join(audit.report_lines(result)))
    print(f"audit: {seconds * 1e8 / train_tokens:.1f} s per 100M train tokens "
          f"({train_tokens / seconds / 1e6:.1f}M tokens/s; {seconds:.2f} s for {train_tokens:,} train "
          f"and {result.tokens['val']:,} val tokens)")


if __name__ == "__main__":
    main()
