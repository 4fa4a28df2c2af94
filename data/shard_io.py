"""Read and write token shards in the official Parameter Golf format.

A shard is a 1024-byte header of 256 little-endian int32 values followed by
N little-endian uint16 token ids:

    header[0] = 20240520   magic
    header[1] = 1          version
    header[2] = N          number of tokens
    header[3:] = 0

so a valid file is exactly 1024 + 2N bytes long. Shards are named
``fineweb_{split}_{index:06d}.bin`` with split "train" or "val".

The trainer has its own independent reader; this module serves the data tools
and the tests.

Usage:
    from shard_io import write_shard, read_shard, write_split
    write_shard("fineweb_val_000000.bin", [1, 5, 9])
    tokens = read_shard("fineweb_val_000000.bin")        # np.ndarray[uint16]
    paths = write_split("out/", "train", chunks, tokens_per_shard=100_000_000)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
HEADER_DTYPE = np.dtype("<i4")
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = 65535
SPLITS = ("train", "val")


def shard_name(split: str, index: int) -> str:
    """Official file name of shard `index` of `split`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"fineweb_{split}_{index:06d}.bin"


def list_shards(directory: str | os.PathLike, split: str) -> list[Path]:
    """The shards of one split in `directory`, in index order."""
    shard_name(split, 0)  # validates the split name
    return sorted(Path(directory).glob(f"fineweb_{split}_[0-9][0-9][0-9][0-9][0-9][0-9].bin"))


def _as_uint16(tokens: Iterable[int] | np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(tokens)
    if array.size == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    if array.ndim != 1:
        raise ValueError(f"{where}: tokens must be one-dimensional, got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: tokens must be integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > MAX_TOKEN_ID:
        raise ValueError(f"{where}: token ids must lie in 0..{MAX_TOKEN_ID}, got range {low}..{high}")
    return array.astype(TOKEN_DTYPE, copy=False)


def write_shard(path: str | os.PathLike, tokens: Iterable[int] | np.ndarray) -> None:
    """Write one shard atomically (a reader never sees a half-written file)."""
    path = Path(path)
    array = _as_uint16(tokens, str(path))
    header = np.zeros(HEADER_INTS, dtype=HEADER_DTYPE)
    header[0], header[1], header[2] = MAGIC, VERSION, array.size
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(array.tobytes())
    os.replace(tmp, path)


def read_header(path: str | os.PathLike) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ValueError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype=HEADER_DTYPE, count=HEADER_INTS)
    if int(header[0]) != MAGIC:
        raise ValueError(f"{path}: bad magic {int(header[0])}, expected {MAGIC} (not a token shard?)")
    if int(header[1]) != VERSION:
        raise ValueError(f"{path}: unsupported shard version {int(header[1])}, expected {VERSION}")
    n_tokens = int(header[2])
    expected = HEADER_BYTES + 2 * n_tokens
    if n_tokens < 0 or size != expected:
        raise ValueError(
            f"{path}: header says {n_tokens} tokens ({expected} bytes) but the file has {size} bytes "
            "(truncated or corrupt shard)"
        )
    return n_tokens


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Read and validate one shard; return its tokens as uint16."""
    n_tokens = read_header(path)
    tokens = np.fromfile(path, dtype=TOKEN_DTYPE, count=n_tokens, offset=HEADER_BYTES)
    return tokens.astype(np.uint16, copy=False)


def remove_split(out_dir: str | os.PathLike, split: str) -> None:
    """Delete old shards of a split, so a smaller rebuild leaves no stale shard
    behind for the trainer's glob to pick up."""
    for stale in list_shards(out_dir, split):
        stale.unlink()


def write_split(
    out_dir: str | os.PathLike,
    split: str,
    token_stream: Iterable[np.ndarray | list[int]] | np.ndarray,
    tokens_per_shard: int,
) -> list[Path]:
    """Write a stream of token chunks as numbered shards of `tokens_per_shard`
    tokens (the last one may be shorter). Chunks may span shard boundaries.
    Existing shards of the split are replaced. Returns the written paths."""
    if tokens_per_shard <= 0:
        raise ValueError(f"tokens_per_shard must be positive, got {tokens_per_shard}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_split(out_dir, split)
    if isinstance(token_stream, np.ndarray):
        token_stream = [token_stream]
    buffer = np.empty(tokens_per_shard, dtype=TOKEN_DTYPE)
    fill = 0
    paths: list[Path] = []
    for chunk in token_stream:
        chunk = _as_uint16(chunk, f"{split} token stream")
        while chunk.size:
            take = min(chunk.size, tokens_per_shard - fill)
            buffer[fill : fill + take] = chunk[:take]
            fill, chunk = fill + take, chunk[take:]
            if fill == tokens_per_shard:
                paths.append(out_dir / shard_name(split, len(paths)))
                write_shard(paths[-1], buffer)
                fill = 0
    if fill:
        paths.append(out_dir / shard_name(split, len(paths)))
        write_shard(paths[-1], buffer[:fill])
    return paths
