"""Numerics of the path users run on GPUs (bf16 autocast): every statistic the export or the metric
accumulates stays fp32/float64 whatever autocast does, and a Hessian that cannot be factored is a clear
error. Each test would fail if the accumulation fell back to bf16."""

import pytest
import torch

import train_gpt as tg
from conftest import cpu_runtime, randomized_model

SMALL = {"NUM_LAYERS": "2", "NUM_LOOPS": "0", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
         "VOCAB_SIZE": "96", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "32", "AUTOCAST": "bf16"}


def small_model(env=SMALL) -> tuple[tg.Hyperparameters, tg.GPT]:
    model = randomized_model(env, std=0.05)
    return model.hp, model


def test_hessians_are_fp32_sums_under_autocast():
    """The hooks see bf16 activations; an fp32 X^T X of those same inputs is the reference. A bf16 matmul
    would miss it by ~1e-2 relative and break positive definiteness (the Cholesky failures of step 4)."""
    hp, model = small_model()
    x = torch.randint(0, 96, (1, 256), generator=torch.Generator().manual_seed(0))
    seen = []
    hook = model.blocks[1].mlp.proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0].reshape(-1, 128)))
    hessians = tg.collect_hessians(model, [x], cpu_runtime("bf16"))
    hook.remove()
    assert seen[0].dtype == torch.bfloat16  # the forward really ran in bf16
    inputs = seen[0].double()
    expected = inputs.T @ inputs / x.numel()
    got = hessians["blocks.1.mlp.proj.weight"]
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-7)
    assert torch.linalg.eigvalsh(got.double()).min() > -1e-6  # X^T X is positive semi-definite


def test_quantization_inside_autocast_equals_quantization_outside():
    hp, model = small_model({**SMALL, "KEEP_FLOAT_MAX_NUMEL": "1024"})
    x = torch.randint(0, 96, (1, 128), generator=torch.Generator().manual_seed(1))
    hessians = tg.collect_hessians(model, [x], cpu_runtime(False))
    plain = tg.quantize_state_dict(model.state_dict(), hp, hessians)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under = tg.quantize_state_dict(model.state_dict(), hp, hessians)
    assert any("lqer_a" in arrays for _, _, arrays in plain.values())  # GPTQ and LQER both ran
    for name, (_, _, arrays) in plain.items():
        for key, t in arrays.items():
            assert torch.equal(t, under[name][2][key]), (name, key)


def test_gptq_raises_the_damping_before_giving_up():
    """An indefinite Hessian whose most negative eigenvalue is 5% of mean(diag): 1% damping fails, 10% works."""
    gen = torch.Generator().manual_seed(2)
    basis, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    eigenvalues = torch.linspace(-0.05, 2.05, 16)
    h = basis @ torch.diag(eigenvalues) @ basis.T
    assert torch.linalg.cholesky_ex(h + 0.01 * torch.diag(h).mean() * torch.eye(16)).info != 0
    q = tg.gptq_quantize(torch.randn(8, 16, generator=gen), h, 6, 4.0, "blocks.0.attn.c_q.weight")
    assert q["q"].shape == (8, 16)


@pytest.mark.parametrize("bad", ["indefinite", "nan"])
def test_a_hessian_that_cannot_be_factored_is_a_clear_error(bad):
    h = torch.tensor([[1.0, 3.0], [3.0, 1.0]]) if bad == "indefinite" else torch.full((2, 2), float("nan"))
    with pytest.raises(tg.ArtifactError, match=r"Hessian of blocks\.3\.mlp\.fc\.weight is not positive definite"):
        tg.gptq_quantize(torch.randn(4, 2), h, 6, 4.0, "blocks.3.mlp.fc.weight")


def test_quantize_matrix_names_the_tensor_in_the_error():
    hp = tg.Hyperparameters.from_env({})
    w = torch.randn(4, 2)
    with pytest.raises(tg.ArtifactError, match="blocks.0.mlp.fc.weight"):
        tg.quantize_matrix("blocks.0.mlp.fc.weight", w, hp, {"blocks.0.mlp.fc.weight": torch.full((2, 2), -1.0)})


def test_ema_shadow_is_fp32_even_for_bf16_tables():
    """The embedding is bf16; a bf16 shadow would round a 0.0035 step of a value near 1 away entirely."""
    hp, model = small_model()
    average = tg.WeightAverage(model, tg.Hyperparameters.from_env({"EMA_DECAY": "0.9965"}), lambda *a, **k: None)
    assert all(v.dtype == torch.float32 for v in average.sum.values())
    start = average.sum["tok_emb.weight"].clone()
    with torch.no_grad():
        model.tok_emb.weight.copy_(start.to(torch.bfloat16) + 0.25)
    for step in range(3):
        average.update(model, step, 1.0, True)
    moved = average.sum["tok_emb.weight"] - start
    assert torch.allclose(moved, torch.full_like(moved, 0.25 * (1 - 0.9965 ** 3)), atol=2e-3)


def test_muon_momentum_is_fp32_while_newton_schulz_runs_in_bf16():
    hp, model = small_model()
    muon = tg.build_optimizers(model, hp, cpu_runtime("bf16"))[-1]
    assert isinstance(muon, tg.Muon) and muon.dtype == torch.bfloat16
    x = torch.randint(0, 96, (1, 64))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        model(x, x).backward()
    muon.step()
    buffers = [muon.state[p]["momentum_buffer"] for group in muon.param_groups for p in group["params"]]
    assert buffers and all(b.dtype == torch.float32 for b in buffers)
    assert all(p.dtype == torch.float32 for group in muon.param_groups for p in group["params"])


def test_eval_sums_are_float64():
    meter = tg.BpbMeter(torch.device("cpu"))
    nll = torch.full((3,), 1.0 + 2 ** -30, dtype=torch.float32)  # below bf16's and fp32's resolution when summed
    for _ in range(4):
        meter.add(nll, torch.ones(3, dtype=torch.int16))
    assert meter.sums.dtype == torch.float64
    loss, _ = meter.result(cpu_runtime())
    assert loss == pytest.approx(float(nll[0]), abs=0)
