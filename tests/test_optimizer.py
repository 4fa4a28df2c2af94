"""Muon (Polar Express, MuonEq-R, weight decay, rank sharding), the routing table, and the LR / momentum
schedules against hand values."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import train_gpt as tg
from conftest import cpu_runtime

CPU = cpu_runtime()


def conditioned(shape, low_exponent: float) -> torch.Tensor:
    """A matrix with known singular values logspace(low, 0): condition number 10**-low."""
    gen = torch.Generator().manual_seed(0)
    rank = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], rank, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], rank, generator=gen))
    return u @ torch.diag(torch.logspace(low_exponent, 0, rank)) @ v.T


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (96, 96), (256, 512)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_polar_express_lands_in_its_documented_band(shape, dtype):
    s = torch.linalg.svdvals(tg.newton_schulz(conditioned(shape, -1.5), 5, polar_express=True, dtype=dtype).float())
    assert s.min() > 0.85 and s.max() < 1.15
    classic = torch.linalg.svdvals(tg.newton_schulz(conditioned(shape, -1.5), 5, dtype=dtype).float())
    assert classic.min() > 0.6 and classic.max() < 1.25
    assert s.max() - s.min() < classic.max() - classic.min()  # the tuned schedule is tighter


def test_polar_express_runs_at_most_its_five_tuples():
    g = conditioned((32, 64), -1.0)
    assert torch.equal(tg.newton_schulz(g, 9, polar_express=True), tg.newton_schulz(g, 5, polar_express=True))
    assert not torch.equal(tg.newton_schulz(g, 3, polar_express=True), tg.newton_schulz(g, 5, polar_express=True))


def muon_env(**extra) -> tg.Hyperparameters:
    return tg.Hyperparameters.from_env({"MATRIX_LR": "0.1", "MUON_WD": "0.5", **{k: str(v) for k, v in extra.items()}})


def test_muon_step_matches_hand_computation():
    """Nesterov momentum, MuonEq-R rows, Polar Express, sqrt(rows/cols) scale and decoupled decay."""
    hp = muon_env()
    w, grad = torch.randn(96, 32), torch.randn(96, 32)
    p = nn.Parameter(w.clone())
    p.grad = grad.clone()
    tg.Muon([p], hp, CPU).step()
    g = grad + 0.97 * grad  # buf = grad after one step; Nesterov adds momentum * buf
    g = g / g.norm(dim=1, keepdim=True)
    update = tg.newton_schulz(g, 5, polar_express=True, dtype=torch.float32) * (96 / 32) ** 0.5
    assert torch.allclose(p.detach(), w * (1 - 0.1 * 0.5) - 0.1 * update, atol=1e-6)


def muon_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.save(run_muon(cpu_runtime(rank=rank, world_size=world_size)), f"{out_file}.{rank}")
    dist.barrier()  # no rank tears down gloo's sockets while the other still uses them (SIGABRT, as in run_cli)
    dist.destroy_process_group()


def run_muon(rt: tg.Runtime) -> list[torch.Tensor]:
    """Three Muon steps on five matrices with the same (already all-reduced) gradients on every rank."""
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(s, generator=gen)) for s in [(16, 8), (8, 16), (12, 12), (20, 4), (4, 4)]]
    opt = tg.Muon(params, muon_env(), rt)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach().clone() for p in params]


def test_muon_on_two_ranks_equals_one_rank(tmp_path):
    mp.spawn(muon_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    single = run_muon(CPU)
    for rank in range(2):
        shared = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        assert all(torch.equal(a, b) for a, b in zip(shared, single)), f"rank {rank} differs"


def test_routing_table_covers_every_parameter_once():
    env = {"NUM_LAYERS": "4", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "VOCAB_SIZE": "128",
           "TIE_EMBEDDINGS": "0", "LOOP_START": "1",
           "LOOP_END": "2", "PARALLEL_START_LAYER": "3"}
    hp = tg.Hyperparameters.from_env(env)
    model = tg.build_model(hp, CPU.device)
    optimizers = tg.build_optimizers(model, hp, CPU)
    routed = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
    assert sorted(map(id, routed)) == sorted(map(id, model.parameters()))
    muon = [o for o in optimizers if isinstance(o, tg.Muon)][0]
    assert len(muon.param_groups[0]["params"]) == 6 * 4 and all(p.ndim == 2 for p in muon.param_groups[0]["params"])
    where = {id(p): (g["lr"], opt.defaults["weight_decay"]) for opt in optimizers for g in opt.param_groups
             for p in g["params"]}
    assert where[id(model.tok_emb.weight)] == (hp.embed_lr, hp.embed_wd)
    assert where[id(model.lm_head.weight)] == (hp.head_lr, 0.0)
    for control in (model.blocks[0].resid_mix, model.skip_gates, model.smear_gate, model.parallel_post_lambdas,
                    model.blocks[2].attn.attn_gate_w):
        assert where[id(control)] == (hp.scalar_lr, hp.adam_wd)


def test_value_embeddings_train_with_the_token_embedding():
    hp = tg.Hyperparameters.from_env({"NUM_LAYERS": "2", "NUM_LOOPS": "0", "NUM_REPEATS": "2", "NUM_VALUE_EMBEDS": "2",
                                      "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "VOCAB_SIZE": "64",
                                      "PARALLEL_START_LAYER": "-1"})
    model = tg.build_model(hp, CPU.device)
    embed_group = tg.build_optimizers(model, hp, CPU)[0].param_groups[0]["params"]
    assert [id(p) for p in embed_group] == [id(model.tok_emb.weight)] + [id(t.weight) for t in model.value_embeds]


def test_fractional_warmdown_with_floor():
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "108", "GPTQ_RESERVE_SECONDS": "8",
                                      "WARMDOWN_FRAC": "0.5", "MIN_LR": "0.1"})
    assert tg.training_cap_ms(hp) == 100_000  # the reserve shortens the clock the schedule sees
    assert [tg.lr_scale_at(0, ms, hp) for ms in (0, 49_999, 75_000, 95_000, 100_000)] == \
        pytest.approx([1.0, 1.0, 0.5, 0.1, 0.1])


def test_schedule_horizon_keeps_the_original_curve_past_the_cap():
    """#2008's continuation: a 1-hour cap on a 6-hour schedule warms down by the 6 hours, not by the cap."""
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "3608", "GPTQ_RESERVE_SECONDS": "8",
                                      "SCHEDULE_HORIZON_SECONDS": "21608", "WARMDOWN_FRAC": "0.5", "MIN_LR": "0.1"})
    assert tg.training_cap_ms(hp) == 3_600_000  # the cap still stops training
    hours = [h * 3_600_000 for h in (1, 3, 4.5, 6, 7)]
    assert [tg.training_frac(0, ms, hp) for ms in hours] == pytest.approx([1 / 6, 0.5, 0.75, 1.0, 7 / 6])
    assert [tg.lr_scale_at(0, ms, hp) for ms in hours] == pytest.approx([1.0, 1.0, 0.5, 0.1, 0.1])
    looped = tg.Hyperparameters.from_env({"SCHEDULE_HORIZON_SECONDS": "1008", "ENABLE_LOOPING_AT": "0.35"})
    assert [tg.stage_at(tg.training_frac(0, s * 1000, looped), looped).plan for s in (340, 360)] == [0, 1]
    with pytest.raises(tg.HyperparameterError, match="SCHEDULE_HORIZON_SECONDS must exceed"):
        tg.Hyperparameters.from_env({"SCHEDULE_HORIZON_SECONDS": "5"})


def test_baseline_wallclock_warmdown_projects_step_time():
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "10", "GPTQ_RESERVE_SECONDS": "0", "WARMDOWN_FRAC": "0",
                                      "WARMDOWN_ITERS": "100"})
    assert tg.lr_scale_at(step=10, elapsed_ms=900.0, hp=hp) == 1.0  # 90 ms/step: warm-down is the last 9 s
    assert tg.lr_scale_at(step=100, elapsed_ms=9000.0, hp=hp) == pytest.approx(1000 / 9000)
    assert tg.lr_scale_at(step=111, elapsed_ms=10_000.0, hp=hp) == 0.0


def test_iteration_warmdown_without_a_cap():
    hp = tg.Hyperparameters.from_env({"MAX_WALLCLOCK_SECONDS": "0", "ITERATIONS": "1000", "WARMDOWN_FRAC": "0",
                                      "WARMDOWN_ITERS": "200"})
    assert [tg.lr_scale_at(s, 0.0, hp) for s in (0, 799, 800, 900, 1000)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_muon_momentum_warmup_is_linear():
    hp = tg.Hyperparameters.from_env({})
    assert [tg.muon_momentum_at(s, hp) for s in (0, 750, 1500, 5000)] == pytest.approx([0.92, 0.945, 0.97, 0.97])


@pytest.mark.parametrize("keep", [True, False])
def test_warmup_momentum_is_kept_only_under_the_knob(tiny_dataset, tmp_path, monkeypatch, keep):
    """#1855 (8 ranks) keeps Muon's momentum in sharded buffers outside the optimizer state, so restoring the
    state after the compile warm-up leaves them as the warm-up made them: training starts with 2 x WARMUP_STEPS
    steps of momentum (steps 0..W-1 of its ramp, once per plan). MUON_KEEP_WARMUP_MOMENTUM=1 keeps exactly that
    recursion, buf = mu_k * buf + g_k, restated here from each warm-up step's gradient; without it the buffers
    are gone (the first step starts from zero). The weights and AdamW state are restored either way."""
    from conftest import tiny_env

    env = tiny_env(tiny_dataset, tmp_path, NUM_LAYERS=3, NUM_LOOPS=1, LOOP_START=1, LOOP_END=1, WARMUP_STEPS=3,
                   ENABLE_LOOPING_AT=0.5, MUON_KEEP_WARMUP_MOMENTUM=int(keep))
    hp = tg.Hyperparameters.from_env(env)
    model = tg.build_model(hp, CPU.device)
    models = tg.Models(model, model, model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizers = tg.build_optimizers(model, hp, CPU)
    muon = optimizers[-1]
    steps = []  # (momentum, {param: grad}) of each Muon step
    real_step = tg.Muon.step
    monkeypatch.setattr(tg.Muon, "step", lambda self, closure=None: steps.append(
        (self.param_groups[0]["momentum"], {p: p.grad.clone() for p in self.param_groups[0]["params"]}))
        or real_step(self, closure))
    tg.compile_warmup_and_restore(models, optimizers, hp, CPU, log=lambda *a, **k: None)

    ramp = [(1 - i / 1500) * 0.92 + i / 1500 * 0.97 for i in range(3)]
    assert [mu for mu, _ in steps] == pytest.approx(ramp * 2)  # two plans, steps 0..2 of the ramp each
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert all(len(opt.state) == 0 for opt in optimizers[:-1])
    if not keep:
        assert len(muon.state) == 0
        return
    for p in muon.param_groups[0]["params"]:
        buf = torch.zeros_like(p)
        for mu, grads in steps:
            buf = buf * mu + grads[p]
        assert buf.abs().max() > 0
        assert torch.allclose(muon.state[p]["momentum_buffer"], buf, rtol=1e-6, atol=0)
