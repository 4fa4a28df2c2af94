"""Data tools: the shard format (shard_io) and local text -> tokenizer + shards (build_shards)."""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

import build_shards
import shard_io

VOCAB = 384
VAL_DOCS = 40
VAL_ONLY_CHAR = "Ꙭ"  # appears only in val docs: a tokenizer trained on train docs cannot know it
PIECES = ["golf", "byte", "model", "naïve", "café", "Zürich", "日本語", "🙂", "🚀", "𝔘nicode", "Ω", "x²",
          "ǅ", "ß", "tab\there", "the", "a", "of", "to", "data", "42", "2024"]


def awkward_documents(seed: int, count: int) -> list[str]:
    """Unique documents with multi-byte text, emoji, rare characters, a leading
    space, doubled spaces and newlines: everything the byte count could get wrong."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        text = f"doc{i} " + " ".join(rng.choice(PIECES) for _ in range(rng.randint(5, 40)))
        if i % 7 == 3:
            text = " " + text
        if i % 5 == 1:
            text = text.replace(" ", "  ", 2) + "\nsecond line.\n\nthird  line"
        if i < VAL_DOCS:
            text += f" {VAL_ONLY_CHAR}" * 5
        docs.append(text)
    return docs


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: doc, "id": i}) + "\n" for i, doc in enumerate(docs)), encoding="utf-8")
    return path


def split_documents(stream: np.ndarray, bos_id: int) -> list[list[int]]:
    starts = np.flatnonzero(stream == bos_id)
    assert starts.size and starts[0] == 0, "the stream must start with BOS"
    return [stream[a + 1 : b].tolist() for a, b in zip(starts, [*starts[1:], stream.size])]


def read_split(directory: Path, split: str) -> np.ndarray:
    return np.concatenate([shard_io.read_shard(path) for path in shard_io.list_shards(directory, split)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    docs = awkward_documents(seed=0, count=300)
    source = write_jsonl(root / "docs.jsonl", docs)
    out = root / "out"
    info = build_shards.main(["--input", str(source), "--out", str(out), "--vocab-size", str(VOCAB),
                              "--val-docs", str(VAL_DOCS), "--tokens-per-shard", "3000"])
    return docs, source, out, info


# ----------------------------------------------------------------------------
# shard_io
# ----------------------------------------------------------------------------

def test_shard_roundtrip_and_exact_layout(tmp_path):
    tokens = np.array([0, 1, 65535, 12345, 7], dtype=np.uint16)
    path = tmp_path / shard_io.shard_name("val", 0)
    shard_io.write_shard(path, tokens)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert path.name == "fineweb_val_000000.bin"
    assert len(raw) == 1024 + 2 * tokens.size
    assert header[:3].tolist() == [20240520, 1, 5] and not header[3:].any()
    assert np.frombuffer(raw[1024:], dtype="<u2").tolist() == tokens.tolist()
    assert shard_io.read_shard(path).tolist() == tokens.tolist()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("bad", [[-1, 3], [65536], [1.5, 2.0]])
def test_write_shard_rejects_tokens_outside_uint16(tmp_path, bad):
    with pytest.raises(ValueError, match="token ids must lie in 0..65535|must be integers"):
        shard_io.write_shard(tmp_path / "x.bin", bad)


def test_read_shard_errors_name_the_problem(tmp_path):
    path = tmp_path / "fineweb_train_000000.bin"
    shard_io.write_shard(path, np.arange(100, dtype=np.uint16))
    good = path.read_bytes()
    path.write_bytes(good[:-6])
    with pytest.raises(ValueError, match=r"header says 100 tokens.*\(truncated"):
        shard_io.read_shard(path)
    path.write_bytes(b"\x00" * 4 + good[4:])
    with pytest.raises(ValueError, match="bad magic"):
        shard_io.read_shard(path)
    path.write_bytes(good[:4] + np.int32(2).tobytes() + good[8:])
    with pytest.raises(ValueError, match="unsupported shard version 2"):
        shard_io.read_shard(path)
    path.write_bytes(good[:100])
    with pytest.raises(ValueError, match="shorter than the 1024-byte"):
        shard_io.read_shard(path)


def test_write_split_numbers_shards_and_replaces_stale_ones(tmp_path):
    shard_io.write_split(tmp_path, "train", [np.arange(50)], tokens_per_shard=10)  # 5 shards
    chunks = [np.arange(7), np.arange(7, 23), np.arange(23, 25)]
    paths = shard_io.write_split(tmp_path, "train", chunks, tokens_per_shard=10)
    assert [p.name for p in paths] == [f"fineweb_train_00000{i}.bin" for i in range(3)]
    assert shard_io.list_shards(tmp_path, "train") == paths  # the 2 stale shards are gone
    assert [shard_io.read_header(p) for p in paths] == [10, 10, 5]
    assert read_split(tmp_path, "train").tolist() == list(range(25))


# ----------------------------------------------------------------------------
# build_shards
# ----------------------------------------------------------------------------

def test_val_is_the_first_docs_and_train_the_rest(built):
    docs, _, out, info = built
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    val = [sp.decode(ids) for ids in split_documents(read_split(out, "val"), sp.bos_id())]
    train = [sp.decode(ids) for ids in split_documents(read_split(out, "train"), sp.bos_id())]
    assert val == docs[:VAL_DOCS]
    assert train == docs[VAL_DOCS:]
    assert not set(val) & set(train)
    assert (info["val_docs"], info["train_docs"]) == (VAL_DOCS, len(docs) - VAL_DOCS)


def test_bos_before_every_document_and_no_eos(built):
    docs, _, out, info = built
    val, train = read_split(out, "val"), read_split(out, "train")
    assert val[0] == 1 and train[0] == 1
    assert int((val == 1).sum()) == VAL_DOCS and int((train == 1).sum()) == len(docs) - VAL_DOCS
    assert not (val == 2).any() and not (train == 2).any()
    assert (info["val_tokens"], info["train_tokens"]) == (val.size, train.size)


def test_shards_are_cut_at_tokens_per_shard(built):
    _, _, out, info = built
    sizes = [shard_io.read_header(p) for p in shard_io.list_shards(out, "train")]
    assert len(sizes) == info["train_shards"] > 1
    assert all(size == 3000 for size in sizes[:-1]) and 0 < sizes[-1] <= 3000


def test_tokenizer_is_exact_size_has_space_piece_and_never_saw_val(built):
    _, _, out, info = built
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.get_piece_size() == VOCAB == info["vocab_size"]
    assert sp.bos_id() == 1 and sp.eos_id() == 2 and sp.pad_id() == 0 and sp.unk_id() == 3
    space = sp.piece_to_id("\u2581")
    assert space != sp.unk_id() and not sp.is_byte(space)
    assert sp.piece_to_id(VAL_ONLY_CHAR) == sp.unk_id()  # trained on train docs only
    assert (out / "tokenizer.vocab").is_file()
    assert info["tokenizer_sha256"] == hashlib.sha256((out / "tokenizer.model").read_bytes()).hexdigest()


def test_tokenizer_training_is_reproducible(built, tmp_path):
    docs, _, out, _ = built
    again = build_shards.train_tokenizer(docs[VAL_DOCS:], VOCAB, tmp_path, seed=1337)
    assert again.read_bytes() == (out / "tokenizer.model").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("tokenizer.model", "tokenizer.vocab")]


def test_bytes_and_roundtrip_are_exact_for_identity(built):
    docs, source, out, info = built
    assert info["val_bytes"] == sum(len(doc.encode("utf-8")) for doc in docs[:VAL_DOCS])
    assert info["val_bytes_token_rule"] == info["val_bytes"]
    assert info["roundtrip_mismatch_docs"] == 0
    assert info["normalization"] == "identity" and info["input_files"] == [str(source)]
    assert json.loads((out / "build_info.json").read_text()) == info


def test_byte_rule_counts_a_leading_space(tmp_path, built):
    _, _, out, _ = built
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    tables = build_shards.byte_tables(sp)
    for text in [" golf", "golf  data", "a\n b", "🙂 ǅ"]:
        stream = np.array([1, *sp.encode(text)])
        assert build_shards.count_token_bytes(stream, tables) == len(text.encode("utf-8")), text


def test_existing_tokenizer_is_reused(built, tmp_path):
    docs, source, out, _ = built
    info = build_shards.main(["--input", str(source), "--out", str(tmp_path), "--tokenizer",
                              str(out / "tokenizer.model"), "--val-docs", str(VAL_DOCS),
                              "--tokens-per-shard", "3000"])
    assert (tmp_path / "tokenizer.model").read_bytes() == (out / "tokenizer.model").read_bytes()
    assert info["vocab_size"] == VOCAB
    for split in ("val", "train"):
        assert read_split(tmp_path, split).tolist() == read_split(out, split).tolist()


def test_max_train_docs_caps_train_only(built, tmp_path):
    _, source, out, _ = built
    info = build_shards.main(["--input", str(source), "--out", str(tmp_path), "--tokenizer",
                              str(out / "tokenizer.model"), "--val-docs", str(VAL_DOCS), "--max-train-docs", "25"])
    assert (info["val_docs"], info["train_docs"]) == (VAL_DOCS, 25)


def test_txt_input_splits_documents_on_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(" leading space doc\nsecond line\n\n\nnext  doc\n   \nlast doc\n", encoding="utf-8")
    assert build_shards.read_documents([path]) == [" leading space doc\nsecond line", "next  doc", "last doc"]


def test_nfkc_mismatches_are_reported(tmp_path):
    docs = awkward_documents(seed=1, count=200)
    docs[0] = "the ﬁ ligature and x² change under NFKC"
    info = build_shards.build_dataset(docs, tmp_path, val_docs=VAL_DOCS, vocab_size=VOCAB,
                                      normalization="nmt_nfkc")
    assert info["normalization"] == "nmt_nfkc"
    assert info["roundtrip_mismatch_docs"] > 0


@pytest.mark.parametrize("content, message", [
    ("", "contains no non-empty documents"),
    ('{"text": ""}\n{"text": "   "}\n', "contains no non-empty documents"),
    ('{"body": "hello"}\n', "no 'text' field"),
    ('{"text": 5}\n', "is int, not a string"),
    ('{"text": "ok"}\nnot json\n', r":2: invalid JSON"),
    ('{"text": "ok"}\n{"text": "half an emoji \\ud83d"}\n', r":2: the text is not valid Unicode"),
])
def test_bad_jsonl_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit, match=message) as error:
        build_shards.main(["--input", str(path), "--out", str(tmp_path / "out"), "--val-docs", "1"])
    assert "bad.jsonl" in str(error.value)


def test_bad_arguments_give_clear_errors(built, tmp_path):
    _, source, out, _ = built
    common = ["--input", str(source), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="leaves no training documents"):
        build_shards.main([*common, "--val-docs", "300"])
    with pytest.raises(SystemExit, match="unsupported input type"):
        build_shards.main(["--input", str(out / "build_info.json"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="vocab size is 384, expected exactly 512"):
        build_shards.main([*common, "--tokenizer", str(out / "tokenizer.model"), "--vocab-size", "512",
                           "--val-docs", "5"])


def _train_raw_tokenizer(tmp_path: Path, lines: list[str], **options) -> Path:
    prefix = tmp_path / "raw"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(prefix), model_type="bpe",
                                   vocab_size=280, byte_fallback=True, num_threads=1, minloglevel=2, **options)
    return prefix.with_suffix(".model")


def test_tokenizer_without_space_piece_is_refused(built, tmp_path):
    _, source, _, _ = built
    no_spaces = ["".join(random.Random(i).choice("abcdefgh") for _ in range(60)) for i in range(200)]
    model = _train_raw_tokenizer(tmp_path, no_spaces, add_dummy_prefix=False)
    with pytest.raises(SystemExit, match="no standalone '\u2581'.*#897"):
        build_shards.main(["--input", str(source), "--out", str(tmp_path / "o"), "--tokenizer", str(model),
                           "--val-docs", "5"])


def test_tokenizer_with_other_bos_id_is_refused(built, tmp_path):
    _, source, _, _ = built
    model = _train_raw_tokenizer(tmp_path, ["some words here"] * 50, bos_id=-1)
    with pytest.raises(SystemExit, match="bos_id is -1"):
        build_shards.main(["--input", str(source), "--out", str(tmp_path / "o"), "--tokenizer", str(model),
                           "--val-docs", "5"])


def test_a_full_disk_during_a_build_leaves_the_earlier_build_and_no_partial_folder(built, tmp_path, monkeypatch):
    _, source, out, _ = built
    args = ["--input", str(source), "--out", str(tmp_path / "o"), "--tokenizer", str(out / "tokenizer.model"),
            "--val-docs", str(VAL_DOCS), "--tokens-per-shard", "3000"]
    build_shards.main(args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    real = shard_io.write_split

    def full_disk(out_dir, split, *a, **k):
        if split == "train":  # the val shards are written, then the disk is full
            (Path(out_dir) / "fineweb_train_000000.bin.tmp").write_bytes(b"half")
            raise OSError(28, "No space left on device")
        return real(out_dir, split, *a, **k)

    monkeypatch.setattr(build_shards.shard_io, "write_split", full_disk)
    for target, overwrite in ((tmp_path / "o", ["--overwrite"]), (tmp_path / "new", [])):
        with pytest.raises(SystemExit) as exit_info:
            build_shards.main([*args[:3], str(target), *args[4:], *overwrite])
        assert str(exit_info.value) == (f"build_shards: error: could not write the build (No space left on device): "
                                        f"{target} is as it was, the partial build removed")
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before  # the earlier build, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no partial folder, no new/, no temp file
