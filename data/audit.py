"""Audit a shard folder: do validation documents also appear in the training shards?

    python data/audit.py data/datasets/fineweb10B_sp8192

Prints shard, token and document counts per split, the tokenizer's sha256 (from build_info.json, else
"unknown"), whether the val byte sidecar is present and as long as the val stream, then
`val_docs_in_train: N/M (x.xx%)`. A document is BOS up to the next BOS, identified by a hash of its
tokens. Shards are streamed one at a time. Exit 0: no overlap; 1: overlap; 2: unusable input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

import shard_io
from build_shards import sidecar_paths

BOS_ID = 1  # train_gpt.py's BOS_ID: every document starts with it
# Documents shorter than this (BOS included) are not compared: a lone BOS or a one-line boilerplate
# page can repeat legitimately across splits and would raise false alarms on real data.
MIN_DOC_TOKENS = 8
SHOW_FIRST = 10


@dataclass
class Audit:
    shards: dict[str, int]
    tokens: dict[str, int]
    docs: dict[str, int] = field(default_factory=dict)
    tokenizer_sha256: str = "unknown"
    sidecar: str = "absent"
    val_compared: int = 0
    overlapping: list[int] = field(default_factory=list)  # val document indices found in train


def doc_hash(doc: np.ndarray) -> bytes:
    return hashlib.blake2b(doc.tobytes(), digest_size=16).digest()


def shard_tokens(path: Path) -> np.ndarray:
    # Memory-mapped: a shard's pages live in the reclaimable page cache, not in the process's own memory.
    n_tokens = shard_io.read_header(path)
    if n_tokens == 0:
        return np.zeros(0, dtype=shard_io.TOKEN_DTYPE)
    return np.memmap(path, dtype=shard_io.TOKEN_DTYPE, mode="r", offset=shard_io.HEADER_BYTES, shape=(n_tokens,))


def iter_documents(paths: Sequence[Path]) -> Iterator[np.ndarray]:
    """Each document of a split in order, BOS included; the open tail of a shard is carried into the next,
    so a document cut by a shard boundary comes out whole. Memory: one shard plus that tail."""
    tail = np.zeros(0, dtype=shard_io.TOKEN_DTYPE)
    for path in paths:
        tokens = shard_tokens(path)
        starts = np.flatnonzero(tokens == BOS_ID)
        # tail is empty only before the split's first BOS: tokens there belong to no document
        if starts.size == 0:  # the whole shard continues the open document
            tail = np.concatenate([tail, tokens]) if tail.size else tail
            continue
        if tail.size:
            yield np.concatenate([tail, tokens[: starts[0]]])
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
            yield tokens[a:b]
        tail = np.array(tokens[starts[-1] :])  # a copy: the next shard replaces this mapping
    if tail.size:
        yield tail


def split_headers(directory: Path, split: str) -> tuple[list[Path], int]:
    # Every header is checked before any streaming, so a bad shard fails in a second, not minutes in.
    paths = shard_io.list_shards(directory, split)
    if not paths:
        raise ValueError(f"{directory}: no fineweb_{split}_*.bin shards")
    return paths, sum(shard_io.read_header(path) for path in paths)


def tokenizer_sha256(directory: Path) -> str:
    try:
        return str(json.loads((directory / "build_info.json").read_text())["tokenizer_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"  # the official export has no build_info.json


def sidecar_status(directory: Path, val_tokens: int) -> str:
    paths = sidecar_paths(directory)
    if not paths:
        return "absent"
    length = sum(shard_io.read_header(path) for path in paths)
    verdict = "matches val tokens" if length == val_tokens else f"MISMATCH: val has {val_tokens:,} tokens"
    return f"present ({len(paths)} shard(s), {length:,} tokens, {verdict})"


def audit(directory: str | Path) -> Audit:
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such folder")
    val_paths, val_tokens = split_headers(directory, "val")
    train_paths, train_tokens = split_headers(directory, "train")
    result = Audit(shards={"val": len(val_paths), "train": len(train_paths)},
                   tokens={"val": val_tokens, "train": train_tokens},
                   tokenizer_sha256=tokenizer_sha256(directory), sidecar=sidecar_status(directory, val_tokens))
    # val is small: hold every compared document's hash, with the indices of the val documents that have it
    val_index: dict[bytes, list[int]] = {}
    result.docs["val"] = 0
    for index, doc in enumerate(iter_documents(val_paths)):
        result.docs["val"] += 1
        if doc.size >= MIN_DOC_TOKENS:
            val_index.setdefault(doc_hash(doc), []).append(index)
            result.val_compared += 1
    if not result.val_compared:
        raise ValueError(f"{directory}: the val shards hold no document of {MIN_DOC_TOKENS} or more tokens")
    found: set[bytes] = set()
    result.docs["train"] = 0
    for doc in iter_documents(train_paths):
        result.docs["train"] += 1
        if doc.size >= MIN_DOC_TOKENS:
            digest = doc_hash(doc)
            if digest in val_index:
                found.add(digest)
    result.overlapping = sorted(i for digest in found for i in val_index[digest])
    return result


def report_lines(result: Audit) -> list[str]:
    n, m = len(result.overlapping), result.val_compared
    lines = [
        f"shards: val {result.shards['val']}  train {result.shards['train']}",
        f"tokens: val {result.tokens['val']:,}  train {result.tokens['train']:,}",
        f"documents: val {result.docs['val']:,}  train {result.docs['train']:,}",
        f"tokenizer_sha256: {result.tokenizer_sha256}",
        f"byte_sidecar: {result.sidecar}",
        f"val_docs_in_train: {n}/{m} ({100 * n / m:.2f}%; documents under {MIN_DOC_TOKENS} tokens not compared)",
    ]
    if n:
        more = ", ..." if n > SHOW_FIRST else ""
        lines.append(f"first_val_docs_in_train: {', '.join(map(str, result.overlapping[:SHOW_FIRST]))}{more}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count validation documents that also appear in the train "
                                     "shards of a shard folder. Exit 0: none; 1: some; 2: unusable input.")
    parser.add_argument("directory", help="folder with fineweb_{train,val}_*.bin (and fineweb_val_bytes_*.bin)")
    args = parser.parse_args(argv)
    try:
        result = audit(args.directory)
    except (ValueError, OSError) as error:  # shard_io's messages name the file
        print(f"audit: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(report_lines(result)))
    return 1 if result.overlapping else 0


if __name__ == "__main__":
    sys.exit(main())
