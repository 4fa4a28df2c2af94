"""The GPT: exact parameter counts of the reference systems, causality and document isolation with every
feature on, and attention (XSA, gates, backends) against a slow plain-PyTorch reference."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import train_gpt as tg
from conftest import cpu_runtime, randomized_model as randomized
from records.tool import read_env_file

RECIPES = Path(__file__).resolve().parents[1] / "records" / "recipes"
CPU = torch.device("cpu")
# Every feature of the loop stack on, scaled down: loop 1-2, lanes from 3, XSA, SmearGate, sparse gate.
LOOP_STACK = {"VOCAB_SIZE": "64", "NUM_LAYERS": "4", "MODEL_DIM": "32", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
              "TRAIN_SEQ_LEN": "16", "TRAIN_BATCH_TOKENS": "128", "LOOP_START": "1", "LOOP_END": "2",
              "PARALLEL_START_LAYER": "3", "GATE_WINDOW": "8", "ROPE_DIMS": "4"}
# The #895 recurrence stack: shared blocks, value embeddings, cross-repeat skips, XSA, AttnOutGate on q.
RECURRENCE_STACK = {**LOOP_STACK, "NUM_LOOPS": "0", "NUM_LAYERS": "2", "NUM_REPEATS": "3", "NUM_VALUE_EMBEDS": "2",
                    "PROG_DEPTH": "0.5:2,1.0:3", "XSA_LAST_N": "4", "SPARSE_ATTN_GATE_ENABLED": "0",
                    "ATTN_OUT_GATE_ENABLED": "1", "ATTN_OUT_GATE_SRC": "q", "PARALLEL_START_LAYER": "1"}


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("recipe, expected", [
    ("top.env", 35_945_671),  # #1855
    ("pr1626.env", 35_944_602),
    ("pr895_4h.env", 17_150_040),  # 3 blocks x 832, 5 repeats, 2 value embeddings
    ("baseline.env", 17_059_912),
])
def test_parameter_counts_of_the_reference_systems(recipe, expected):
    hp = tg.Hyperparameters.from_env(read_env_file(RECIPES / recipe))
    assert count(tg.GPT(hp)) == expected


def test_defaults_are_the_top_recipe():
    assert count(tg.GPT(tg.Hyperparameters.from_env({}))) == 35_945_671


def test_value_tables_are_drawn_where_895_draws_them():
    """#895 creates its value-embedding tables right after tok_emb, before any block: from one seed, the tables
    are the second and third embedding drawn (bf16), and the blocks' draws follow them as in #895."""
    hp = tg.Hyperparameters.from_env(RECURRENCE_STACK)
    torch.manual_seed(hp.seed)
    model = tg.GPT(hp)
    torch.manual_seed(hp.seed)
    _tok_emb, *tables = (torch.nn.Embedding(hp.vocab_size, hp.model_dim) for _ in range(3))
    assert len(model.value_embeds) == 2
    assert all(torch.equal(ours.weight, t.weight.bfloat16()) for ours, t in zip(model.value_embeds, tables))


@pytest.mark.parametrize("env", [LOOP_STACK, RECURRENCE_STACK], ids=["loops", "recurrence"])
def test_every_plan_is_causal(env):
    model = randomized(env)
    ids = torch.randint(2, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    ids[:, [0, 6]] = tg.BOS_ID
    changed = ids.clone()
    changed[:, 9:] = (changed[:, 9:] + 7) % 62 + 2
    for plan in range(len(model.plans)):
        with torch.no_grad():
            a, b = (model.logits(model.hidden(t, plan)) for t in (ids, changed))
        assert torch.equal(a[:, :9], b[:, :9]), f"plan {plan} leaks the future"
        assert not torch.allclose(a[:, 9:], b[:, 9:])


@pytest.mark.parametrize("env", [LOOP_STACK, RECURRENCE_STACK], ids=["loops", "recurrence"])
def test_documents_in_a_packed_row_are_isolated(env):
    """Rewriting the middle document leaves the other two untouched: no attention across BOS and
    no SmearGate leak of a document's last token into the next BOS."""
    model = randomized(env)
    ids = torch.randint(2, 64, (1, 16), generator=torch.Generator().manual_seed(1))
    ids[0, [0, 5, 11]] = tg.BOS_ID  # documents at 0-4, 5-10, 11-15
    changed = ids.clone()
    changed[0, 6:11] = (changed[0, 6:11] + 5) % 62 + 2
    with torch.no_grad():
        a, b = (model.logits(model.hidden(t)) for t in (ids, changed))
    assert torch.equal(a[:, :6], b[:, :6]) and torch.equal(a[:, 11:], b[:, 11:])
    assert not torch.allclose(a[:, 6:11], b[:, 6:11])


def test_smear_gate_is_identity_at_bos():
    e = torch.randn(2, 10, 16)
    ids = torch.randint(2, 50, (2, 10))
    ids[:, [0, 4]] = tg.BOS_ID
    out = tg.smear_previous_token(e, ids, torch.randn(6), torch.tensor([0.7]))
    assert torch.equal(out[ids == tg.BOS_ID], e[ids == tg.BOS_ID])
    gate = torch.sigmoid(e[1, 5, :6] @ torch.zeros(6))  # reference at one position with a known gate
    expected = e[1, 5] + 0.7 * gate * e[1, 4]
    out0 = tg.smear_previous_token(e, ids, torch.zeros(6), torch.tensor([0.7]))
    assert torch.allclose(out0[1, 5], expected)


def reference_attention(attn: tg.CausalSelfAttention, x: torch.Tensor, rope_dims: int, doc_ids, xsa: bool):
    """Slow and explicit: per-head loops, repeated KV heads, manual RoPE angles on the first rope_dims
    dims, a masked softmax, XSA as a per-vector projection, and the gate formulas written out."""
    B, T, D = x.shape
    H, KV, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q_raw = x @ attn.c_q.weight.T
    q, k, v = q_raw.view(B, T, H, hd), (x @ attn.c_k.weight.T).view(B, T, KV, hd), (x @ attn.c_v.weight.T).view(B, T, KV, hd)
    norm = lambda t: t / torch.sqrt((t * t).mean(-1, keepdim=True) + torch.finfo(t.dtype).eps)  # noqa: E731

    def rope(t):
        out, half = t.clone(), rope_dims // 2
        for pos in range(T):
            for j in range(half):
                angle = pos / (10_000 ** (2 * j / rope_dims))
                a, b = t[:, pos, :, j], t[:, pos, :, j + half]
                out[:, pos, :, j] = a * math.cos(angle) + b * math.sin(angle)
                out[:, pos, :, j + half] = b * math.cos(angle) - a * math.sin(angle)
        return out

    q, k = rope(norm(q)) * attn.q_gain.view(1, 1, H, 1), rope(norm(k))
    y = torch.zeros(B, T, H, hd)
    for bi in range(B):
        for h in range(H):
            g = h // (H // KV)  # query heads are grouped consecutively onto KV heads
            for t in range(T):
                allowed = [s for s in range(t + 1) if doc_ids is None or doc_ids[bi, s] == doc_ids[bi, t]]
                scores = torch.stack([q[bi, t, h] @ k[bi, s, g] for s in allowed]) / math.sqrt(hd)
                y[bi, t, h] = sum(w * v[bi, s, g] for w, s in zip(scores.softmax(0), allowed))
                if xsa:
                    unit = v[bi, t, g] / v[bi, t, g].norm()
                    y[bi, t, h] = y[bi, t, h] - (y[bi, t, h] @ unit) * unit
    if attn.gate_kind is not None:
        w = attn.attn_gate_w
        if attn.gate_kind == "dense":
            gate = torch.sigmoid(x @ w.T)
        elif attn.gate_kind == "sparse":
            gate = torch.sigmoid(attn.gate_scale * (x[..., : w.size(1)] @ w.T))
        else:
            src = q_raw if attn.gate_src == "q" else x
            gate = 2 * torch.sigmoid(src[..., : w.size(1)] @ w.T)
        y = y * gate.unsqueeze(-1)
    return y.reshape(B, T, D) @ attn.proj.weight.T


GATES = {"none": {"SPARSE_ATTN_GATE_ENABLED": "0"}, "sparse": {},
         "out_proj": {"SPARSE_ATTN_GATE_ENABLED": "0", "ATTN_OUT_GATE_ENABLED": "1"},
         "out_q": {"SPARSE_ATTN_GATE_ENABLED": "0", "ATTN_OUT_GATE_ENABLED": "1", "ATTN_OUT_GATE_SRC": "q"},
         "dense": {"SPARSE_ATTN_GATE_ENABLED": "0", "GATED_ATTN_ENABLED": "1"}}


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("xsa", [False, True])
@pytest.mark.parametrize("backend, isolate", [("sdpa", False), ("sdpa", True), ("flex", True)])
def test_attention_matches_reference(gate, xsa, backend, isolate):
    env = {**LOOP_STACK, **GATES[gate], "ATTN_BACKEND": backend, "DOC_ISOLATION": str(int(isolate))}
    model = randomized(env)
    attn = model.blocks[0].attn
    ids = torch.randint(2, 64, (2, 12), generator=torch.Generator().manual_seed(2))
    ids[0, 5] = ids[1, 8] = tg.BOS_ID
    ctx = tg.attention_context(ids, model.hp)
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        doc_ids = torch.cumsum((ids == tg.BOS_ID).int(), dim=1) if isolate else None  # BOS starts a document
        got, want = attn(x, ctx, xsa), reference_attention(attn, x, 4, doc_ids, xsa)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_fa3_backend_without_flash_attention_is_a_clear_error():
    hp = tg.Hyperparameters.from_env({**LOOP_STACK, "ATTN_BACKEND": "fa3"})
    assert tg.attention_backend(tg.Hyperparameters.from_env(LOOP_STACK), CPU) == "sdpa"  # auto on a CPU
    with pytest.raises(tg.HyperparameterError, match="FlashAttention-3"):
        tg.attention_backend(hp, CPU)


@pytest.mark.gpu
@pytest.mark.skipif(tg.flash_attn_varlen_func is None or not torch.cuda.is_available(), reason="needs CUDA and FA3")
@pytest.mark.parametrize("isolate", [False, True])
def test_fa3_matches_sdpa_on_the_gpu(isolate):
    cuda = torch.device("cuda")
    ids = torch.randint(2, 64, (4, 256), device=cuda)
    ids[0, 100] = ids[2, 17] = ids[3, 0] = tg.BOS_ID
    q, k, v = (torch.randn(4, n, 256, 64, device=cuda, dtype=torch.bfloat16) for n in (8, 4, 4))
    ctx = {b: tg.attention_context(ids, tg.Hyperparameters.from_env(
        {**LOOP_STACK, "ATTN_BACKEND": b, "DOC_ISOLATION": str(int(isolate))})) for b in ("fa3", "sdpa")}
    assert torch.allclose(tg.attend(q, k, v, ctx["fa3"]).float(), tg.attend(q, k, v, ctx["sdpa"]).float(), atol=2e-2)


def test_xsa_output_is_orthogonal_to_own_value():
    y, v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 5, 16)  # 8 query heads on 2 KV heads
    out = tg.xsa_remove_self_value(y, v)
    for h in range(8):
        assert torch.allclose((out[:, h] * v[:, h // 4]).sum(-1), torch.zeros(2, 5), atol=1e-5)


def test_partial_rope_leaves_the_other_dims_alone_and_is_relative():
    cos, sin = tg.rotary_tables(torch.arange(40)[None], 4, 10_000.0)
    x = torch.randn(1, 1, 40, 16)
    assert torch.equal(tg.apply_rotary(x, cos, sin)[..., 4:], x[..., 4:])
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    rot = lambda t, p: tg.apply_rotary(t, cos[:, :, p : p + 1], sin[:, :, p : p + 1])  # noqa: E731
    score = lambda i, j: float((rot(q, i) * rot(k, j)).sum())  # noqa: E731
    assert math.isclose(score(5, 2), score(30, 27), rel_tol=1e-5)
    assert not math.isclose(score(5, 2), score(5, 4), rel_tol=1e-3)


def test_top_layer_plans():
    plain, looped = tg.layer_plans(tg.Hyperparameters.from_env({}))
    assert looped.order == (0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10)
    assert looped.order[: looped.num_encoder] == (0, 1, 2, 3, 4, 5, 3, 4)  # encoder / decoder split of #1626
    assert [looped.order[i] for i, p in enumerate(looped.parallel) if p] == [8, 9, 10]
    assert all(looped.xsa) and all(plain.xsa) and plain.num_encoder == 5
    assert count_skips(tg.GPT(tg.Hyperparameters.from_env({}))) == 8


def count_skips(model) -> int:
    return model.skip_weights.size(0)


def test_progressive_depth_plans_and_schedule():
    hp = tg.Hyperparameters.from_env(read_env_file(RECIPES / "pr895.env"))
    plans = tg.layer_plans(hp)
    assert [p.order for p in plans] == [(0, 1, 2) * 2, (0, 1, 2) * 3, (0, 1, 2) * 4]
    assert plans[1].repeat == (0, 0, 0, 1, 1, 1, 2, 2, 2) and plans[2].num_encoder == 0
    assert plans[2].xsa == (False,) * 8 + (True,) * 4  # the last 4 applications of the current depth
    assert [tg.plan_index_at(f, hp) for f in (0.0, 0.39, 0.4, 0.64, 0.65, 1.2)] == [0, 0, 1, 1, 2, 2]


def test_looping_switches_at_its_fraction():
    hp = tg.Hyperparameters.from_env({})
    assert [tg.plan_index_at(f, hp) for f in (0.0, 0.3499, 0.35, 1.0)] == [0, 0, 1, 1]


def test_initial_loss_is_near_uniform():
    """Zero-initialized output projections and gates and a tiny tied embedding start at ~ln(V)."""
    model = tg.build_model(tg.Hyperparameters.from_env(LOOP_STACK), CPU)
    ids = torch.randint(0, 64, (4, 17))
    with torch.no_grad():
        loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(loss.item() - math.log(64)) < 0.01


def test_softcap_bounds_logits():
    model = randomized({**LOOP_STACK, "LOGIT_SOFTCAP": "5"})
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000)
        logits = model.logits(model.hidden(torch.randint(0, 64, (1, 8))))
    assert logits.abs().max() <= 5.0


def test_per_token_loss_matches_mean_and_plain_cross_entropy():
    model = randomized(LOOP_STACK)
    ids = torch.randint(0, 64, (2, 17))
    with torch.no_grad():
        per_token = model(ids[:, :-1], ids[:, 1:], reduction="none")
        mean = model(ids[:, :-1], ids[:, 1:])
        logits = model.logits(model.hidden(ids[:, :-1]))
    assert per_token.shape == (32,) and torch.allclose(per_token.mean(), mean)
    assert torch.allclose(per_token, F.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1), reduction="none"))


def test_asym_logit_caps_positive_and_negative_logits_separately():
    """AsymLogit (#1923/#1945/#2135): c+ tanh(z/c+) for z > 0, c- tanh(z/c-) otherwise; both caps learned."""
    model = randomized({**LOOP_STACK, "ASYM_LOGIT_RESCALE": "1", "LOGIT_SOFTCAP": "5"})
    with torch.no_grad():
        model.softcap_pos.fill_(4.0)
        model.softcap_neg.fill_(9.0)
        model.tok_emb.weight.mul_(50)
        h = model.hidden(torch.randint(0, 64, (1, 8)))
        z = h @ model.tok_emb.weight.float().T
        got = model.logits(h)
    want = torch.where(z > 0, 4.0 * torch.tanh(z / 4.0), 9.0 * torch.tanh(z / 9.0))
    assert torch.allclose(got, want, atol=1e-4)
    assert got.max() <= 4.0 and got.min() >= -9.0 and got.min() < -5.0  # each side has its own cap
    names = {n for n, _ in model.named_parameters()}
    assert {"softcap_pos", "softcap_neg"} <= names
    scalar_group = tg.build_optimizers(model, model.hp, cpu_runtime())[1]
    assert any(p is model.softcap_pos for p in scalar_group.param_groups[0]["params"])  # learned, scalar LR
