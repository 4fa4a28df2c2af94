"""The baseline GPT: exact parameter count, causality, and attention against a slow plain-PyTorch reference."""

import math

import torch
import torch.nn.functional as F

import train_gpt as tg

BASELINE = {"VOCAB_SIZE": "1024", "NUM_LAYERS": "9", "MODEL_DIM": "512", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
            "MLP_MULT": "2"}
SMALL = {"VOCAB_SIZE": "64", "NUM_LAYERS": "4", "MODEL_DIM": "32", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
         "TRAIN_SEQ_LEN": "16", "TRAIN_BATCH_TOKENS": "128"}


def small_model(**env) -> tg.GPT:
    model = tg.build_model(tg.Hyperparameters.from_env({**SMALL, **env}), torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():  # zero-initialized projections would hide most bugs: randomize everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def test_baseline_parameter_count_is_official():
    model = tg.build_model(tg.Hyperparameters.from_env(BASELINE), torch.device("cpu"))
    assert sum(p.numel() for p in model.parameters()) == 17_059_912


def test_untied_head_adds_exactly_one_matrix():
    tied = tg.build_model(tg.Hyperparameters.from_env(SMALL), torch.device("cpu"))
    untied = tg.build_model(tg.Hyperparameters.from_env({**SMALL, "TIE_EMBEDDINGS": "0"}), torch.device("cpu"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == 64 * 32


def test_logits_are_causal():
    model = small_model()
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 9:] = (changed[:, 9:] + 7) % 64
    with torch.no_grad():
        a, b = model.logits(model.hidden(ids)), model.logits(model.hidden(changed))
    assert torch.equal(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def reference_attention(attn: tg.CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Slow, explicit: per-head loops, repeated KV heads, manual RoPE angles and a masked softmax."""
    B, T, D = x.shape
    H, KV, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = (x @ attn.c_q.weight.T).view(B, T, H, hd)
    k = (x @ attn.c_k.weight.T).view(B, T, KV, hd)
    v = (x @ attn.c_v.weight.T).view(B, T, KV, hd)
    norm = lambda t: t / torch.sqrt((t * t).mean(-1, keepdim=True) + torch.finfo(t.dtype).eps)  # noqa: E731

    def rope(t):
        out = t.clone()
        for pos in range(T):
            for j in range(hd // 2):
                angle = pos / (10_000 ** (2 * j / hd))
                a, b = t[:, pos, :, j], t[:, pos, :, j + hd // 2]
                out[:, pos, :, j] = a * math.cos(angle) + b * math.sin(angle)
                out[:, pos, :, j + hd // 2] = b * math.cos(angle) - a * math.sin(angle)
        return out

    q, k = rope(norm(q)) * attn.q_gain.view(1, 1, H, 1), rope(norm(k))
    y = torch.zeros(B, T, H, hd)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for h in range(H):
        g = h // (H // KV)  # query heads are grouped consecutively onto KV heads
        scores = q[:, :, h] @ k[:, :, g].transpose(1, 2) / math.sqrt(hd)
        y[:, :, h] = scores.masked_fill(~mask, -math.inf).softmax(-1) @ v[:, :, g]
    return y.reshape(B, T, D) @ attn.proj.weight.T


def test_attention_matches_reference():
    model = small_model()
    attn = model.blocks[0].attn
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(3))
    rope = tg.rotary_tables(12, attn.head_dim, 10_000.0, x.device)
    with torch.no_grad():
        assert torch.allclose(attn(x, rope), reference_attention(attn, x), atol=1e-5, rtol=1e-4)


def test_rope_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    cos, sin = tg.rotary_tables(40, 8, 10_000.0, torch.device("cpu"))
    rot = lambda t, p: tg.apply_rotary(t, cos[:, :, p : p + 1], sin[:, :, p : p + 1])  # noqa: E731
    score = lambda i, j: float((rot(q, i) * rot(k, j)).sum())  # noqa: E731
    assert math.isclose(score(5, 2), score(30, 27), rel_tol=1e-5)
    assert not math.isclose(score(5, 2), score(5, 4), rel_tol=1e-3)


def test_initial_loss_is_near_uniform():
    """Zero-initialized output projections and a tiny tied embedding start at ~ln(V)."""
    model = tg.build_model(tg.Hyperparameters.from_env(SMALL), torch.device("cpu"))
    ids = torch.randint(0, 64, (4, 17))
    with torch.no_grad():
        loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(loss.item() - math.log(64)) < 0.01


def test_softcap_bounds_logits():
    model = small_model(LOGIT_SOFTCAP="5")
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000)
        logits = model.logits(model.hidden(torch.randint(0, 64, (1, 8))))
    assert logits.abs().max() <= 5.0


def test_per_token_loss_matches_mean():
    model = small_model()
    ids = torch.randint(0, 64, (2, 17))
    with torch.no_grad():
        per_token = model(ids[:, :-1], ids[:, 1:], reduction="none")
        mean = model(ids[:, :-1], ids[:, 1:])
        logits = model.logits(model.hidden(ids[:, :-1]))
    assert per_token.shape == (32,)
    assert torch.allclose(per_token.mean(), mean)
    assert torch.allclose(per_token, F.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1), reduction="none"))
