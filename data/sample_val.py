"""A seeded sample of whole validation documents as a dataset folder of its own, for quick dev runs of the eval.

    .venv/bin/python data/sample_val.py SRC_DIR DST_DIR --fraction 0.1 [--seed 1337]

DST_DIR gets the sampled val split (documents in stream order, each with the BOS that ends it, so every kept
target is scored as in the full split; the byte sidecar sampled alike when SRC_DIR has one), symlinks to
SRC_DIR's train shards, and SRC_DIR's build_info.json with "val_sample" added: train_gpt.py labels every score
of such a folder _partial. Point DATA_PATH at DST_DIR. Exit 2 with one line on bad input.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shard_io import list_shards, read_shard, write_shard  # noqa: E402

BOS_ID = 1


def sampled_positions(tokens: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, int, int]:
    """Stream positions of the kept documents (each from its BOS through the BOS that ends it), kept, of."""
    starts = np.flatnonzero(tokens == BOS_ID)
    starts = starts if starts.size and starts[0] == 0 else np.r_[0, starts]
    ends = np.r_[starts[1:], tokens.size - 1]  # a document predicts the next BOS (the last: the stream end)
    keep = max(1, round(fraction * starts.size))
    chosen = np.sort(np.random.default_rng(seed).permutation(starts.size)[:keep])
    first = [np.array([starts[chosen[0]]])]  # the first input; every later range holds targets only
    return np.concatenate(first + [np.arange(starts[i] + 1, ends[i] + 1) for i in chosen]), keep, starts.size


def sample(src: Path, dst: Path, fraction: float, seed: int) -> str:
    val = list_shards(src, "val")
    if not val:
        raise ValueError(f"{src} has no fineweb_val_*.bin shards")
    tokens = np.concatenate([read_shard(p) for p in val])
    positions, kept, total = sampled_positions(tokens, fraction, seed)
    dst.mkdir(parents=True, exist_ok=True)
    write_shard(dst / "fineweb_val_000000.bin", tokens[positions])
    sidecar = sorted(src.glob("fineweb_val_bytes_*.bin"))
    if sidecar:
        write_shard(dst / "fineweb_val_bytes_000000.bin", np.concatenate([read_shard(p) for p in sidecar])[positions])
    for shard in list_shards(src, "train"):
        link = dst / shard.name
        if not link.exists():
            link.symlink_to(shard.resolve())
    info_path = src / "build_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info["val_sample"] = {"fraction": fraction, "seed": seed, "documents": kept, "of": total, "source": str(src)}
    (dst / "build_info.json").write_text(json.dumps(info, indent=1))
    return f"sampled {kept} of {total} val documents ({positions.size - 1} targets) into {dst}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--fraction", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        print(f"error: --fraction {args.fraction} must be in (0, 1]", file=sys.stderr)
        return 2
    if args.dst.resolve() == args.src.resolve():
        print("error: DST_DIR must differ from SRC_DIR", file=sys.stderr)
        return 2
    try:
        print(sample(args.src, args.dst, args.fraction, args.seed))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
