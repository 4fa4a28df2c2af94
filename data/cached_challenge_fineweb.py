"""Download the official Parameter Golf FineWeb export: token shards and tokenizer.

Usage:
    python data/cached_challenge_fineweb.py --variant sp1024                   # val + 80 train shards
    python data/cached_challenge_fineweb.py --variant sp8192 --train-shards 10
    python data/cached_challenge_fineweb.py --variant sp1024 --train-shards 0  # val + tokenizer only
    MATCHED_FINEWEB_REPO_ID=user/repo MATCHED_FINEWEB_REMOTE_ROOT_PREFIX=my_root \\
        python data/cached_challenge_fineweb.py --variant sp1024

Source: the Hugging Face dataset repo $MATCHED_FINEWEB_REPO_ID (default willdepueoai/parameter-golf),
under the folder $MATCHED_FINEWEB_REMOTE_ROOT_PREFIX (default "datasets"). Below that root, the remote
layout is the local layout below data/:

    manifest.json                                        -> data/manifest.json
    datasets/fineweb10B_<variant>/fineweb_val_000000.bin -> data/datasets/fineweb10B_<variant>/...
    datasets/fineweb10B_<variant>/fineweb_train_*.bin    -> (the first --train-shards of them)
    tokenizers/fineweb_<V>_bpe.model, .vocab             -> data/tokenizers/...

The manifest drives everything:
    {"datasets":   [{"name": "fineweb10B_sp1024", "tokenizer_name": "...",
                     "stats": {"files_train": 195, "files_val": 1, "tokens_val": ...}}],
     "tokenizers": [{"name": "...", "model_path": "tokenizers/...model", "vocab_path": "tokenizers/...vocab"}],
     "files":      [{"path": "datasets/fineweb10B_sp1024/fineweb_val_000000.bin", "bytes": 124043288}, ...]}
"files" (sizes) is optional. Every file is checked after download: its size against the manifest when
listed there, and every shard against its own header (size == 1024 + 2 * tokens); the val token total
against stats.tokens_val when given. A bad file is deleted and reported. Files already present and valid
are skipped, so an interrupted download resumes where it stopped. The manifest is fetched once; pass
--refresh-manifest to fetch it again.

`fetch(remote_path, local_path)` is the only function that talks to the hub; tests replace it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import shard_io

REPO_ID = os.environ.get("MATCHED_FINEWEB_REPO_ID", "willdepueoai/parameter-golf")
REMOTE_ROOT = os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", "datasets").strip("/")
DATA_ROOT = Path(__file__).resolve().parent
DEFAULT_TRAIN_SHARDS = 80
MANIFEST = "manifest.json"
DOCS_FILES = ("docs_selected.jsonl", "docs_selected.source_manifest.json")

Fetch = Callable[[str, Path], None]


@dataclass(frozen=True)
class RemoteFile:
    path: str          # relative to the remote root, and to data/ locally
    size: int | None   # bytes, when the manifest lists it


def remote_path(relative: str) -> str:
    return "/".join(part for part in (REMOTE_ROOT, relative) if part)


def require(package: str):
    """Import a third-party package, or stop with one line naming the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ValueError(f"the download needs the {package} package: "
                         f".venv/bin/python -m pip install {package}") from None


def fetch(remote: str, local: Path) -> None:
    """Download one file of the dataset repo to `local` (atomically)."""
    hf_hub_download = require("huggingface_hub").hf_hub_download  # here: only real downloads need it

    folder, _, name = remote.rpartition("/")
    try:
        cached = Path(hf_hub_download(repo_id=REPO_ID, filename=name, subfolder=folder or None,
                                      repo_type="dataset"))
    except Exception as error:  # the hub raises many types (HTTP, offline, not found): one clear message
        raise ValueError(f"could not download {remote} from dataset repo {REPO_ID}: {error}") from error
    source = cached.resolve(strict=True)  # the hub cache holds symlinks to blobs
    tmp = local.with_name(local.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)  # a hard link avoids a second copy of 200 MB shards
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, local)


# ----------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------

def dataset_name(variant: str) -> str:
    if not re.fullmatch(r"sp\d+|byte260", variant):
        raise ValueError(f"unknown variant {variant!r}; expected sp<VOCAB_SIZE> (e.g. sp1024, sp8192) or byte260")
    return f"fineweb10B_{variant}"


def load_manifest(data_root: Path, fetch_fn: Fetch, refresh: bool = False) -> dict:
    path = data_root / MANIFEST
    if refresh or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fetch_fn(remote_path(MANIFEST), path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); delete it or pass --refresh-manifest") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), list):
        raise ValueError(f"{path}: no 'datasets' list; not a challenge manifest")
    return manifest


def _entry(entries: list, name: str, kind: str) -> dict:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    available = sorted(str(entry.get("name")) for entry in entries)
    raise ValueError(f"{kind} {name!r} is not in {MANIFEST} ({REPO_ID}:{REMOTE_ROOT}); available: {available}")


def _manifest_sizes(manifest: dict) -> dict[str, int]:
    sizes = {}
    for item in manifest.get("files", []):
        size = item.get("bytes", item.get("size")) if isinstance(item, dict) else None
        if size is None or "path" not in item:
            raise ValueError(f"{MANIFEST}: a 'files' entry needs 'path' and 'bytes', got {item!r}")
        sizes[str(item["path"])] = int(size)
    return sizes


def plan_files(manifest: dict, variant: str, train_shards: int, with_docs: bool = False) -> list[RemoteFile]:
    """The files to have locally for this request, in download order."""
    dataset = _entry(manifest["datasets"], dataset_name(variant), "dataset")
    stats = dataset.get("stats") or {}
    available = int(stats.get("files_train", 0))
    if train_shards < 0 or train_shards > available:
        raise ValueError(f"--train-shards must be in 0..{available} for {variant}, got {train_shards}")
    folder = f"datasets/{dataset['name']}"
    paths = [f"{folder}/{shard_io.shard_name('val', i)}" for i in range(int(stats.get("files_val", 1)))]
    paths += [f"{folder}/{shard_io.shard_name('train', i)}" for i in range(train_shards)]
    tokenizer = _entry(manifest.get("tokenizers", []), dataset.get("tokenizer_name"), "tokenizer")
    paths += [str(tokenizer[key]) for key in ("model_path", "vocab_path", "path") if tokenizer.get(key)]
    if with_docs:
        paths += list(DOCS_FILES)
    sizes = _manifest_sizes(manifest)
    return [RemoteFile(path, sizes.get(path)) for path in paths]


# ----------------------------------------------------------------------------
# Verification and download
# ----------------------------------------------------------------------------

def verify_file(path: Path, expected_size: int | None) -> None:
    """Raise ValueError unless `path` has the manifest size and, for a shard, a consistent header."""
    if not path.is_file():
        raise ValueError(f"{path}: missing after download")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ValueError(f"{path}: has {size} bytes but the manifest says {expected_size} (truncated or corrupt)")
    if path.suffix == ".bin":
        shard_io.read_header(path)


def _is_valid(path: Path, expected_size: int | None) -> bool:
    try:
        verify_file(path, expected_size)
    except ValueError:
        return False
    return True


def _fetch_verified(item: RemoteFile, local: Path, fetch_fn: Fetch) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    fetch_fn(remote_path(item.path), local)
    try:
        verify_file(local, item.size)
    except ValueError as error:
        local.unlink(missing_ok=True)  # never leave a bad shard where the trainer would read it
        raise ValueError(f"{error}; deleted the bad download, run again to retry") from None


def check_val_tokens(manifest: dict, variant: str, data_root: Path) -> int:
    """Total val tokens on disk; must match stats.tokens_val when the manifest gives it."""
    dataset = _entry(manifest["datasets"], dataset_name(variant), "dataset")
    shards = shard_io.list_shards(data_root / "datasets" / dataset["name"], "val")
    total = sum(shard_io.read_header(path) for path in shards)
    expected = (dataset.get("stats") or {}).get("tokens_val")
    if expected is not None and total != int(expected):
        raise ValueError(f"val shards hold {total} tokens, the manifest says {expected}: incomplete validation set")
    return total


def download(variant: str, train_shards: int = DEFAULT_TRAIN_SHARDS, data_root: Path = DATA_ROOT,
             fetch_fn: Fetch | None = None, refresh_manifest: bool = False, with_docs: bool = False) -> dict:
    """Make data_root hold the requested files. Returns the relative paths
    fetched and skipped, and the val token total."""
    fetch_fn = fetch_fn or fetch  # looked up at call time, so tests can replace the module's fetch
    tqdm = require("tqdm").tqdm
    if fetch_fn is fetch:
        require("huggingface_hub")  # before anything is created: a missing package is one line, not a half-made folder
    data_root = Path(data_root)
    manifest = load_manifest(data_root, fetch_fn, refresh_manifest)
    plan = plan_files(manifest, variant, train_shards, with_docs)
    fetched, skipped = [], []
    for item in tqdm(plan, desc=f"{variant} files", unit="file"):
        local = data_root / item.path
        if _is_valid(local, item.size):
            skipped.append(item.path)
            continue
        _fetch_verified(item, local, fetch_fn)
        fetched.append(item.path)
    val_tokens = check_val_tokens(manifest, variant, data_root)
    return {"fetched": fetched, "skipped": skipped, "val_tokens": val_tokens}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Download the challenge FineWeb shards from Hugging Face.")
    parser.add_argument("train_shards_positional", nargs="?", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="sp1024", help="tokenizer family: sp1024, sp4096, sp8192, ...")
    parser.add_argument("--train-shards", type=int, default=DEFAULT_TRAIN_SHARDS,
                        help=f"number of train shards (default {DEFAULT_TRAIN_SHARDS}; 0 = val + tokenizer only)")
    parser.add_argument("--with-docs", action="store_true", help="also fetch docs_selected.jsonl and its sidecar")
    parser.add_argument("--refresh-manifest", action="store_true", help="fetch manifest.json again")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT, help="local data/ folder (default: this one)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    train_shards = args.train_shards if args.train_shards_positional is None else args.train_shards_positional
    try:
        result = download(args.variant, train_shards, args.data_root,
                          refresh_manifest=args.refresh_manifest, with_docs=args.with_docs)
    except ValueError as error:
        raise SystemExit(f"cached_challenge_fineweb: error: {error}") from None
    print(f"{args.variant}: fetched {len(result['fetched'])} file(s), {len(result['skipped'])} already present; "
          f"val tokens {result['val_tokens']:,} -> {args.data_root / 'datasets' / dataset_name(args.variant)}")
    return result


if __name__ == "__main__":
    main()
