"""Attention segments of packed rows, as #1530/#1855 cut them: at every BOS and every TRAIN_SEQ_LEN tokens
from a document's start. The cut rule, SDPA's banded mask, FlexAttention's block mask, FA3's cu_seqlens
and the RoPE positions are each checked against a plain segment list built here, on rows with short
documents, documents longer than TRAIN_SEQ_LEN and documents straddling the row and chunk boundaries."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import shard_io
import train_gpt as tg
from conftest import randomized_model

CPU = torch.device("cpu")
SPAN = 8


def reference_segments(row: list[int], span: int, doc_isolation: bool = True) -> list[tuple[int, int]]:
    """[start, end) of every segment: documents begin at BOS (and at 0), then each is cut every `span`."""
    doc_starts = [0] + [i for i, t in enumerate(row) if doc_isolation and t == tg.BOS_ID and i > 0]
    segments = []
    for begin, end in zip(doc_starts, doc_starts[1:] + [len(row)]):
        segments += [(s, min(s + span, end)) for s in range(begin, end, span)]
    return segments


def packed_rows() -> torch.Tensor:
    """Two rows of 40 tokens: a head document that began in an earlier row (cut from the row start), short
    documents, adjacent BOS, a 19-token document (> SPAN, straddling the 8-token chunks), a last-token BOS."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 64, (2, 40), generator=gen)
    ids[0, [3, 4, 10, 29]] = tg.BOS_ID  # head doc 0-2, then 3, 4-9, 10-28 (19 tokens), 29-39 (11 tokens)
    ids[1, [0, 17, 39]] = tg.BOS_ID  # 0-16 (17 tokens), 17-38 (22 tokens), a BOS ending the row
    return ids


def segment_attention_reference(q, k, v, segments_per_row) -> torch.Tensor:
    """Plain causal attention on each segment alone, KV heads repeated by hand."""
    out = torch.zeros_like(q)
    groups = q.size(1) // k.size(1)
    for b, segments in enumerate(segments_per_row):
        for s, e in segments:
            ks, vs = (x[b : b + 1, :, s:e].repeat_interleave(groups, 1) for x in (k, v))
            out[b : b + 1, :, s:e] = F.scaled_dot_product_attention(q[b : b + 1, :, s:e], ks, vs, is_causal=True)
    return out


@pytest.mark.parametrize("doc_isolation", [True, False])
def test_segments_start_where_the_records_cut_rule_says(doc_isolation):
    ids = packed_rows()
    starts = tg.segment_positions(ids, SPAN, doc_isolation) == 0
    for b in range(2):
        want = [s for s, _ in reference_segments(ids[b].tolist(), SPAN, doc_isolation)]
        assert torch.nonzero(starts[b]).flatten().tolist() == want
    if doc_isolation:  # spelled out once: the 19-token document at 10 is cut at 18 and 26, not at 16 or 24
        assert torch.nonzero(starts[0]).flatten().tolist() == [0, 3, 4, 10, 18, 26, 29, 37]


def test_rope_positions_count_from_each_segment_start():
    ids = packed_rows()
    hp = tg.Hyperparameters.from_env({"TRAIN_SEQ_LEN": str(SPAN), "MODEL_DIM": "32", "NUM_HEADS": "2",
                                      "NUM_KV_HEADS": "1", "ROPE_DIMS": "4", "ATTN_BACKEND": "sdpa"})
    cos, _ = tg.attention_context(ids, hp).rope
    for b in range(2):
        positions = [p - s for s, e in reference_segments(ids[b].tolist(), SPAN) for p in range(s, e)]
        want, _ = tg.rotary_tables(torch.tensor([positions]), 4, hp.rope_base)
        assert torch.equal(cos[b], want[0])


@pytest.mark.parametrize("row_length", [8, 40, 37])  # one chunk; exactly 5 chunks; 5 chunks with padding
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_sdpa_and_flex_attend_exactly_within_the_reference_segments(backend, row_length):
    ids = packed_rows()[:, :row_length]
    hp = tg.Hyperparameters.from_env({"TRAIN_SEQ_LEN": str(SPAN), "ATTN_BACKEND": backend})
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, n, row_length, 16, generator=gen) for n in (4, 2, 2))
    got = tg.attend(q, k, v, tg.attention_context(ids, hp))
    want = segment_attention_reference(q, k, v, [reference_segments(r.tolist(), SPAN) for r in ids])
    assert torch.allclose(got, want, atol=1e-5)


def test_fa3_cu_seqlens_list_the_reference_segments():
    ids = packed_rows()
    cu = tg.segment_cu_seqlens(tg.segment_positions(ids, SPAN, True) == 0, SPAN)
    flat = [s + 40 * b for b in range(2) for s, _ in reference_segments(ids[b].tolist(), SPAN)]
    assert cu.dtype == torch.int32 and cu.numel() == 2 * (1 + 40 // tg.FA3_MIN_MEAN_DOC_TOKENS + 40 // SPAN) + 1
    assert cu.tolist() == flat + [80] * (cu.numel() - len(flat))  # padded with empty segments at the end
    assert max(e - s for r in ids for s, e in reference_segments(r.tolist(), SPAN)) <= SPAN  # max_seqlen holds


def test_fa3_cu_seqlens_compile_to_one_graph():
    """A fixed-size cu_seqlens is what keeps FA3 inside the fullgraph compile with no recompiles."""
    compiled = torch.compile(tg.segment_cu_seqlens, fullgraph=True, dynamic=False)
    for seed in range(3):  # a different number of documents each time
        ids = torch.randint(2, 64, (1, 256), generator=torch.Generator().manual_seed(seed))
        ids[ids % (23 + seed) == 0] = tg.BOS_ID
        starts = tg.segment_positions(ids, 64, True) == 0
        assert torch.equal(compiled(starts, 64), tg.segment_cu_seqlens(starts, 64))


def test_fa3_cu_seqlens_refuse_more_documents_than_they_hold():
    ids = torch.full((1, 40), tg.BOS_ID)  # 40 one-token documents: over the 1 + 40 // 16 + 40 // 32 slots
    with pytest.raises(RuntimeError, match="more documents"):
        tg.segment_cu_seqlens(tg.segment_positions(ids, 32, True) == 0, 32)


def test_a_packed_row_scores_each_bos_document_as_if_alone():
    """Full model, every feature on: the logits of each BOS-started document inside a long packed row equal
    those of the document run alone, also for documents longer than TRAIN_SEQ_LEN."""
    model = randomized_model({"VOCAB_SIZE": "64", "NUM_LAYERS": "4", "MODEL_DIM": "32", "NUM_HEADS": "4",
                              "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": str(SPAN), "LOOP_START": "1", "LOOP_END": "2",
                              "PARALLEL_START_LAYER": "3", "GATE_WINDOW": "8", "ROPE_DIMS": "4"})
    ids = packed_rows()[:1]
    with torch.no_grad():
        packed = model.logits(model.hidden(ids))
        for s, e in [(3, 4), (4, 10), (10, 29), (29, 40)]:
            alone = model.logits(model.hidden(ids[:, s:e]))
            assert torch.allclose(packed[:, s:e], alone, atol=1e-4), (s, e)


def write_train_shards(tmp_path, shards: list[list[int]]) -> str:
    for i, tokens in enumerate(shards):
        shard_io.write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.array(tokens, dtype=np.uint16))
    return str(tmp_path / "fineweb_train_*.bin")


def test_loader_gives_each_rank_one_flat_row_of_a_contiguous_span(tmp_path):
    """2 ranks x 4 accumulation steps, 256 tokens a step: 32 + 1 tokens per rank per micro-batch, both
    slices of one contiguous span that starts at the shard's first BOS."""
    shard = [7, 7, 7] + [tg.BOS_ID] + list(range(10, 400))
    pattern = write_train_shards(tmp_path, [shard])
    loaders = [tg.TrainLoader(pattern, tg.Runtime(r, 2, r, CPU, False)) for r in range(2)]
    for step in range(3):
        for rank, loader in enumerate(loaders):
            x, y = loader.next_batch(global_tokens=256)
            start = 3 + (2 * step + rank) * 33
            assert x.shape == (1, 32) and x[0].tolist() == shard[start : start + 32]
            assert y[0].tolist() == shard[start + 1 : start + 33]


def test_loader_skips_a_shard_tail_that_cannot_hold_a_span_and_wraps(tmp_path):
    first = [tg.BOS_ID] + list(range(10, 60))  # 51 tokens: one 33-token span fits, the second does not
    second = [5, 5, tg.BOS_ID] + list(range(100, 140))  # read from its first BOS, at 2
    pattern = write_train_shards(tmp_path, [first, second])
    loader = tg.TrainLoader(pattern, tg.Runtime(0, 1, 0, CPU, False))
    starts = [loader.next_batch(global_tokens=256)[0][0, 0].item() for _ in range(4)]
    assert starts == [tg.BOS_ID, tg.BOS_ID, tg.BOS_ID, tg.BOS_ID]
    assert loader.file_index == 1 and loader.pos == 2 + 33  # shard 0, shard 1, shard 0 again, shard 1 again


def test_loader_refuses_shards_too_small_for_one_micro_batch(tmp_path):
    pattern = write_train_shards(tmp_path, [[tg.BOS_ID] + list(range(10, 30))])
    with pytest.raises(tg.DataError, match="no train shard holds one micro-batch of 33 tokens"):
        tg.TrainLoader(pattern, tg.Runtime(0, 1, 0, CPU, False)).next_batch(global_tokens=256)


def test_loader_refuses_a_shard_without_bos(tmp_path):
    pattern = write_train_shards(tmp_path, [list(range(10, 100))])
    with pytest.raises(tg.DataError, match="no BOS"):
        tg.TrainLoader(pattern, tg.Runtime(0, 1, 0, CPU, False))
