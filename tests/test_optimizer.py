"""Muon's orthogonalization, the routing table, and the LR / momentum schedules against hand values."""

import pytest
import torch

import train_gpt as tg

CPU = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), autocast=False)


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (96, 96)])
def test_newton_schulz_flattens_singular_values(shape):
    """Built from a known SVD with condition number ~30: the iteration must map all of it near 1."""
    gen = torch.Generator().manual_seed(0)
    rank = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], rank, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], rank, generator=gen))
    g = u @ torch.diag(torch.logspace(-1.5, 0, rank)) @ v.T
    s = torch.linalg.svdvals(tg.newton_schulz(g, steps=5).float())
    assert s.min() > 0.6 and s.max() < 1.25  # the classic quintic oscillates in roughly [0.7, 1.2]


def test_routing_table_covers_every_parameter_once():
    hp = tg.Hyperparameters.from_env({"NUM_LAYERS": "3", "MODEL_DIM": "64", "VOCAB_SIZE": "128", "TIE_EMBEDDINGS": "0"})
    model = tg.build_model(hp, CPU.device)
    optimizers = tg.build_optimizers(model, hp, CPU)
    routed = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
    assert sorted(map(id, routed)) == sorted(map(id, model.parameters()))
    muon = [o for o in optimizers if isinstance(o, tg.Muon)][0]
    assert all(p.ndim == 2 for p in muon.param_groups[0]["params"]) and len(muon.param_groups[0]["params"]) == 18
    lrs = {id(p): g["lr"] for opt in optimizers for g in opt.param_groups for p in g["params"]}
    assert lrs[id(model.tok_emb.weight)] == hp.embed_lr and lrs[id(model.lm_head.weight)] == hp.head_lr
    assert lrs[id(model.blocks[0].resid_mix)] == hp.scalar_lr and lrs[id(model.skip_weights)] == hp.scalar_lr


def test_wallclock_warmdown_projects_step_time():
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "10", "WARMDOWN_ITERS": "100"})
    assert tg.lr_scale_at(step=10, elapsed_ms=900.0, hp=hp) == 1.0  # 90 ms/step: warm-down is the last 9 s
    assert tg.lr_scale_at(step=100, elapsed_ms=9000.0, hp=hp) == pytest.approx(1000 / 9000)
    assert tg.lr_scale_at(step=111, elapsed_ms=10_000.0, hp=hp) == 0.0


def test_iteration_warmdown_without_a_cap():
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "0", "ITERATIONS": "1000", "WARMDOWN_ITERS": "200"})
    assert [tg.lr_scale_at(s, 0.0, hp) for s in (0, 799, 800, 900, 1000)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_muon_momentum_warmup_is_linear():
    hp = tg.Hyperparameters.from_env({})
    assert [tg.muon_momentum_at(s, hp) for s in (0, 250, 500, 5000)] == pytest.approx([0.85, 0.9, 0.95, 0.95])
