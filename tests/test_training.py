"""End-to-end training on the tiny dataset: the log contract, learning, warm-up restore, roundtrip."""

import re

import torch

import train_gpt as tg
from conftest import run_script, tiny_env

CPU = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), autocast=False)


def final_exact(text: str) -> tuple[float, float]:
    m = re.search(r"final_int8_zlib_roundtrip_exact val_loss:(\d+\.\d{8}) val_bpb:(\d+\.\d{8})", text)
    return float(m.group(1)), float(m.group(2))


def test_single_process_run_trains_exports_and_scores(tiny_dataset, tmp_path):
    env = tiny_env(tiny_dataset, tmp_path, ITERATIONS=30, VAL_LOSS_EVERY=30, TRAIN_LOG_EVERY=10)
    result = run_script(env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    val_bpbs = [float(v) for v in re.findall(r"step:\d+/30 val_loss:\S+ val_bpb:(\S+)", out)]
    assert len(val_bpbs) == 2 and val_bpbs[1] < val_bpbs[0] - 0.5  # step 0 vs step 30: it learned
    roundtrip_loss, roundtrip_bpb = final_exact(out)
    assert abs(roundtrip_bpb - val_bpbs[1]) < 0.02  # int8 costs little
    for pattern in (r"step:10/30 train_loss:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms",
                    r"Serialized model int8\+zlib: \d+ bytes", r"Code size: \d+ bytes",
                    r"Total submission size int8\+zlib: \d+ bytes", r"model_params:\d+",
                    r"final_int8_zlib_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms"):
        assert re.search(pattern, out), pattern
    log = (tmp_path / "logs" / "tiny.txt").read_text()
    assert log.startswith('"""\ntrain_gpt.py: one-file training stack')  # the source heads the log
    assert "  MODEL_DIM=32" in log and final_exact(log) == (roundtrip_loss, roundtrip_bpb)
    assert (tmp_path / "final_model.int8.ptz").exists() and (tmp_path / "final_model.pt").exists()


def test_same_seed_same_result(tiny_dataset, tmp_path):
    runs = [run_script(tiny_env(tiny_dataset, tmp_path / str(i), RUN_ID=f"r{i}")) for i in range(2)]
    assert all(r.returncode == 0 for r in runs)
    assert final_exact(runs[0].stdout) == final_exact(runs[1].stdout)


def test_warmup_restores_weights_and_optimizer_state(tiny_dataset, tmp_path):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, WARMUP_STEPS=3))
    model = tg.build_model(hp, CPU.device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizers = tg.build_optimizers(model, hp, CPU)
    tg.compile_warmup_and_restore(model, model, optimizers, hp, CPU, log=lambda *a, **k: None)
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert all(len(opt.state) == 0 for opt in optimizers)
    # ...and the warm-up did move the weights before restoring them.
    tg.train_step(model, optimizers, tg.TrainLoader(str(tiny_dataset / "fineweb_train_*.bin"), CPU), hp, CPU, 0, 1.0)
    assert not all(torch.equal(initial[k], v) for k, v in model.state_dict().items())


def test_training_never_reads_validation_shards(tiny_dataset, tmp_path, monkeypatch):
    """Every shard the training loop opens is a train shard; val is read once, before training."""
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, ITERATIONS=3, VAL_LOSS_EVERY=0))
    opened = []
    real = tg.read_shard
    monkeypatch.setattr(tg, "read_shard", lambda p: opened.append(str(p)) or real(p))
    val = tg.load_validation(hp, CPU, log=lambda *a, **k: None)
    opened.clear()
    model = tg.build_model(hp, CPU.device)
    tg.train(model, model, tg.build_optimizers(model, hp, CPU), val, hp, CPU, log=lambda *a, **k: None)
    assert opened and all("fineweb_train_" in p for p in opened)
