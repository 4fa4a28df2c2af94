"""Turn any local text corpus into a SentencePiece tokenizer plus token shards.

Usage:
    python data/build_shards.py --input docs.jsonl --out data/datasets/mycorpus_sp1024 \\
        --vocab-size 1024 --val-docs 50000
    python data/build_shards.py --input a.txt b.txt --out DIR --tokenizer existing.model
    python data/build_shards.py --input docs.jsonl --out DIR --vocab-size 8192 --caseops

Input files are `.jsonl` (one JSON object per line, the document text in
`--text-field`) or `.txt` (documents separated by blank lines). Empty and
whitespace-only documents are skipped. The first `--val-docs` documents, in input order, form the
validation split and the rest the training split, so the two are disjoint by
construction; --val-docs must be smaller than the number of documents. The
tokenizer is trained on the training documents only. An output directory that
already holds a build (shards, tokenizer, build_info.json) is refused unless
--overwrite. The build is written to a sibling folder .<name>.building.<pid> and
moved in at the end, build_info.json last (a rebuild deletes the old one first,
so a directory without it is an unfinished build); a full disk or another write
error removes that folder and leaves DIR as it was (one line, exit 1).

Every document is written as [BOS] + its token ids (no EOS), val first into
fineweb_val_*.bin, then train into fineweb_train_*.bin. DIR receives:

    tokenizer.model, tokenizer.vocab      the SentencePiece model
    fineweb_val_000000.bin, ...           validation shards
    fineweb_train_000000.bin, ...         training shards
    build_info.json                       vocab_size, tokenizer_sha256, tokenizer_source, input_files,
                                          normalization, tokens_per_shard, seed, val_docs, train_docs,
                                          val_tokens, train_tokens, val_shards, train_shards, val_bytes,
                                          val_bytes_token_rule, byte_accounting, roundtrip_mismatch_docs,
                                          caseops, val_bytes_sidecar, val_bytes_shards,
                                          train_docs_equal_to_a_val_doc

--caseops applies the top record's lossless case transform (data/caseops.py:
TITLE/ALLCAPS/CAPNEXT/ESC operators U+E001..U+E004, user-defined pieces 4-7) to
every document before tokenization; the tokenizer is trained on transformed
training text, the shards hold transformed text, and

    fineweb_val_bytes_000000.bin, ...     per-val-token ORIGINAL UTF-8 bytes (same
                                          format, uint16, 1:1 with the val stream,
                                          BOS = 0); train with
                                          VAL_BYTES_PATH=DIR/fineweb_val_bytes_*.bin

Byte accounting: val_bpb divides by the UTF-8 bytes of the original text. The
tokenizer settings here (a standalone "▁" piece, add_dummy_prefix, no extra
whitespace removal under identity normalization) make the trainer's per-token
byte rule reproduce that count exactly; build_info.json records both numbers
(val_bytes and val_bytes_token_rule) so a mismatch is visible. Under --caseops
the per-token rule is the sidecar (byte_accounting "sidecar"), whose sum over
every val document is checked to equal the document's UTF-8 length.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

import caseops
import shard_io

SPACE_PIECE = "\u2581"
DEFAULT_VAL_DOCS = 50_000  # the challenge's validation split is the first 50k docs
DEFAULT_TOKENS_PER_SHARD = 100_000_000
DEFAULT_VOCAB_SIZE = 1024
NORMALIZATIONS = ("identity", "nmt_nfkc")
ENCODE_BATCH_DOCS = 1024
THREADS = 2
SIDECAR_PREFIX = "fineweb_val_bytes_"
BUILD_OUTPUTS = ("tokenizer.model", "tokenizer.vocab", "build_info.json")


# ----------------------------------------------------------------------------
# Reading documents
# ----------------------------------------------------------------------------

def _read_jsonl(path: Path, text_field: str) -> list[str]:
    docs: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(f"{path}:{line_no}: no {text_field!r} field (found {keys}); see --text-field")
            text = record[text_field]
            if not isinstance(text, str):
                raise ValueError(f"{path}:{line_no}: field {text_field!r} is {type(text).__name__}, not a string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:  # a lone surrogate escape such as "\ud83d"
                raise ValueError(f"{path}:{line_no}: the text is not valid Unicode ({error.reason} at "
                                 f"character {error.start}); its UTF-8 bytes cannot be counted") from None
            docs.append(text)
    return docs


def _read_txt(path: Path) -> list[str]:
    docs: list[str] = []
    current: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.strip():
                current.append(line)
            elif current:  # a blank line closes the current document
                docs.append("\n".join(current))
                current = []
    if current:
        docs.append("\n".join(current))
    return docs


def read_documents(paths: Sequence[str | os.PathLike], text_field: str = "text") -> list[str]:
    """All non-empty documents of the given .jsonl/.txt files, in input order."""
    if not paths:
        raise ValueError("no input files given")
    docs: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"input file not found: {path}")
        if path.suffix not in (".jsonl", ".txt"):
            raise ValueError(f"{path}: unsupported input type {path.suffix!r}; use .jsonl or .txt")
        try:
            raw = _read_jsonl(path, text_field) if path.suffix == ".jsonl" else _read_txt(path)
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
        kept = [doc for doc in raw if doc.strip()]
        if not kept:
            raise ValueError(f"{path}: contains no non-empty documents")
        docs.extend(kept)
    return docs


# ----------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------

def _training_sentences(docs: Iterable[str]) -> Iterator[str]:
    # SentencePiece learns from lines; newlines inside documents fall back to bytes.
    for doc in docs:
        for line in doc.split("\n"):
            if line.strip():
                yield line


def _train_model_bytes(docs: Sequence[str], vocab_size: int, normalization: str, max_sentences: int,
                       user_defined_symbols: Sequence[str] = ()) -> bytes:
    model = io.BytesIO()  # model_writer, not model_prefix: no temp path ends up inside the model file
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_sentences(docs),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            character_coverage=0.9995,
            split_digits=True,
            normalization_rule_name=normalization,
            # identity must keep double spaces, or decode(encode(x)) != x
            remove_extra_whitespaces=normalization != "identity",
            add_dummy_prefix=True,
            pad_id=0, bos_id=1, eos_id=2, unk_id=3,
            pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>",
            # user-defined pieces take the ids right after unk (CaseOps: 4-7), before the byte pieces
            user_defined_symbols=list(user_defined_symbols),
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=1 << 16,
            num_threads=THREADS,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise ValueError(f"SentencePiece training failed (vocab_size={vocab_size}): {error}") from None
    return model.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def train_tokenizer(
    docs: Sequence[str],
    vocab_size: int,
    out_dir: str | os.PathLike,
    normalization: str = "identity",
    seed: int = 1337,
    max_sentences: int = 2_000_000,
    user_defined_symbols: Sequence[str] = (),
) -> Path:
    """Train a byte-fallback SentencePiece BPE on `docs`; write
    out_dir/tokenizer.model and tokenizer.vocab; return the model path.
    The same docs and settings give a byte-identical model file.
    `user_defined_symbols` (the CaseOps operators) become pieces 4, 5, ...,
    always encoded whole."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)  # only used when the sentences exceed max_sentences
    model = _train_model_bytes(docs, vocab_size, normalization, max_sentences, user_defined_symbols)
    sp = spm.SentencePieceProcessor(model_proto=model)
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))
    _write_bytes(out_dir / "tokenizer.vocab", vocab.encode("utf-8"))
    _write_bytes(out_dir / "tokenizer.model", model)
    return out_dir / "tokenizer.model"


def install_tokenizer(source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Copy an existing tokenizer (and its .vocab if present) into out_dir."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_file():
        raise ValueError(f"--tokenizer file not found: {source}")
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [(source, out_dir / "tokenizer.model"), (source.with_suffix(".vocab"), out_dir / "tokenizer.vocab")]
    for src, dst in pairs:
        if src.is_file() and src.resolve() != dst.resolve():
            shutil.copyfile(src, str(dst) + ".tmp")
            os.replace(str(dst) + ".tmp", dst)
    return out_dir / "tokenizer.model"


def load_tokenizer(path: str | os.PathLike, expected_vocab_size: int | None = None) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model and check what the byte accounting relies on."""
    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{path}: not a loadable SentencePiece model ({error})") from None
    check_tokenizer(sp, str(path), expected_vocab_size)
    return sp


def check_tokenizer(sp: spm.SentencePieceProcessor, name: str, expected_vocab_size: int | None = None) -> None:
    vocab = sp.get_piece_size()
    if expected_vocab_size is not None and vocab != expected_vocab_size:
        raise ValueError(f"{name}: vocab size is {vocab}, expected exactly {expected_vocab_size}")
    if vocab > shard_io.MAX_TOKEN_ID + 1:
        raise ValueError(f"{name}: vocab size {vocab} does not fit the uint16 shard format")
    if sp.bos_id() != 1:
        raise ValueError(f"{name}: bos_id is {sp.bos_id()}, the shard format expects BOS id 1")
    space_id = sp.piece_to_id(SPACE_PIECE)
    if space_id == sp.unk_id() or sp.is_byte(space_id):
        raise ValueError(
            f"{name}: no standalone '{SPACE_PIECE}' (U+2581) piece. Spaces would be encoded as three "
            "byte-fallback tokens and counted as 3 bytes each, under-reporting val_bpb "
            "(parameter-golf issue #897). Retrain the tokenizer on text with spaces."
        )


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------
# Byte accounting (the trainer's per-token rule, used here as a check)
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ByteTables:
    base_bytes: np.ndarray     # UTF-8 bytes of the piece without its leading "▁"
    leading_space: np.ndarray  # piece starts with "▁": one space byte, unless after a boundary
    boundary: np.ndarray       # control/unknown/unused ids: 0 bytes, and no space after them


def byte_tables(sp: spm.SentencePieceProcessor) -> ByteTables:
    vocab = sp.get_piece_size()
    base = np.zeros(vocab, dtype=np.int64)
    leading = np.zeros(vocab, dtype=bool)
    boundary = np.zeros(vocab, dtype=bool)
    for token in range(vocab):
        if sp.is_control(token) or sp.is_unknown(token) or sp.is_unused(token):
            boundary[token] = True
        elif sp.is_byte(token):
            base[token] = 1  # raw byte: never measure the decoded U+FFFD (3 bytes)
        else:
            piece = sp.id_to_piece(token)
            if piece.startswith(SPACE_PIECE):
                leading[token] = True
                piece = piece[1:]
            base[token] = len(piece.encode("utf-8"))
    return ByteTables(base, leading, boundary)


def count_token_bytes(tokens: np.ndarray, tables: ByteTables) -> int:
    """Bytes of a token stream by the trainer's rule; the token before the
    stream is taken to be a boundary (the stream starts with BOS anyway)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size == 0:
        return 0
    previous_is_boundary = np.concatenate([[True], tables.boundary[tokens[:-1]]])
    space = tables.leading_space[tokens] & ~previous_is_boundary
    return int(tables.base_bytes[tokens].sum() + space.sum())


# ----------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------

def _with_bos(batch: list[list[int]], bos_id: int) -> np.ndarray:
    flat: list[int] = []
    for ids in batch:
        flat.append(bos_id)  # BOS before every document; its prediction is the previous doc's end
        flat.extend(ids)
    return np.asarray(flat, dtype=np.uint16)


def _train_chunks(docs: Sequence[str], sp: spm.SentencePieceProcessor, tally: dict) -> Iterator[np.ndarray]:
    # Encode in batches so a large training split never sits in memory at once.
    for start in range(0, len(docs), ENCODE_BATCH_DOCS):
        batch = sp.encode(list(docs[start : start + ENCODE_BATCH_DOCS]), out_type=int, num_threads=THREADS)
        chunk = _with_bos(batch, sp.bos_id())
        tally["tokens"] += int(chunk.size)
        yield chunk


def _check_split_sizes(n_docs: int, val_docs: int) -> None:
    if val_docs <= 0:
        raise ValueError(f"--val-docs must be positive, got {val_docs}")
    if val_docs >= n_docs:
        raise ValueError(
            f"--val-docs {val_docs} leaves no training documents: the input has {n_docs} documents, the first "
            f"--val-docs of them form val and the rest train, so --val-docs must be below {n_docs} "
            f"(e.g. --val-docs {max(1, n_docs // 10)} holds out 10%)")


def sidecar_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The val byte sidecar shards in `out_dir`, in index order."""
    return sorted(Path(out_dir).glob(f"{SIDECAR_PREFIX}[0-9][0-9][0-9][0-9][0-9][0-9].bin"))


def _write_sidecar(out_dir: Path, counts: np.ndarray, tokens_per_shard: int) -> list[Path]:
    # Cut at the same places as the val shards, so sidecar shard i lines up with val shard i.
    paths = []
    for index, start in enumerate(range(0, counts.size, tokens_per_shard)):
        paths.append(out_dir / f"{SIDECAR_PREFIX}{index:06d}.bin")
        shard_io.write_shard(paths[-1], counts[start : start + tokens_per_shard])
    return paths


def _val_sidecar(originals: Sequence[str], transformed: Sequence[str], val_ids: list[list[int]],
                 sp: spm.SentencePieceProcessor) -> np.ndarray:
    """Per-token original bytes of the val stream ([BOS] + tokens per document; BOS = 0)."""
    surfaces = caseops.piece_surfaces(sp)
    parts = []
    for index, (original, text, ids) in enumerate(zip(originals, transformed, val_ids)):
        try:
            counts = caseops.token_original_bytes(ids, text, surfaces, len(original.encode("utf-8")))
        except ValueError as error:
            raise ValueError(f"val document {index}: {error}") from None
        parts.append(np.zeros(1, dtype=np.int64))  # BOS
        parts.append(counts)
    counts = np.concatenate(parts)
    if counts.size and counts.max() > shard_io.MAX_TOKEN_ID:
        raise ValueError(f"a token covers {int(counts.max())} bytes, more than the uint16 sidecar holds")
    return counts.astype(np.uint16)


def write_token_shards(
    docs: Sequence[str],
    sp: spm.SentencePieceProcessor,
    out_dir: str | os.PathLike,
    val_docs: int,
    tokens_per_shard: int = DEFAULT_TOKENS_PER_SHARD,
    use_caseops: bool = False,
) -> dict:
    """Write docs[:val_docs] as val shards and the rest as train shards.

    Returns val/train doc, token, shard counts; val_bytes (UTF-8 bytes of the
    val texts); val_bytes_token_rule (the same count by the trainer's per-token
    rule: its byte LUTs, or under caseops the sidecar); roundtrip_mismatch_docs
    (val docs whose tokens do not decode back to the text).

    With use_caseops, `docs` are the original texts: the shards hold their
    CaseOps transform, and the val byte sidecar is written next to the val shards."""
    _check_split_sizes(len(docs), val_docs)
    out_dir = Path(out_dir)  # build_dataset has emptied it of any earlier shards and sidecars
    val, train = docs[:val_docs], docs[val_docs:]
    encoded_val = [caseops.encode(text) for text in val] if use_caseops else list(val)
    val_ids = sp.encode(encoded_val, out_type=int, num_threads=THREADS)
    val_stream = _with_bos(val_ids, sp.bos_id())
    decoded = sp.decode(val_ids)
    if use_caseops:
        decoded = [_caseops_decode_or_none(text) for text in decoded]
    mismatches = sum(text_back != text for text_back, text in zip(decoded, val))
    if use_caseops:  # before anything is written: a tokenizer that cannot be counted exactly fails here
        counts = _val_sidecar(val, encoded_val, val_ids, sp)
        assert counts.size == val_stream.size
        token_rule_bytes = int(counts.sum(dtype=np.int64))
    else:
        token_rule_bytes = count_token_bytes(val_stream, byte_tables(sp))
    val_paths = shard_io.write_split(out_dir, "val", val_stream, tokens_per_shard)
    sidecar = _write_sidecar(out_dir, counts, tokens_per_shard) if use_caseops else []
    val_hashes = {hashlib.sha256(text.encode("utf-8")).digest() for text in val}
    duplicates = sum(hashlib.sha256(text.encode("utf-8")).digest() in val_hashes for text in train)
    if use_caseops:
        train = _LazyMap(caseops.encode, train)
    tally = {"tokens": 0}
    train_paths = shard_io.write_split(out_dir, "train", _train_chunks(train, sp, tally), tokens_per_shard)
    return {
        "val_docs": len(val),
        "train_docs": len(train),
        "val_tokens": int(val_stream.size),
        "train_tokens": tally["tokens"],
        "val_shards": len(val_paths),
        "train_shards": len(train_paths),
        "val_bytes": sum(len(text.encode("utf-8")) for text in val),
        "val_bytes_token_rule": token_rule_bytes,
        "byte_accounting": "sidecar" if use_caseops else "token_luts",
        "val_bytes_sidecar": token_rule_bytes if use_caseops else None,
        "val_bytes_shards": len(sidecar),
        "roundtrip_mismatch_docs": int(mismatches),
        "train_docs_equal_to_a_val_doc": int(duplicates),
    }


def _caseops_decode_or_none(text: str) -> str | None:
    try:
        return caseops.decode(text)
    except caseops.CaseOpsError:
        return None


class _LazyMap(Sequence):
    """fn applied to a sequence on access, so the transformed training split never sits in memory whole."""

    def __init__(self, fn, items: Sequence[str]):
        self.fn, self.items = fn, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.fn(item) for item in self.items[index]]
        return self.fn(self.items[index])


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write JSON atomically."""
    tmp = str(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------
# The whole build
# ----------------------------------------------------------------------------

def existing_build_files(out_dir: str | os.PathLike) -> list[Path]:
    """Files of an earlier build in out_dir: shards, sidecars, tokenizer, build_info.json."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [out_dir / name for name in BUILD_OUTPUTS if (out_dir / name).exists()]
    return found + sorted(out_dir.glob("fineweb_*.bin"))


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> list[Path]:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a directory")
    existing = existing_build_files(out_dir)
    if existing and not overwrite:
        names = ", ".join(path.name for path in existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise ValueError(f"--out {out_dir} already holds a build ({len(existing)} files: {names}); "
                         "pass --overwrite to replace it, or choose another --out")
    return existing


def _install_build(staging: Path, out_dir: Path, existing: list[Path]) -> None:
    """Move a finished build from its staging folder into out_dir. A rebuild first removes the old
    build_info.json (moved in last, so its absence marks an unfinished build) and every old shard (a smaller
    rebuild must leave nothing stale for the trainer's globs); the tokenizer files are replaced."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in existing:
        if path.name not in ("tokenizer.model", "tokenizer.vocab"):
            path.unlink()
    for path in sorted(staging.iterdir(), key=lambda p: p.name == "build_info.json"):
        os.replace(path, out_dir / path.name)


def _check_build_tokenizer(sp: spm.SentencePieceProcessor, name: str, use_caseops: bool) -> None:
    if use_caseops:
        caseops.check_operator_pieces(sp, name)
        caseops.check_spells_text(sp, name)


def build_dataset(
    docs: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    val_docs: int,
    vocab_size: int | None = DEFAULT_VOCAB_SIZE,
    tokenizer: str | os.PathLike | None = None,
    tokens_per_shard: int = DEFAULT_TOKENS_PER_SHARD,
    normalization: str = "identity",
    seed: int = 1337,
    input_files: Sequence[str] = (),
    use_caseops: bool = False,
    overwrite: bool = False,
) -> dict:
    """Tokenizer (trained on the train docs, or the given one) + shards +
    build_info.json in out_dir. Returns the build_info dict.

    use_caseops: tokenize the CaseOps transform of every document (the tokenizer
    is trained on the transformed train docs, with the operators as pieces 4-7)
    and write the val byte sidecar. overwrite: replace an earlier build in out_dir
    (refused otherwise)."""
    _check_split_sizes(len(docs), val_docs)
    if use_caseops and tokenizer is None and normalization != "identity":
        raise ValueError("--caseops needs --normalization identity: the byte sidecar counts the text exactly")
    out_dir = Path(out_dir)
    if tokenizer is not None:  # a tokenizer that will be refused is refused before out_dir is touched
        if not Path(tokenizer).is_file():
            raise ValueError(f"--tokenizer file not found: {tokenizer}")
        _check_build_tokenizer(load_tokenizer(tokenizer, vocab_size), str(tokenizer), use_caseops)
    existing = _prepare_out_dir(out_dir, overwrite)
    # Built in a sibling folder and moved in at the end: a full disk or a crash leaves out_dir as it was.
    staging = out_dir.parent / f".{out_dir.name}.building.{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        info = _build(docs, staging, val_docs, vocab_size, tokenizer, tokens_per_shard, normalization, seed,
                      input_files, use_caseops)
        _install_build(staging, out_dir, existing)
    except OSError as error:
        raise ValueError(f"could not write the build ({error.strerror or error}): {out_dir} is as it was, "
                         "the partial build removed") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _build(docs, out_dir: Path, val_docs: int, vocab_size, tokenizer, tokens_per_shard: int, normalization: str,
           seed: int, input_files, use_caseops: bool) -> dict:
    if tokenizer is not None:
        model_path = install_tokenizer(tokenizer, out_dir)
        normalization = "from_tokenizer"
    else:
        vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
        train_docs = _LazyMap(caseops.encode, docs[val_docs:]) if use_caseops else docs[val_docs:]
        model_path = train_tokenizer(train_docs, vocab_size, out_dir, normalization, seed,
                                     user_defined_symbols=caseops.OPERATORS if use_caseops else ())
    sp = load_tokenizer(model_path, vocab_size)
    _check_build_tokenizer(sp, str(model_path), use_caseops)
    stats = write_token_shards(docs, sp, out_dir, val_docs, tokens_per_shard, use_caseops=use_caseops)
    info = {
        "vocab_size": sp.get_piece_size(),
        "tokenizer_sha256": sha256_file(model_path),
        "tokenizer_source": str(tokenizer) if tokenizer is not None else "trained on train docs",
        "input_files": [str(path) for path in input_files],
        "normalization": normalization,
        "tokens_per_shard": tokens_per_shard,
        "seed": seed,
        "caseops": bool(use_caseops),
        "text_transform": caseops.TRANSFORM_NAME if use_caseops else "identity",
        **stats,
    }
    write_json(out_dir / "build_info.json", info)
    return info


def _report(info: dict, out_dir: Path) -> None:
    print(f"docs: val {info['val_docs']:,}  train {info['train_docs']:,}")
    print(f"tokens: val {info['val_tokens']:,} in {info['val_shards']} shard(s)  "
          f"train {info['train_tokens']:,} in {info['train_shards']} shard(s)")
    rule = "sidecar" if info["caseops"] else "token rule"
    print(f"val bytes: {info['val_bytes']:,} ({rule}: {info['val_bytes_token_rule']:,})  "
          f"roundtrip mismatches: {info['roundtrip_mismatch_docs']}")
    if info["val_bytes"] != info["val_bytes_token_rule"]:
        print("WARNING: the per-token byte rule disagrees with the text's UTF-8 bytes; val_bpb will be off",
              file=sys.stderr)
    if info["train_docs_equal_to_a_val_doc"]:
        print(f"WARNING: {info['train_docs_equal_to_a_val_doc']} training documents repeat a val document "
              "exactly (the input has duplicates); deduplicate it to keep val unseen", file=sys.stderr)
    print(f"wrote {out_dir}")
    if info["caseops"]:
        print(f"caseops: train with VAL_BYTES_PATH={out_dir}/{SIDECAR_PREFIX}*.bin "
              f"({info['val_bytes_shards']} sidecar shard(s))")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Build a SentencePiece tokenizer and token shards from local text.")
    parser.add_argument("--input", nargs="+", required=True, help=".jsonl or .txt files, in order")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--vocab-size", type=int, default=None, help=f"default {DEFAULT_VOCAB_SIZE}")
    parser.add_argument("--tokenizer", default=None, help="use this existing SentencePiece .model")
    parser.add_argument("--val-docs", type=int, default=DEFAULT_VAL_DOCS,
                        help="the first N docs form val, the rest train; must be below the number of docs")
    parser.add_argument("--tokens-per-shard", type=int, default=DEFAULT_TOKENS_PER_SHARD)
    parser.add_argument("--text-field", default="text", help="JSON field holding the text (.jsonl)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="identity")
    parser.add_argument("--max-train-docs", type=int, default=None, help="cap the training documents")
    parser.add_argument("--seed", type=int, default=1337, help="SentencePiece sampling seed")
    parser.add_argument("--caseops", action="store_true",
                        help="tokenize the lossless CaseOps case transform (the top record's) and write the "
                             "val byte sidecar fineweb_val_bytes_*.bin")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    vocab_size = args.vocab_size if args.vocab_size is not None or args.tokenizer else DEFAULT_VOCAB_SIZE
    try:
        docs = read_documents(args.input, args.text_field)
        if args.max_train_docs is not None:
            if args.max_train_docs <= 0:
                raise ValueError(f"--max-train-docs must be positive, got {args.max_train_docs}")
            docs = docs[: args.val_docs + args.max_train_docs]
        info = build_dataset(
            docs, args.out, val_docs=args.val_docs, vocab_size=vocab_size, tokenizer=args.tokenizer,
            tokens_per_shard=args.tokens_per_shard, normalization=args.normalization,
            seed=args.seed, input_files=args.input, use_caseops=args.caseops, overwrite=args.overwrite,
        )
    except ValueError as error:
        raise SystemExit(f"build_shards: error: {error}") from None
    _report(info, Path(args.out))
    return info


if __name__ == "__main__":
    main()
