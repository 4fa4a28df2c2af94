"""Our forward against plain re-statements of the records' equations, written here without the model's
Block or GPT.hidden: #1855's stack (SmearGate, U-Net skips with gates, the two-lane parallel residual,
XSA on physical blocks) and #895's recurrence (loop embeddings, value embeddings, cross-repeat skips).
Every parameter gets a random, non-init value, so a changed sign, lane, lerp direction or missing term
shows. Attention and the MLP are used as primitives here; tests/test_model.py checks those against
references of their own, and the MLP's LeakyReLU^2 is checked below."""

import math

import pytest
import torch
import torch.nn.functional as F

import train_gpt as tg
from conftest import cpu_runtime, randomized_model as randomized

# 6 layers, layers 1-2 looped twice: 0 1 2 1 2 3 4 5, encoder [0 1 2 1], decoder [2 3 4 5]. Lanes from
# physical layer 4, which is a decoder application that receives a skip, so where the split happens and
# where that skip goes both matter. XSA on the last 3 physical blocks: 3, 4 and 5.
LOOPED = {"VOCAB_SIZE": "64", "NUM_LAYERS": "6", "MODEL_DIM": "32", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
          "TRAIN_SEQ_LEN": "16", "NUM_LOOPS": "1", "LOOP_START": "1", "LOOP_END": "2", "PARALLEL_START_LAYER": "4",
          "XSA_LAST_N": "3", "GATE_WINDOW": "8", "ROPE_DIMS": "4"}
RECURRENT = {"VOCAB_SIZE": "64", "NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
             "TRAIN_SEQ_LEN": "16", "NUM_LOOPS": "0", "NUM_REPEATS": "3", "PROG_DEPTH": "0.5:2,1.0:3",
             "NUM_VALUE_EMBEDS": "2", "XSA_LAST_N": "2", "PARALLEL_START_LAYER": "0", "LN_SCALE": "0",
             "SMEAR_GATE_ENABLED": "0", "SPARSE_ATTN_GATE_ENABLED": "0", "ROPE_DIMS": "4"}


def token_ids(seed: int = 0) -> torch.Tensor:
    ids = torch.randint(2, 64, (2, 16), generator=torch.Generator().manual_seed(seed))
    ids[0, [0, 9]] = ids[1, 4] = tg.BOS_ID
    return ids


def rms(x):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps)


def record_1855_hidden(model: tg.GPT, ids: torch.Tensor, final_lane: str = "mean") -> torch.Tensor:
    """sota_stack.md 1.2-1.5 and the #1855 record's _forward_hidden / _parallel_block, restated."""
    hp, blocks = model.hp, model.blocks
    e = model.tok_emb.weight[ids].float()
    gate = torch.sigmoid(e[..., : hp.gate_window] @ model.smear_gate.float()) * model.smear_lambda
    not_bos = (ids != tg.BOS_ID).float()
    e = torch.cat([e[:, :1], e[:, 1:] + (gate * not_bos)[:, 1:, None] * e[:, :-1]], dim=1)
    x = x0 = rms(e)
    ctx = tg.attention_context(ids, hp)
    layers = list(range(hp.loop_start)) + list(range(hp.loop_start, hp.loop_end + 1)) * (1 + hp.num_loops) \
        + list(range(hp.loop_end + 1, hp.num_layers))
    encoder, decoder = layers[: len(layers) // 2], layers[len(layers) // 2 :]
    scale = [1 / math.sqrt(i + 1) for i in range(hp.num_layers)]
    xsa = [i >= hp.num_layers - hp.xsa_last_n for i in range(hp.num_layers)]  # physical blocks

    def attn(i, inp):
        return blocks[i].attn_scale * blocks[i].attn(rms(inp) * scale[i], ctx, xsa[i])

    def mlp(i, inp):
        return blocks[i].mlp_scale * blocks[i].mlp(rms(inp) * scale[i])

    def mixed(i, stream):
        return blocks[i].resid_mix[0] * stream + blocks[i].resid_mix[1] * x0

    def with_skip(j, stream, skips):
        if j >= model.skip_weights.size(0) or not skips:
            return stream
        s = torch.sigmoid(model.skip_gates[j])
        return (1 - s) * (model.skip_weights[j] * skips.pop()) + s * stream

    skips = []
    for i in encoder:
        x_in = mixed(i, x)
        x = x_in + attn(i, x_in)
        x = x + mlp(i, x)
        skips.append(x)
    lane_a = lane_m = None
    for j, i in enumerate(decoder):
        if i >= hp.parallel_start_layer > 0:
            if lane_a is None:
                lane_a = lane_m = x  # split first; the skip then goes to lane A only
            lane_a = with_skip(j, lane_a, skips)
            a, m = attn(i, mixed(i, lane_a)), mlp(i, lane_m)  # attention reads mix(lane A), lane A itself unmixed
            r, p = model.parallel_resid_lambdas[i], model.parallel_post_lambdas[i]
            lane_a, lane_m = r[0] * lane_a + p[0, 0] * a + p[1, 0] * m, r[1] * lane_m + p[0, 1] * a + p[1, 1] * m
        else:
            x = with_skip(j, x, skips)
            x_in = mixed(i, x)
            x = x_in + attn(i, x_in)
            x = x + mlp(i, x)
    if lane_a is not None:
        x = {"mean": 0.5 * (lane_a + lane_m), "attn": lane_a, "mlp": lane_m}[final_lane]
    return rms(x)


@pytest.mark.parametrize("final_lane", ["mean", "attn", "mlp"])
def test_looped_two_lane_stack_computes_the_records_function(final_lane):
    model = randomized({**LOOPED, "PARALLEL_FINAL_LANE": final_lane})
    ids = token_ids()
    assert [model.plans[-1].order[i] for i, p in enumerate(model.plans[-1].parallel) if p] == [4, 5]
    with torch.no_grad():
        got, want = model.hidden(ids), record_1855_hidden(model, ids, final_lane)
    assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


def test_the_lanes_are_not_a_no_op():
    """The fidelity test above must be able to fail: turning the lanes off changes the function."""
    model = randomized(LOOPED)
    sequential = randomized({**LOOPED, "PARALLEL_START_LAYER": "0"})
    ids = token_ids()
    with torch.no_grad():
        assert not torch.allclose(model.hidden(ids), sequential.hidden(ids), atol=1e-3)


def test_xsa_last_n_counts_physical_blocks_like_the_record():
    """#1855's XSA_LAST_N=11 on 11 layers puts XSA on all 17 applications once looping is on."""
    top = tg.Hyperparameters.from_env({"XSA_LAST_N": "11"})
    plain, looped = tg.layer_plans(top)
    assert len(looped.order) == 17 and all(looped.xsa) and all(plain.xsa)
    three = tg.layer_plans(tg.Hyperparameters.from_env({"XSA_LAST_N": "3"}))[-1]
    assert [b for b, x in zip(three.order, three.xsa) if x] == [8, 9, 10]


def record_895_hidden(model: tg.GPT, ids: torch.Tensor, repeats: int) -> torch.Tensor:
    """#895's forward_logits restated: per effective layer l (block b, repeat r) the stream gets
    loop_embed[l], sum_k value_scales[l, k] * VE_k(ids) and, for r > 0, cross_repeat_scales[b, r-1] times
    block b's output of repeat r-1; XSA on the last XSA_LAST_N effective layers of the current depth."""
    hp, blocks = model.hp, model.blocks
    x = x0 = rms(model.tok_emb.weight[ids].float())
    values = [table.weight[ids].float() for table in model.value_embeds]
    ctx = tg.attention_context(ids, hp)
    depth = hp.num_layers * repeats
    previous = [None] * hp.num_layers
    layer = 0
    for r in range(repeats):
        for b, block in enumerate(blocks):
            x = x + model.loop_embed[layer]
            for k, v in enumerate(values):
                x = x + model.value_scales[layer, k] * v
            if r > 0:
                x = x + model.cross_repeat_scales[b, r - 1] * previous[b]
            x_in = block.resid_mix[0] * x + block.resid_mix[1] * x0
            x = x_in + block.attn_scale * block.attn(rms(x_in), ctx, layer >= depth - hp.xsa_last_n)
            x = x + block.mlp_scale * block.mlp(rms(x))
            previous[b] = x
            layer += 1
    return rms(x)


@pytest.mark.parametrize("plan_index, repeats", [(0, 2), (1, 3)])
def test_recurrence_computes_the_records_function(plan_index, repeats):
    model = randomized(RECURRENT)
    ids = token_ids(1)
    with torch.no_grad():
        got, want = model.hidden(ids, plan_index), record_895_hidden(model, ids, repeats)
    assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


@pytest.mark.parametrize("slope", [0.5, 0.0])
def test_mlp_is_leaky_relu_squared(slope):
    model = randomized({**LOOPED, "MLP_NEGATIVE_SLOPE": str(slope)})
    mlp = model.blocks[0].mlp
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(4))
    h = x @ mlp.fc.weight.T
    act = torch.where(h > 0, h, slope * h) ** 2
    with torch.no_grad():
        assert torch.allclose(mlp(x), act @ mlp.proj.weight.T, atol=1e-5)


def test_adam_betas_and_eps_reach_every_adam_group():
    """One AdamW step of the scalar group by hand: betas (0.8, 0.9), eps 1e-3, no weight decay."""
    hp = tg.Hyperparameters.from_env({**LOOPED, "BETA1": "0.8", "BETA2": "0.9", "ADAM_EPS": "1e-3",
                                      "ADAM_WD": "0", "SCALAR_LR": "0.1"})
    model = tg.build_model(hp, torch.device("cpu"))
    optimizers = tg.build_optimizers(model, hp, cpu_runtime())
    adams = [o for o in optimizers if isinstance(o, torch.optim.AdamW)]
    assert len(adams) == 2 and all(o.defaults["betas"] == (0.8, 0.9) and o.defaults["eps"] == 1e-3 for o in adams)
    q_gain = model.blocks[0].attn.q_gain
    start = q_gain.detach().clone()
    grads = [torch.full_like(start, 2.0), torch.full_like(start, -1.0)]
    m = v = torch.zeros_like(start)
    want = start.clone()
    for t, g in enumerate(grads, start=1):
        q_gain.grad = g.clone()
        adams[-1].step()
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        want = want - 0.1 * (m / (1 - 0.8 ** t)) / ((v / (1 - 0.9 ** t)).sqrt() + 1e-3)
    assert torch.allclose(q_gain.detach(), want, atol=1e-6)


def test_skip_merge_lerps_towards_the_stream_by_the_gate():
    x, skip, w = torch.randn(4), torch.randn(4), torch.randn(4)
    g = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    s = torch.sigmoid(g)
    assert torch.allclose(tg.skip_merge(x, skip, w, g), (1 - s) * (w * skip) + s * x)
    assert torch.allclose(tg.skip_merge(x, skip, w, None), x + w * skip)
    assert F.mse_loss(tg.skip_merge(x, skip, w, g), s * (w * skip) + (1 - s) * x) > 1e-3  # direction matters


def record_1855_rope(seq_len: int, rope_dims: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """#1855's Rotary after GPT(h).to(device).bfloat16() and restore_fp32_params: the inv_freq buffer, built
    in fp32 as 1 / base^(2i/d), is left in bf16 (only parameters go back to fp32); the cache reads it back with
    .float() and takes cos/sin of positions x frequencies in fp32 (then casts to q's dtype at use)."""
    inv_freq = (1.0 / base ** (torch.arange(0, rope_dims, 2, dtype=torch.float32) / rope_dims)).to(torch.bfloat16)
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq.float())
    return freqs.cos(), freqs.sin()


def test_rope_bf16_freqs_are_the_records_rounded_frequencies():
    """ROPE_BF16_FREQS=1 (top.env): our tables at positions 0..T-1 of one segment equal #1855's, bit for bit;
    without it they are the exact frequencies, up to 0.4% apart (0.031622 -> 0.031738 at i=3 of 16 dims)."""
    ids = torch.randint(2, 64, (1, 16), generator=torch.Generator().manual_seed(0))  # no BOS: one segment
    env = {**LOOPED, "ROPE_DIMS": "16", "MODEL_DIM": "64"}
    want = record_1855_rope(16, 16, 10_000.0)
    cos, sin = tg.attention_context(ids, tg.Hyperparameters.from_env({**env, "ROPE_BF16_FREQS": "1"})).rope
    assert torch.equal(cos[0, 0], want[0]) and torch.equal(sin[0, 0], want[1])
    exact_cos, exact_sin = tg.attention_context(ids, tg.Hyperparameters.from_env(env)).rope
    assert not torch.equal(exact_cos[0, 0], want[0]) and not torch.equal(exact_sin[0, 0], want[1])
    exact = 10_000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    rounded = exact.to(torch.bfloat16).double()
    assert 0.003 < ((rounded - exact).abs() / exact).max() < 0.004
    assert abs(float(rounded[3]) - 0.031738) < 1e-6


def test_rope_bf16_freqs_change_the_logits_of_the_same_weights():
    """Artifacts of one setting are not interchangeable with the other's: the same weights give other logits."""
    model = randomized(LOOPED)
    bf16 = tg.build_model(tg.Hyperparameters.from_env({**LOOPED, "ROPE_BF16_FREQS": "1"}), torch.device("cpu"))
    bf16.load_state_dict(model.state_dict())
    ids = token_ids()
    with torch.no_grad():
        a, b = model.logits(model.hidden(ids)), bf16.logits(bf16.hidden(ids))
    assert 0 < (a - b).abs().max() < 1.0
