"""Attention segments of packed rows, as #1530/#1855 cut them: at every BOS and every TRAIN_SEQ_LEN tokens
from a document's start. The cut rule, SDPA's banded mask, FlexAttention's block mask, FA3's cu_seqlens
and the RoPE positions are each checked against a plain segment list built here, on rows with short
documents, documents longer than TRAIN_SEQ_LEN and documents straddling the row and chunk boundaries."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gpu_plan
import shard_io
import train_gpt as tg
from conftest import cpu_runtime, randomized_model

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
    cu = tg.rows_cu_seqlens(ids.numpy(), SPAN, doc_isolation)
    starts = cu[cu < ids.numel()]
    for b in range(2):
        want = [s + 40 * b for s, _ in reference_segments(ids[b].tolist(), SPAN, doc_isolation)]
        assert [s for s in starts.tolist() if 40 * b <= s < 40 * (b + 1)] == want
    if doc_isolation:  # spelled out once: the 19-token document at 10 is cut at 18 and 26, not at 16 or 24
        assert [s for s in starts.tolist() if s < 40] == [0, 3, 4, 10, 18, 26, 29, 37]


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


def test_fa3_cu_seqlens_list_the_reference_segments_padded_to_a_bucket():
    ids = packed_rows()
    cu = tg.rows_cu_seqlens(ids.numpy(), SPAN, True)
    flat = [s + 40 * b for b in range(2) for s, _ in reference_segments(ids[b].tolist(), SPAN)]
    assert cu.dtype == np.int32 and cu.size == tg.CU_SEQLENS_BUCKET  # 16 segments + the end: one bucket
    assert cu.tolist() == flat + [80] * (cu.size - len(flat))  # padded with empty segments at the end
    assert max(e - s for r in ids for s, e in reference_segments(r.tolist(), SPAN)) <= SPAN  # max_seqlen holds
    many = np.full((1, 200), tg.BOS_ID)  # 200 one-token documents: 201 entries, the next multiple of 64
    assert tg.rows_cu_seqlens(many, SPAN, True).size == 256


def fake_flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal):
    """FA3's varlen call on the CPU, with the contract the kernel relies on checked: int32 boundaries from 0 to
    the token count, never decreasing, no segment longer than max_seqlen, bf16 inputs [total, heads, dim]."""
    cu = cu_q.tolist()
    assert cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k) and max_q == max_k and causal
    assert q.dtype == k.dtype == v.dtype == torch.bfloat16 and q.dim() == 3
    assert cu[0] == 0 and cu[-1] == q.size(0) and all(a <= b for a, b in zip(cu, cu[1:]))
    assert max(b - a for a, b in zip(cu, cu[1:])) <= max_q
    out, groups = torch.zeros_like(q), q.size(1) // k.size(1)
    for a, b in zip(cu, cu[1:]):
        if b > a:
            qs, ks, vs = (x[a:b].transpose(0, 1).float() for x in (q, k, v))
            ks, vs = ks.repeat_interleave(groups, 0), vs.repeat_interleave(groups, 0)
            out[a:b] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True).transpose(0, 1).to(q.dtype)
    return out


def fineweb_like_rows(rows: int, tokens: int, seed: int = 0) -> list[np.ndarray]:
    """BOS positions of consecutive rows of a stream of documents with FineWeb val's length distribution
    (gpu_plan's log-normal: sigma fitted to C4 under the sp8192 tokenizer, mean 957 tokens)."""
    lengths = np.random.default_rng(seed).choice(gpu_plan.modelled_lengths(), size=rows * tokens // 300)
    bos = np.cumsum(lengths)
    return [bos[(bos >= r * tokens) & (bos < (r + 1) * tokens)] - r * tokens for r in range(rows)]


def test_default_rows_take_few_cu_seqlens_shapes_all_warmed_up():
    """200 steps of 8 ranks on the default 98,304-token rows: at most real segments + 64 entries a row, at
    most 4 shapes, every one of them compiled by the warm-up before the clock."""
    hp, shapes = tg.Hyperparameters(), set()
    t = hp.train_batch_tokens // 8
    for bos in fineweb_like_rows(200 * 8, t):
        starts = tg.segment_starts(bos, t, hp.train_seq_len)
        cu = tg.bucketed_cu_seqlens(starts, t)
        assert cu.size <= starts.size + 64 and cu.size % 64 == 0
        shapes.add(cu.size)
    assert len(shapes) <= 4 and shapes <= set(tg.warmup_buckets(1, t, hp.train_seq_len)), shapes
    assert tg.warmup_buckets(1, t, hp.train_seq_len) == [64, 128, 192, 256]  # #1855's buckets


@pytest.fixture
def fa3_on_cpu(monkeypatch):
    """ATTN_BACKEND=fa3 honoured on the CPU, with the checked stand-in for the kernel."""
    monkeypatch.setattr(tg, "flash_attn_varlen_func", fake_flash_attn_varlen_func)
    monkeypatch.setattr(tg, "attention_backend", lambda hp, device: hp.attn_backend)


def test_fa3_path_equals_sdpa_in_output_and_gradients(fa3_on_cpu):
    """The FA3 branch of attend (flattened bf16 rows, bucketed cu_seqlens, max_seqlen) against the SDPA
    reference, on a 4,096-token row of FineWeb-like documents and on the padded two-row batch."""
    long_row = torch.from_numpy(row_ids(fineweb_like_rows(1, 4096, seed=3)[0], 4096))[None]
    for ids, span in ((long_row, 512), (packed_rows(), SPAN)):
        cu = torch.from_numpy(tg.rows_cu_seqlens(ids.numpy(), span, True))
        ctx = {b: tg.attention_context(ids, tg.Hyperparameters.from_env({"ATTN_BACKEND": b}), span, cu)
               for b in ("fa3", "sdpa")}
        assert ctx["fa3"].cu_seqlens is not None and ctx["sdpa"].segment_ids is not None
        gen = torch.Generator().manual_seed(1)
        inputs = [torch.randn(ids.size(0), n, ids.size(1), 16, generator=gen).bfloat16().float() for n in (4, 2, 2)]
        outputs = []
        for backend in ("fa3", "sdpa"):
            q, k, v = (x.clone().requires_grad_() for x in inputs)
            y = tg.attend(q, k, v, ctx[backend])
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            outputs.append([y.detach()] + [x.grad for x in (q, k, v)])
        for got, want in zip(*outputs):
            assert torch.allclose(got, want, atol=3e-2, rtol=3e-2), (got - want).abs().max()


def test_the_model_on_the_fa3_path_trains_like_sdpa(fa3_on_cpu):
    """Every feature on, the loader's segments: the loss and every gradient of the FA3 branch match SDPA's."""
    env = {"VOCAB_SIZE": "64", "NUM_LAYERS": "4", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
           "TRAIN_SEQ_LEN": "64", "LOOP_START": "1", "LOOP_END": "2", "PARALLEL_START_LAYER": "3", "GATE_WINDOW": "8"}
    ids = torch.from_numpy(row_ids(fineweb_like_rows(1, 1024, seed=5)[0] // 8, 1024))[None]
    cu = torch.from_numpy(tg.rows_cu_seqlens(ids[:, :-1].numpy(), 64, True))
    grads = {}
    for backend in ("fa3", "sdpa"):
        model = randomized_model({**env, "ATTN_BACKEND": backend}, std=0.05)
        loss = model(ids[:, :-1], ids[:, 1:], plan_index=-1, cu_seqlens=cu)
        loss.backward()
        grads[backend] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["fa3"], grads["sdpa"], atol=2e-3, rtol=5e-2)
    assert (grads["fa3"] - grads["sdpa"]).norm() < 0.02 * grads["sdpa"].norm()


def row_ids(bos: np.ndarray, tokens: int) -> np.ndarray:
    ids = np.random.default_rng(0).integers(2, 64, tokens)
    ids[bos] = tg.BOS_ID
    return ids


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
    loaders = [tg.TrainLoader(pattern, cpu_runtime(rank=r, world_size=2), 256) for r in range(2)]
    for step in range(3):
        for rank, loader in enumerate(loaders):
            batch = loader.next_batch(SPAN)
            start = 3 + (2 * step + rank) * 33
            assert batch.x.shape == (1, 32) and batch.x[0].tolist() == shard[start : start + 32]
            assert batch.y[0].tolist() == shard[start + 1 : start + 33]
    for loader in loaders:
        loader.close()


def test_loader_skips_a_shard_tail_that_cannot_hold_a_span_and_wraps(tmp_path):
    first = [tg.BOS_ID] + list(range(10, 60))  # 51 tokens: one 33-token span fits, the second does not
    second = [5, 5, tg.BOS_ID] + list(range(100, 140))  # read from its first BOS, at 2
    pattern = write_train_shards(tmp_path, [first, second])
    loader = tg.TrainLoader(pattern, cpu_runtime(), 256)
    starts = [loader.next_batch(SPAN).x[0, 0].item() for _ in range(4)]
    assert starts == [tg.BOS_ID, tg.BOS_ID, tg.BOS_ID, tg.BOS_ID]
    assert loader.state_dict()["file_index"] == 1 and loader.state_dict()["pos"] == 2 + 33  # shards 0, 1, 0, 1
    loader.close()


def plain_loader_stream(shards: list[list[int]], span: int, world: int, rank: int, batches: int) -> list[list[int]]:
    """The loader's rule written plainly: walk the shards in order from each one's first BOS, take a span of
    span x world tokens if it fits (rank r's row is its r-th slice), else go on to the next shard, wrap."""
    out, file_index, pos = [], 0, shards[0].index(tg.BOS_ID)
    while len(out) < batches:
        if pos + span * world > len(shards[file_index]):
            file_index = (file_index + 1) % len(shards)
            pos = shards[file_index].index(tg.BOS_ID)
            continue
        out.append(shards[file_index][pos + rank * span : pos + (rank + 1) * span])
        pos += span * world
    return out


def test_loader_streams_the_tokens_and_segments_of_the_plain_rule_and_resumes_exactly(tmp_path):
    """Three shards of random documents, 2 ranks, past two wraps: every row is the plain rule's, its cu_seqlens
    are the host cut of that row, and a loader restored from a state taken mid-stream (batches already
    prefetched by its thread) continues with the same rows."""
    gen = np.random.default_rng(4)
    shards = []
    for size in (900, 400, 1300):
        tokens = gen.integers(2, 300, size)
        tokens[gen.choice(size, size // 40, replace=False)] = tg.BOS_ID
        shards.append(tokens.tolist())
    pattern = write_train_shards(tmp_path, shards)
    for rank in range(2):
        rt = cpu_runtime(rank=rank, world_size=2)
        want = plain_loader_stream(shards, 65, 2, rank, 60)
        loader = tg.TrainLoader(pattern, rt, 512)
        for i, row in enumerate(want[:30]):
            batch = loader.next_batch(SPAN)
            assert batch.x[0].tolist() + batch.y[0, -1:].tolist() == row, (rank, i)
            assert batch.cu_seqlens.tolist() == tg.rows_cu_seqlens(np.array([row[:-1]]), SPAN, True).tolist()
        state = loader.state_dict()
        loader.close()
        resumed = tg.TrainLoader(pattern, rt, 512)
        resumed.load_state_dict(state)
        for row in want[30:]:
            batch = resumed.next_batch(SPAN)
            assert batch.x[0].tolist() + batch.y[0, -1:].tolist() == row
        resumed.close()


def test_loader_refuses_shards_too_small_for_one_micro_batch(tmp_path):
    pattern = write_train_shards(tmp_path, [[tg.BOS_ID] + list(range(10, 30))])
    with pytest.raises(tg.DataError, match="no train shard holds one micro-batch of 33 tokens"):
        tg.TrainLoader(pattern, cpu_runtime(), 256).next_batch(SPAN)


def test_loader_refuses_a_shard_without_bos(tmp_path):
    pattern = write_train_shards(tmp_path, [list(range(10, 100))])
    with pytest.raises(tg.DataError, match="no BOS"):
        tg.TrainLoader(pattern, cpu_runtime(), 256)
