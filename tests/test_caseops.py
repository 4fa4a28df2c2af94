"""CaseOps (data/caseops.py, build_shards.py --caseops): the lossless case transform of the top record, its
exact inverse, the tokenizer's operator pieces, and the per-val-token byte sidecar that keeps val_bpb on
the original text. Everything is built under pytest's tmp dirs."""

import json
import random

import numpy as np
import pytest
import sentencepiece as spm

import build_shards
import caseops
import shard_io
from caseops import ALLCAPS, CAPNEXT, ESC, TITLE

VOCAB = 400
VAL_DOCS = 30
OPS = "\ue001\ue002\ue003\ue004"
WORDS = ["McDonald", "iPhone", "eBay", "NASA", "The", "the", "A", "a", "I", "OK", "golf", "GOLF", "Golf",
         "gOLF", "MacBook", "Zürich", "ÉCOLE", "École", "naïve", "日本語", "🙂", "🚀", "𝔘nicode", "x²", "don't",
         "e-mail", "COVID-19", "3D", "iPhone3G", "snake_Case", "ABCdef", "\ue001", "\ue004\ue002", "x\ue003y", "Ω"]


def random_documents(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        text = f"Doc{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
        if i % 4 == 1:
            text = " " + text.replace(" ", "  ", 1) + "\nSecond LINE.\n\n\tthird"
        docs.append(text)
    return docs


def read_split(directory, split):
    return np.concatenate([shard_io.read_shard(p) for p in shard_io.list_shards(directory, split)])


def doc_slices(stream: np.ndarray) -> list[slice]:
    starts = np.flatnonzero(stream == 1)
    assert starts.size and starts[0] == 0
    return [slice(a + 1, b) for a, b in zip(starts, [*starts[1:], stream.size])]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("caseops")
    docs = random_documents(seed=0, count=240)
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    out = root / "out"
    info = build_shards.main(["--input", str(source), "--out", str(out), "--vocab-size", str(VOCAB),
                              "--val-docs", str(VAL_DOCS), "--tokens-per-shard", "700", "--caseops"])
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    return docs, source, out, info, sp


# ----------------------------------------------------------------------------
# The transform
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("golf", "golf"),
    ("Golf", TITLE + "golf"),
    ("NASA", ALLCAPS + "nasa"),
    ("A I a", f"{TITLE}a {TITLE}i a"),
    ("McDonald", f"{TITLE}mc{CAPNEXT}donald"),
    ("iPhone", f"i{CAPNEXT}phone"),
    ("eBay", f"e{CAPNEXT}bay"),
    ("ABc", f"{TITLE}a{CAPNEXT}bc"),
    ("iPhone3G x_Y", f"i{CAPNEXT}phone3{TITLE}g x_{TITLE}y"),
    ("ÉCOLE Zürich", f"É{ALLCAPS}cole {TITLE}zürich"),  # only ASCII letters form runs
    ("a\ue001b\ue004", f"a{ESC}\ue001b{ESC}\ue004"),
])
def test_encode_follows_the_rules(text, expected):
    assert caseops.encode(text) == expected
    assert caseops.decode(expected) == text


@pytest.mark.parametrize("text", [
    "McDonald iPhone eBay MacBook LaTeX", "NASA USA OK I A", "The Quick Brown Fox.", "a B c D",
    "\ue001\ue002\ue003\ue004", "\ue004\ue004\ue001x \ue003Ab\ue002CD\ue004", "x\ue004\ue001y",
    "Zürich ÉCOLE École 日本語 🙂🚀 𝔘nicode Ωmega ǅungla ß", "COVID-19 3D iPhone3G don't e-mail x2Y a1B2c3",
    "snake_Case_WORD camelCaseWord HTTPServer", "  leading\n\nDouble  Spaces\ttabs\r\n", "", "\u2581Literal piece",
])
def test_inverse_is_exact(text):
    encoded = caseops.encode(text)
    assert not any("A" <= ch <= "Z" for ch in encoded)
    assert caseops.decode(encoded) == text


def test_randomized_round_trip_over_a_nasty_alphabet():
    rng = random.Random(20240520)
    alphabet = ["a", "b", "z", "A", "B", "Z", *OPS, " ", "\n", "\t", "_", "'", "-", "0", "9", "é", "É", "ß",
                "日", "🙂", "\u2581", "\x00", "\ufeff"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert caseops.decode(caseops.encode(text)) == text, repr(text)
    for _ in range(1000):  # word-shaped strings reach the mixed-case paths more often
        words = ["".join(rng.choice("aAbB") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 6))]
        text = rng.choice(["", " ", *OPS]).join(words)
        assert caseops.decode(caseops.encode(text)) == text, repr(text)


@pytest.mark.parametrize("bad", [
    "Abc", f"{TITLE}", f"{TITLE} x", f"{CAPNEXT}abc", f"ab{CAPNEXT}", f"ab{TITLE}cd", f"{ALLCAPS}a{CAPNEXT}b",
    f"{ESC}", f"{ESC}a", f"x{ESC}", f"{TITLE}{ESC}{TITLE}",
])
def test_decode_rejects_what_encode_never_writes(bad):
    with pytest.raises(caseops.CaseOpsError):
        caseops.decode(bad)


# ----------------------------------------------------------------------------
# The tokenizer and the byte rule
# ----------------------------------------------------------------------------

def test_tokenizer_has_the_four_operators_at_ids_4_to_7(built):
    _, _, _, info, sp = built
    assert sp.get_piece_size() == VOCAB == info["vocab_size"]
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    for expected_id, op in enumerate(OPS, start=4):
        assert sp.piece_to_id(op) == expected_id == caseops.OPERATOR_IDS[op]
        assert not (sp.is_control(expected_id) or sp.is_unknown(expected_id) or sp.is_byte(expected_id))
        assert expected_id in sp.encode(f"golf{op}golf")  # user-defined: always one piece, even inside a word
    assert sp.is_byte(8) and sp.id_to_piece(8) == "<0x00>"  # byte fallback follows the operators


def test_byte_rule_on_hand_counted_tokens(built):
    *_, sp = built
    surfaces = caseops.piece_surfaces(sp)
    text = "Zürich 日本 NASA \u2581x \ue001"
    encoded = caseops.encode(text)
    ids = sp.encode(encoded)
    counts = caseops.token_original_bytes(ids, encoded, surfaces, len(text.encode("utf-8")))
    assert counts.sum() == len(text.encode("utf-8"))
    pieces = [sp.id_to_piece(i) for i in ids]
    for i, (piece, count) in enumerate(zip(pieces, counts)):
        if piece in (TITLE, ALLCAPS) and ids[i - 1] != caseops.OPERATOR_IDS[ESC]:
            assert count == 0, piece  # an inserted operator covers no original byte
        if sp.is_byte(ids[i]):
            assert count == 1, piece  # each fallback byte of a multi-byte character counts one
    literal = ids.index(caseops.OPERATOR_IDS[ESC])
    assert counts[literal] == 0 and counts[literal + 1] == 3  # ESC 0, the escaped literal its 3 bytes


def test_byte_rule_sums_to_the_text_on_random_strings(built):
    *_, sp = built
    surfaces = caseops.piece_surfaces(sp)
    rng = random.Random(7)
    alphabet = ["golf", "Golf", "NASA", "iPhone", " ", "  ", "\n", *OPS, "é", "日本語", "🙂", "\u2581", "x²", "A"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 15)))
        encoded = caseops.encode(text)
        counts = caseops.token_original_bytes(sp.encode(encoded), encoded, surfaces)
        assert counts.sum() == len(text.encode("utf-8")), repr(text)
        assert (counts >= 0).all()


# ----------------------------------------------------------------------------
# The built dataset
# ----------------------------------------------------------------------------

def test_sidecar_sums_to_each_documents_utf8_length(built):
    docs, _, out, info, sp = built
    val = read_split(out, "val")
    sidecar_paths = build_shards.sidecar_paths(out)
    assert [p.name for p in sidecar_paths] == [f"fineweb_val_bytes_{i:06d}.bin" for i in range(info["val_shards"])]
    assert [shard_io.read_header(p) for p in sidecar_paths] == [
        shard_io.read_header(p) for p in shard_io.list_shards(out, "val")]  # shard i lines up with val shard i
    sidecar = np.concatenate([shard_io.read_shard(p) for p in sidecar_paths])
    assert sidecar.size == val.size and (sidecar[val == 1] == 0).all()  # 1:1 with the stream, BOS = 0
    slices = doc_slices(val)
    assert len(slices) == VAL_DOCS
    for doc, where in zip(docs[:VAL_DOCS], slices):
        assert caseops.decode(sp.decode(val[where].tolist())) == doc
        assert int(sidecar[where].sum()) == len(doc.encode("utf-8"))
    assert info["val_bytes_sidecar"] == info["val_bytes"] == sum(len(d.encode("utf-8")) for d in docs[:VAL_DOCS])
    assert info["val_bytes_token_rule"] == info["val_bytes"] and info["byte_accounting"] == "sidecar"
    assert info["caseops"] is True and info["text_transform"] == "caseops_v1"
    assert info["val_bytes_shards"] == len(sidecar_paths) and info["roundtrip_mismatch_docs"] == 0
    assert json.loads((out / "build_info.json").read_text()) == info


def test_val_and_train_are_disjoint_by_construction(built):
    docs, _, out, info, sp = built
    decoded = {}
    for split in ("val", "train"):
        stream = read_split(out, split)
        decoded[split] = [caseops.decode(sp.decode(stream[w].tolist())) for w in doc_slices(stream)]
    assert decoded["val"] == docs[:VAL_DOCS] and decoded["train"] == docs[VAL_DOCS:]
    assert not set(decoded["val"]) & set(decoded["train"])
    assert (info["val_docs"], info["train_docs"], info["train_docs_equal_to_a_val_doc"]) == (
        VAL_DOCS, len(docs) - VAL_DOCS, 0)


def test_shards_hold_the_transformed_text(built):
    docs, _, out, _, sp = built
    val = read_split(out, "val")
    first = val[doc_slices(val)[0]].tolist()
    assert sp.decode(first) == caseops.encode(docs[0])
    assert caseops.OPERATOR_IDS[TITLE] in first  # "Doc0" starts every document with a capital


def test_val_docs_must_leave_training_documents(built, tmp_path):
    docs, source, *_ = built
    with pytest.raises(SystemExit, match=f"input has {len(docs)} documents.*must be below {len(docs)}"):
        build_shards.main(["--input", str(source), "--out", str(tmp_path / "o"), "--caseops",
                           "--val-docs", str(len(docs))])
    assert not (tmp_path / "o").exists()


def test_existing_build_is_refused_without_overwrite(built, tmp_path):
    docs, source, out, _, _ = built
    args = ["--input", str(source), "--out", str(tmp_path), "--tokenizer", str(out / "tokenizer.model"),
            "--val-docs", str(VAL_DOCS)]
    build_shards.main([*args, "--caseops"])
    assert build_shards.sidecar_paths(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SystemExit, match="already holds a build.*--overwrite"):
        build_shards.main([*args, "--val-docs", "5"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    info = build_shards.main([*args, "--overwrite"])  # a plain rebuild: the old sidecar must go
    assert not info["caseops"] and not build_shards.sidecar_paths(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_normalizing_tokenizer_is_refused_for_caseops(built, tmp_path):
    docs, source, *_ = built
    prefix = tmp_path / "nfkc"
    lines = [caseops.encode(d) for d in docs]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(prefix), model_type="bpe",
                                   vocab_size=VOCAB, byte_fallback=True, normalization_rule_name="nmt_nfkc",
                                   user_defined_symbols=list(OPS), pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                                   num_threads=1, minloglevel=2)
    with pytest.raises(SystemExit, match="does not reproduce the text"):
        build_shards.main(["--input", str(source), "--out", str(tmp_path / "o"), "--caseops",
                           "--tokenizer", str(prefix.with_suffix(".model")), "--val-docs", str(VAL_DOCS)])
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit, match="needs --normalization identity"):
        build_shards.main(["--input", str(source), "--out", str(tmp_path / "o"), "--caseops",
                           "--normalization", "nmt_nfkc", "--val-docs", str(VAL_DOCS)])
