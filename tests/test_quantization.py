"""GPTQ, LQER and the older exports against round-to-nearest on a layer with correlated inputs."""

import math

import pytest
import torch

import train_gpt as tg
import train_gpt_reference as reference
from conftest import cpu_runtime

HP = tg.Hyperparameters.from_env({})


def correlated_layer(seed: int = 0, out_features: int = 64, in_features: int = 128, n: int = 4096):
    """A weight matrix and the Hessian of strongly correlated inputs (a shared factor plus mixing)."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(in_features, in_features, generator=gen) / math.sqrt(in_features)
    x = torch.randn(n, in_features, generator=gen) @ mix + 0.7 * torch.randn(n, 1, generator=gen)
    return torch.randn(out_features, in_features, generator=gen) * 0.05, x.T @ x / n


def hessian_error(w_hat: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> float:
    """The layer-output error GPTQ minimizes: trace((W_hat - W) H (W_hat - W)^T)."""
    d = (w_hat - w).double()
    return float((d @ h.double() * d).sum())


def round_to_nearest(w: torch.Tensor, bits: int, scale: torch.Tensor) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax) * scale[:, None]


@pytest.mark.parametrize("bits", [4, 6])
def test_gptq_beats_round_to_nearest_at_the_same_bits(bits):
    w, h = correlated_layer()
    q = tg.gptq_quantize(w, h, bits, clip_sigmas=4.0)
    assert q["q"].abs().max() <= 2 ** (bits - 1) - 1 and q["q"].dtype == torch.int8
    scale = tg.row_scale(q)
    gptq = tg.dequantize_groups(q["q"], scale)
    rtn = round_to_nearest(w, bits, scale)  # same scales, so the same bits: only the rounding differs
    assert hessian_error(gptq, w, h) < 0.7 * hessian_error(rtn, w, h)


def test_sdclip_scales_sit_on_the_log_grid_next_to_k_row_std():
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(4)) * torch.linspace(0.01, 3, 64)[:, None]
    exponents = tg.sdclip_row_scales(w, 12.0, 31)["scale_exp"]
    scale = tg.row_scale({"scale_exp": exponents}).double()
    wanted = 12.0 * w.double().std(dim=1) / 31
    assert exponents.dtype == torch.int16
    assert torch.all((scale / wanted).log2().abs() <= 1 / 64 + 1e-9)  # nearest grid point: half a step away at most
    assert torch.allclose(scale, torch.tensor(2.0, dtype=torch.float64) ** (exponents.double() / 32), rtol=1e-7)


def test_gptq_zeroes_dead_inputs():
    w, h = correlated_layer()
    h[5, :], h[:, 5] = 0, 0
    q = tg.gptq_quantize(w, h, 6, 4.0)
    assert torch.all(q["q"][:, 5] == 0)


def test_lqer_lowers_the_error_further():
    w, h = correlated_layer(seed=1, in_features=256)
    q = tg.gptq_quantize(w, h, 4, 4.0)
    base = tg.dequantize_groups(q["q"], tg.row_scale(q))
    for asym in ("1", "0"):
        hp = tg.Hyperparameters.from_env({"LQER_ASYM_ENABLED": asym, "LQER_RANK": "8"})
        factors = tg.lqer_factors(w - base, hp)
        corrected = base + tg.lqer_correction(factors)
        assert hessian_error(corrected, w, h) < 0.97 * hessian_error(base, w, h)  # a flat random spectrum: modest
        assert (w - corrected).norm() < (w - base).norm()
    assert factors["lqer_a"].shape == (64, 8) and factors["lqer_b"].shape == (8, 256)


def test_lqer_asymmetric_codes_use_their_ranges():
    factors = tg.lqer_factors(torch.randn(64, 128), HP)
    assert factors["lqer_a"].min() >= -2 and factors["lqer_a"].max() <= 1 and factors["lqer_a_scale"].numel() == 1
    assert factors["lqer_b"].min() >= -8 and factors["lqer_b"].max() <= 7
    assert factors["lqer_b_scale"].numel() == 4 * 128 // 64


def test_gptq_lite_picks_each_rows_clip_as_895_does():
    w = torch.randn(32, 512, generator=torch.Generator().manual_seed(2))
    w[0, 0] = 40.0  # one outlier: a lower quantile clip is better for that row
    best_q = best_s = best_mse = picked = None  # #895's loop, restated: codes and errors from fp32 scales
    for k, quantile in enumerate(reference.GPTQ_LITE_QUANTILES):
        clip = torch.quantile(w.abs(), quantile, dim=1)
        s = (clip / 127).clamp_min(1e-12)
        q = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / s[:, None]), -127, 127)
        mse = ((w - q * s[:, None]) ** 2).sum(1)
        if best_mse is None:
            best_q, best_s, best_mse, picked = q, s, mse, torch.zeros(32, dtype=torch.long)
            continue
        better = mse < best_mse  # strictly: the first candidate wins ties
        best_q, best_s = torch.where(better[:, None], q, best_q), torch.where(better, s, best_s)
        best_mse, picked = torch.where(better, mse, best_mse), torch.where(better, k, picked)
    lite = reference.quantize_gptq_lite(w, 127)
    assert torch.equal(lite["q"], best_q.to(torch.int8)) and torch.equal(lite["scale"], best_s.half())
    assert picked[0] < picked[1:].max()  # the outlier's row kept a lower clip than others chose


def test_small_tensors_are_fp16_but_the_baselines_control_tensors_under_its_exports():
    state = {"blocks.0.attn_scale": torch.ones(64), "blocks.0.attn.q_gain": torch.ones(2), "smear_gate": torch.ones(12),
             "loop_embed": torch.ones(3, 64), "tok_emb.weight": torch.ones(64, 32, dtype=torch.bfloat16)}
    for method in ("gptq", "int8", "gptq_lite"):
        quantized = tg.quantize_state_dict(state, tg.Hyperparameters.from_env({"QUANT_METHOD": method}))
        dtypes = {name: arrays["value"].dtype for name, (_, _, arrays) in quantized.items()}
        control = torch.float16 if method == "gptq" else torch.float32  # #1855 stores every small float fp16
        assert dtypes == {"blocks.0.attn_scale": control, "blocks.0.attn.q_gain": control,
                          "smear_gate": torch.float16, "loop_embed": torch.float16, "tok_emb.weight": torch.float16}


def test_state_dict_routing_by_role():
    hp = tg.Hyperparameters.from_env({"NUM_LAYERS": "2", "NUM_LOOPS": "0", "MODEL_DIM": "256", "VOCAB_SIZE": "512",
                                      "MLP_MULT": "2"})
    model = tg.build_model(hp, torch.device("cpu"))
    quantized = tg.quantize_state_dict(model.state_dict(), hp, hessians={})
    schemes = {name: (scheme, sorted(arrays)) for name, (scheme, _, arrays) in quantized.items()}
    assert schemes["blocks.0.mlp.fc.weight"][0] == "rows"  # 512x256 > 65,536 elements
    assert schemes["blocks.0.attn.c_k.weight"][0] == "raw"  # 128x256: small, kept
    assert schemes["blocks.0.attn.attn_gate_w"][0] == "rows"  # int8 gate rows
    assert schemes["blocks.0.resid_mix"][0] == "raw"
    lqer = [n for n, (_, keys) in schemes.items() if "lqer_a" in keys]
    assert len(lqer) == min(hp.lqer_top_k, sum(s == "rows" and "gate" not in n for n, (s, _) in schemes.items()))
    emb = quantized["tok_emb.weight"][2]["q"]
    assert emb.abs().max() <= 63  # EMBED_BITS=7
    mlp = quantized["blocks.0.mlp.fc.weight"][2]["q"]
    assert mlp.abs().max() <= 31  # MATRIX_BITS=6


@pytest.mark.parametrize("gate, shape, int8", [
    ({}, (8, 12), True),  # #1855's sparse gate
    ({"SPARSE_ATTN_GATE_ENABLED": "0", "GATED_ATTN_ENABLED": "1"}, (8, 512), True),  # #1736's dense gate
    ({"SPARSE_ATTN_GATE_ENABLED": "0", "GATED_ATTN_ENABLED": "1"}, (16, 768), False),  # over #1855's 8,192
    ({}, (2, 12), False),  # under its 32
    ({"SPARSE_ATTN_GATE_ENABLED": "0", "ATTN_OUT_GATE_ENABLED": "1"}, (8, 12), False),  # #1667's: fp16
], ids=["sparse", "dense", "dense_over_8192", "sparse_under_32", "out_gate"])
def test_int8_gate_rows_are_the_records_gates_within_their_bounds(gate, shape, int8):
    hp = tg.Hyperparameters.from_env(gate)
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.3
    scheme, _, arrays = tg.quantize_state_dict({"blocks.0.attn.attn_gate_w": w}, hp)["blocks.0.attn.attn_gate_w"]
    if not int8:
        assert scheme == "raw" and arrays["value"].dtype == torch.float16
        return
    scale = (w.abs().amax(1) / 127).half()  # #1855's _quantize_gate_int8_row, restated
    assert scheme == "rows" and torch.equal(arrays["scale"], scale)
    assert torch.equal(arrays["q"], torch.clamp(torch.round(w / scale.float()[:, None]), -127, 127).to(torch.int8))


def test_hessians_count_each_application_and_use_the_final_norm_for_the_embedding():
    env = {"NUM_LAYERS": "2", "LOOP_START": "1", "LOOP_END": "1", "NUM_LOOPS": "2", "MODEL_DIM": "32",
           "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "VOCAB_SIZE": "64", "PARALLEL_START_LAYER": "-1"}
    hp = tg.Hyperparameters.from_env(env)
    model = tg.build_model(hp, torch.device("cpu"))
    rt = cpu_runtime()
    x = torch.randint(0, 64, (2, 8))
    hessians = tg.collect_hessians(model, [x], rt)
    seen = []
    hook = model.blocks[1].mlp.fc.register_forward_hook(lambda m, inp, out: seen.append(inp[0].reshape(-1, 32)))
    with torch.no_grad():
        h = model.hidden(x)
    hook.remove()
    assert len(seen) == 3  # layer 1 runs 1 + NUM_LOOPS times in the eval plan
    expected = sum(s.T @ s for s in seen) / x.numel()
    assert torch.allclose(hessians["blocks.1.mlp.fc.weight"], expected, atol=1e-5)
    flat = h.reshape(-1, 32)
    assert torch.allclose(hessians["tok_emb.weight"], flat.T @ flat / x.numel(), atol=1e-5)


def test_self_generated_calibration_needs_no_data():
    env = {"NUM_LAYERS": "2", "NUM_LOOPS": "0", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
           "VOCAB_SIZE": "64", "TRAIN_SEQ_LEN": "12", "TRAIN_BATCH_TOKENS": "96", "GPTQ_CALIBRATION": "self",
           "GPTQ_CALIBRATION_BATCHES": "3", "DATA_PATH": "/nonexistent"}
    hp = tg.Hyperparameters.from_env(env)
    rt = cpu_runtime()
    model = tg.build_model(hp, rt.device)
    batches = tg.calibration_batches(model, hp, rt)
    assert [tuple(b.shape) for b in batches] == [(1, 12)] * 3
    assert all(b[0, 0] == tg.BOS_ID and b.max() < 64 for b in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, tg.calibration_batches(model, hp, rt)))  # seeded
    assert set(tg.collect_hessians(model, batches, rt)) >= {"tok_emb.weight", "blocks.1.mlp.proj.weight"}


def test_fp16_row_scales_restore_the_records_format():
    """SCALE_LOG_GRID=0: the scale is #1855's fp16 k * row std / qmax, and GPTQ's codes are computed with it."""
    w, h = correlated_layer(seed=3)
    q = tg.gptq_quantize(w, h, 6, 12.0, log_grid=False)
    assert sorted(q) == ["q", "scale"] and q["scale"].dtype == torch.float16
    assert torch.equal(q["scale"], (12.0 * w.std(dim=1) / 31).half())
    snapped = tg.gptq_quantize(w, h, 6, 12.0)
    assert sorted(snapped) == ["q", "scale_exp"] and not torch.equal(q["q"], snapped["q"])
