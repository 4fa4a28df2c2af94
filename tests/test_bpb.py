"""val_bpb against independent references: decoded UTF-8 lengths, a hand count, and a byte sidecar."""

import math

import pytest
import sentencepiece as spm
import torch
from torch import nn

import shard_io
import train_gpt as tg
from conftest import TINY_VOCAB, cpu_runtime, encode_stream, make_documents, tiny_env

CPU = cpu_runtime()


class ConstantNLL(nn.Module):
    """A stand-in model whose per-token NLL is known exactly: uniform over the vocabulary (ln V)."""

    def forward(self, x, y, reduction="none", cu_seqlens=None):
        return torch.full((y.numel(),), math.log(TINY_VOCAB), dtype=torch.float64)


def load_sp(dataset):
    return spm.SentencePieceProcessor(model_file=str(dataset / "tokenizer.model"))


def test_lut_bytes_equal_utf8_length_of_decoded_val_stream(tiny_dataset):
    sp = load_sp(tiny_dataset)
    tokens = tg.read_shard(tiny_dataset / "fineweb_val_000000.bin")
    luts = tg.build_byte_luts(sp, TINY_VOCAB)
    lut_total = int(tg.token_bytes_from_luts(tokens, luts)[1:].sum())  # every target of the stream

    # Independent reference: split at BOS, decode each document, count its UTF-8 bytes.
    ids = tokens.tolist()
    starts = [i for i, t in enumerate(ids) if t == sp.bos_id()] + [len(ids)]
    decoded = [sp.decode(ids[a + 1 : b]) for a, b in zip(starts, starts[1:])]
    assert lut_total == sum(len(d.encode("utf-8")) for d in decoded)
    # Identity normalization: the decoding is the source text itself, emoji and 4-byte letters included.
    assert decoded == make_documents(seed=0, count=900)[:100]
    assert any(sp.is_byte(t) for t in ids), "the val text must exercise byte-fallback pieces"
    assert any(d.startswith(" ") for d in decoded), "a document starting with a space must be covered"


def test_hand_computed_three_documents(tiny_dataset, tmp_path):
    sp = load_sp(tiny_dataset)
    docs = ["ab", "café 🙂", " x"]
    hand_bytes = 2 + (3 + 2 + 1 + 4) + 2  # c-a-f-é(2) space 🙂(4); " x" keeps its leading space
    stream = encode_stream(sp, docs)
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", stream)
    targets = len(stream) - 1
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, DATA_PATH=tmp_path, TRAIN_SEQ_LEN=targets,
                                              TRAIN_BATCH_TOKENS=8 * targets,
                                              TOKENIZER_PATH=tiny_dataset / "tokenizer.model"))
    val = tg.load_validation(hp, CPU, log=lambda *a, **k: None)
    val_loss, val_bpb = tg.eval_val(ConstantNLL(), val, hp, CPU)
    assert val_loss == pytest.approx(math.log(TINY_VOCAB), abs=1e-12)
    assert val_bpb == pytest.approx(targets * math.log2(TINY_VOCAB) / hand_bytes, rel=1e-12)


class TargetNLL(nn.Module):
    """NLL that depends on the target id, so scoring the wrong token or position changes the sum."""

    def forward(self, x, y, reduction="none", cu_seqlens=None):
        return y.reshape(-1).double() * 1e-3


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_batches_and_rank_split_score_every_target_once(tiny_dataset, tmp_path, monkeypatch, world_size):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, TRAIN_SEQ_LEN=16, VAL_BATCH_SIZE=256))
    val = tg.load_validation(hp, CPU, log=lambda *a, **k: None)
    reduced = []
    monkeypatch.setattr(tg, "all_reduce_", lambda t, rt, op=None: reduced.append(t.clone()) or t)
    for rank in range(world_size):  # each simulated rank scores its share; the reducer would add them
        rt = cpu_runtime(rank=rank, world_size=world_size)
        tg.eval_val(TargetNLL(), val, hp, rt)
    nll, tokens, nbytes = torch.stack(reduced).sum(0).tolist()
    targets = val.tokens[1:]
    assert tokens == targets.numel()
    assert nll == pytest.approx(float(targets.double().sum() * 1e-3), rel=1e-12)
    assert nbytes == float(val.token_bytes[1:].double().sum())


def test_sidecar_with_lut_counts_gives_identical_results(tiny_dataset, tmp_path):
    sp = load_sp(tiny_dataset)
    tokens = tg.read_shard(tiny_dataset / "fineweb_val_000000.bin")
    counts = tg.token_bytes_from_luts(tokens, tg.build_byte_luts(sp, TINY_VOCAB))
    shard_io.write_shard(tmp_path / "fineweb_val_bytes_000000.bin", counts.numpy().astype("uint16"))
    base = tiny_env(tiny_dataset, tmp_path)
    hp_lut = tg.Hyperparameters.from_env(base)
    hp_side = tg.Hyperparameters.from_env({**base, "VAL_BYTES_PATH": str(tmp_path / "fineweb_val_bytes_*.bin")})
    quiet = lambda *a, **k: None  # noqa: E731
    val_lut, val_side = tg.load_validation(hp_lut, CPU, quiet), tg.load_validation(hp_side, CPU, quiet)
    assert torch.equal(val_lut.token_bytes, val_side.token_bytes)
    assert tg.eval_val(ConstantNLL(), val_lut, hp_lut, CPU) == tg.eval_val(ConstantNLL(), val_side, hp_side, CPU)


def test_short_sidecar_is_an_error(tiny_dataset, tmp_path):
    shard_io.write_shard(tmp_path / "fineweb_val_bytes_000000.bin", [1, 2, 3])
    hp = tg.Hyperparameters.from_env({**tiny_env(tiny_dataset, tmp_path),
                                      "VAL_BYTES_PATH": str(tmp_path / "fineweb_val_bytes_*.bin")})
    with pytest.raises(tg.DataError, match="byte sidecar"):
        tg.load_validation(hp, CPU, lambda *a, **k: None)


def test_tokenizer_vocab_mismatch_is_an_error(tiny_dataset, tmp_path):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, VOCAB_SIZE=1024))
    with pytest.raises(tg.DataError, match="320 pieces but VOCAB_SIZE=1024"):
        tg.load_validation(hp, CPU, lambda *a, **k: None)


def test_dev_ttt_batches_past_the_split_fail_before_training(tiny_dataset, tmp_path):
    """TTT_EVAL_BATCHES naming no batch of the split once scored nothing and divided by zero after training."""
    env = tiny_env(tiny_dataset, tmp_path, TTT_ENABLED=1, TTT_BATCH_SIZE=8)  # 100 val documents: batches 0..12
    tg.load_validation(tg.Hyperparameters.from_env({**env, "TTT_EVAL_BATCHES": "0,12"}), CPU, lambda *a, **k: None)
    hp = tg.Hyperparameters.from_env({**env, "TTT_EVAL_BATCHES": "0,13"})
    with pytest.raises(tg.HyperparameterError, match="TTT_EVAL_BATCHES: the val split has 13 TTT batches"):
        tg.load_validation(hp, CPU, lambda *a, **k: None)


def test_lut_rules_on_special_pieces(tiny_dataset):
    sp = load_sp(tiny_dataset)
    luts = tg.build_byte_luts(sp, TINY_VOCAB + 8)  # ids past the tokenizer are boundaries with 0 bytes
    for special in (sp.bos_id(), sp.eos_id(), sp.unk_id(), sp.pad_id(), TINY_VOCAB + 3):
        assert luts.is_boundary[special] and luts.base_bytes[special] == 0
    byte_id = sp.piece_to_id("<0xF0>")
    assert sp.is_byte(byte_id) and luts.base_bytes[byte_id] == 1 and not luts.has_leading_space[byte_id]
    space_id = sp.piece_to_id("\u2581")
    assert luts.base_bytes[space_id] == 0 and luts.has_leading_space[space_id]
    # The space byte of "▁" is charged after a normal token and not after BOS.
    counted = tg.token_bytes_from_luts(torch.tensor([sp.bos_id(), space_id, sp.piece_to_id("a"), space_id]), luts)
    assert counted.tolist() == [0, 0, 1, 1]


class SegmentProbe(nn.Module):
    """Records each forward's row shape and segments (cu_seqlens pairs, empty padding dropped); NLL as TargetNLL."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, y, reduction="none", cu_seqlens=None):
        cu = cu_seqlens.tolist()
        self.calls.append((tuple(x.shape), [(a, b) for a, b in zip(cu, cu[1:]) if a < b]))
        return y.reshape(-1).double() * 1e-3


def record_1855_segments(tokens: list[int], span: int, batch_tokens: int) -> list[tuple[int, int]]:
    """#1855's eval_val restated: the stream is read in batches of batch_tokens inputs, and a batch's flat row is
    cut where a segment starts: at the batch start, at each BOS, and span tokens after a segment's start."""
    cuts, start = [], 0
    for p, t in enumerate(tokens):
        if p % batch_tokens == 0 or t == tg.BOS_ID or p - start == span:
            cuts.append(p)
            start = p
    return list(zip(cuts, cuts[1:] + [len(tokens)]))


@pytest.mark.parametrize("val_batch", [64, 4096])  # 4 rows of 16 a batch, or the whole stream in one
def test_eval_rows_by_doc_cuts_documents_as_1855(tiny_dataset, tmp_path, val_batch):
    """EVAL_ROWS_BY_DOC=1 (top.env): the diagnostic eval's segments are #1855's (documents of 1 to 70 tokens,
    cut every TRAIN_SEQ_LEN=16 from their start, not at row boundaries), and every target is scored once."""
    gen = torch.Generator().manual_seed(0)
    stream = []
    for length in (1, 5, 16, 17, 40, 3, 33, 70, 2, 15, 48, 9):
        stream += [tg.BOS_ID] + torch.randint(2, TINY_VOCAB, (length - 1,), generator=gen).tolist()
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", stream)
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, DATA_PATH=tmp_path, TRAIN_SEQ_LEN=16,
                                              VAL_BATCH_SIZE=val_batch, EVAL_ROWS_BY_DOC=1,
                                              TOKENIZER_PATH=tiny_dataset / "tokenizer.model"))
    val = tg.load_validation(hp, CPU, log=lambda *a, **k: None)
    probe = SegmentProbe()
    val_loss, _ = tg.eval_val(probe, val, hp, CPU)
    n, batch_tokens = len(stream) - 1, tg.eval_batch_seqs(hp, CPU) * 16
    got = [(a + i * batch_tokens, min(b + i * batch_tokens, n)) for i, (shape, segs) in enumerate(probe.calls)
           for a, b in segs if a + i * batch_tokens < n]  # the last batch's padding joins its last segment
    assert all(shape == (1, batch_tokens) for shape, _ in probe.calls)  # one flat row a batch
    assert got == record_1855_segments(stream[:-1], 16, batch_tokens)
    if val_batch == 4096:  # one batch: exactly each document in pieces of 16 from its start
        docs = [i for i, t in enumerate(stream) if t == tg.BOS_ID] + [n]
        assert got == [(p, min(p + 16, b)) for a, b in zip(docs, docs[1:]) for p in range(a, b, 16)]
    assert any(a % 16 for a, _ in got)  # not the fixed rows of the default
    targets = torch.tensor(stream[1:], dtype=torch.float64)
    assert val_loss == pytest.approx(float(targets.sum() * 1e-3) / n, rel=1e-12)  # each target once
