"""End-to-end training on the tiny dataset: the log contract, learning, warm-up restore, roundtrip."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import train_gpt as tg
import train_gpt_reference as reference
from conftest import REPO, cpu_runtime, randomized_model, run_script, tiny_env

CPU = cpu_runtime()


def final_exact(text: str) -> tuple[float, float]:
    m = re.search(r"final_\w+_roundtrip_exact val_loss:(\d+\.\d{8}) val_bpb:(\d+\.\d{8})", text)
    return float(m.group(1)), float(m.group(2))


def test_single_process_run_trains_exports_and_scores(tiny_run, numeric_mode):
    env, result = tiny_run(numeric_mode)  # ITERATIONS=30, VAL_LOSS_EVERY=30, TRAIN_LOG_EVERY=10
    assert result.returncode == 0, result.stderr[-2000:]
    tmp_path = Path(env["ARTIFACT_DIR"])
    out = result.stdout
    val_bpbs = [float(v) for v in re.findall(r"step:\d+/30 val_loss:\S+ val_bpb:(\S+)", out)]
    assert len(val_bpbs) == 2 and val_bpbs[1] < val_bpbs[0] - 0.5  # step 0 vs step 30: it learned
    roundtrip_loss, roundtrip_bpb = final_exact(out)
    assert abs(roundtrip_bpb - val_bpbs[1]) < 0.02  # int8 costs little
    for pattern in (r"step:10/30 train_loss:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms",
                    r"Serialized model int6\+brotli: \d+ bytes", r"Code size: \d+ bytes",
                    r"Total submission size int6\+brotli: \d+ bytes", r"model_params:\d+",
                    r"budget:total code:\d+ model:\d+ total:\d+ cap:16000000 headroom:\d+",
                    r"final_int6_brotli_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms",
                    r"\ntrain_shards: 2\n", r"\nval_tokens: \d+\n", r"\ntarget_tokens: \d+\n"):
        assert re.search(pattern, out), pattern
    log = (tmp_path / "logs" / "tiny.txt").read_text()
    assert log.startswith('"""\ntrain_gpt.py: one-file training stack')  # the source heads the log
    assert "  MODEL_DIM=32" in log and final_exact(log) == (roundtrip_loss, roundtrip_bpb)
    assert f"autocast_bf16:{int(numeric_mode == 'bf16')}" in out
    assert (tmp_path / "final_model.int6.ptz").exists() and (tmp_path / "final_model.pt").exists()


def test_same_seed_same_result(tiny_run, tmp_path, numeric_mode):
    env, first = tiny_run(numeric_mode)
    runs = [first, run_script({**env, "ARTIFACT_DIR": str(tmp_path), "RUN_ID": "again"})]
    assert all(r.returncode == 0 for r in runs)
    assert final_exact(runs[0].stdout) == final_exact(runs[1].stdout)


def test_periodic_exports_leave_training_bitwise_unchanged(tiny_dataset, tmp_path):
    """EXPORT_MINUTES swaps the EMA weights in, exports, and swaps the live ones back: the final weights equal
    a run without exports, and each milestone left a loadable artifact and a JSON line."""
    crc = r"trained_weights_crc32:(\w+)"
    base = dict(ITERATIONS=12, EMA_DECAY=0.9)
    plain = run_script(tiny_env(tiny_dataset, tmp_path / "plain", **base))
    out = tmp_path / "exports"
    exported = run_script(tiny_env(tiny_dataset, out, **base, EXPORT_MINUTES="0.0001,0.0002", EXPORT_EVAL=1))
    assert plain.returncode == 0 and exported.returncode == 0, exported.stderr[-2000:]
    assert re.search(crc, exported.stdout).group(1) == re.search(crc, plain.stdout).group(1)
    assert final_exact(exported.stdout) == final_exact(plain.stdout)
    lines = [json.loads(line) for line in (out / "exports.jsonl").read_text().splitlines()]
    assert [r["minute"] for r in lines] == [0.0001, 0.0002] and all("val_bpb" in r for r in lines)
    for r in lines:
        quantized, config = tg.unpack_artifact(Path(r["artifact"]).read_bytes())
        assert config["num_layers"] == 2 and r["artifact_bytes"] == Path(r["artifact"]).stat().st_size


def models_for(hp, compile_backend=None) -> tg.Models:
    model = tg.build_model(hp, CPU.device)
    compiled = model if compile_backend is None else tg.torch_compile(model, backend=compile_backend, fullgraph=True,
                                                                      dynamic=False)
    return tg.Models(model, compiled, compiled)


def quiet(*args, **kwargs):
    pass


def test_warmup_restores_weights_and_optimizer_state(tiny_dataset, tmp_path):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, WARMUP_STEPS=3))
    models = models_for(hp)
    initial = {k: v.clone() for k, v in models.raw.state_dict().items()}
    optimizers = tg.build_optimizers(models.raw, hp, CPU)
    tg.compile_warmup_and_restore(models, optimizers, hp, CPU, log=quiet)
    assert all(torch.equal(initial[k], v) for k, v in models.raw.state_dict().items())
    assert all(len(opt.state) == 0 for opt in optimizers)
    # ...and a real step does move the weights.
    loader = tg.TrainLoader(str(tiny_dataset / "fineweb_train_*.bin"), CPU, hp.train_batch_tokens)
    tg.train_step(models.train, optimizers, loader, hp, CPU, 0, 1.0, tg.stage_at(0.0, hp))
    assert not all(torch.equal(initial[k], v) for k, v in models.raw.state_dict().items())


def test_training_never_reads_validation_shards(tiny_dataset, tmp_path, monkeypatch):
    """Every shard the training loop opens is a train shard; val is read once, before training."""
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, ITERATIONS=3, VAL_LOSS_EVERY=0))
    opened = []
    real = tg.shard_array
    monkeypatch.setattr(tg, "shard_array", lambda p: opened.append(str(p)) or real(p))
    val = tg.load_validation(hp, CPU, log=quiet)
    opened.clear()
    models = models_for(hp)
    tg.train(models, tg.build_optimizers(models.raw, hp, CPU), val, hp, CPU, log=quiet)
    assert opened and all("fineweb_train_" in p for p in opened)


def test_the_compiler_loads_at_the_first_compile_with_our_settings():
    """Importing torch._dynamo takes 2 s that a run which never compiles (--help, a startup error) does not pay;
    torch_compile sets #1855's recompile limit and distinct symbols for equal sizes before it compiles."""
    imported = subprocess.run([sys.executable, "-c", "import sys, train_gpt; print('torch._dynamo' in sys.modules)"],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
    assert imported.stdout.strip() == "False", imported.stderr[-2000:]
    with torch._dynamo.config.patch(cache_size_limit=8), torch.fx.experimental._config.patch(use_duck_shape=True):
        tg.torch_compile(tg.rms_norm)  # torch's defaults before it
        assert torch._dynamo.config.cache_size_limit == 64 and torch.fx.experimental._config.use_duck_shape is False


@pytest.mark.parametrize("rows_by_doc", [0, 1])
def test_plan_switches_mid_run_without_recompiling(rows_by_doc, tiny_dataset, tmp_path):
    """Looping switches on at 50% of ITERATIONS; warm-up has built the graphs of both plans and of the
    eval forward (rows, or top.env's one flat row), so the timed loop builds none (dynamo's eager backend: same
    guards, no codegen)."""
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, NUM_LAYERS=3, NUM_LOOPS=1, LOOP_START=1,
                                              LOOP_END=1, ENABLE_LOOPING_AT=0.5, ITERATIONS=6, WARMUP_STEPS=1,
                                              VAL_LOSS_EVERY=3, EVAL_ROWS_BY_DOC=rows_by_doc))
    torch._dynamo.reset()
    models = models_for(hp, compile_backend="eager")
    optimizers = tg.build_optimizers(models.raw, hp, CPU)
    lines = []
    tg.compile_warmup_and_restore(models, optimizers, hp, CPU, log=quiet)
    before = tg.compiled_graphs()
    val = tg.load_validation(hp, CPU, log=quiet)
    result = tg.train(models, optimizers, val, hp, CPU, log=lambda msg, **k: lines.append(msg))
    assert result.switches == [3]
    assert any(line.startswith("layer_loop:enabled step:3 frac:0.500 encoder:[0, 1] decoder:[1, 2]") for line in lines)
    assert before >= 3 and tg.compiled_graphs() == before


def test_context_length_schedule_switches_spans_without_recompiling(tiny_dataset, tmp_path):
    """#2014's TRAIN_SEQ_SCHEDULE through the same stages as looping: segments of 8 tokens until 50%, then
    TRAIN_SEQ_LEN=32; looping from 75%. Warm-up builds all three stages, the timed loop builds nothing."""
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, NUM_LAYERS=3, NUM_LOOPS=1, LOOP_START=1,
                                              LOOP_END=1, ENABLE_LOOPING_AT=0.75, ITERATIONS=8, WARMUP_STEPS=1,
                                              TRAIN_SEQ_SCHEDULE="8@0.5"))
    assert tg.schedule_stages(hp) == [tg.Stage(0, 8), tg.Stage(0, 32), tg.Stage(1, 32)]
    torch._dynamo.reset()
    models = models_for(hp, compile_backend="eager")
    optimizers = tg.build_optimizers(models.raw, hp, CPU)
    lines = []
    tg.compile_warmup_and_restore(models, optimizers, hp, CPU, log=lambda msg, **k: lines.append(msg))
    assert [line for line in lines if line.startswith("warmup_step")] == [
        "warmup_step:1/1 plan:0 span:8", "warmup_step:1/1 plan:0 span:32", "warmup_step:1/1 plan:1 span:32"]
    before = tg.compiled_graphs()
    result = tg.train(models, optimizers, tg.load_validation(hp, CPU, log=quiet), hp, CPU,
                      log=lambda msg, **k: lines.append(msg))
    assert result.switches == [4, 6]
    assert "seq_len:switched to 32 step:4 frac:0.500" in lines
    assert any(line.startswith("layer_loop:enabled step:6 frac:0.750") for line in lines)
    assert tg.compiled_graphs() == before


def test_shorter_segments_change_the_loss_only_through_attention():
    """A span of 8 cuts a 32-token document into 4 segments: later tokens lose context, the first 8 do not."""
    model = randomized_model({"VOCAB_SIZE": "64", "NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "2",
                              "NUM_KV_HEADS": "1", "TRAIN_SEQ_LEN": "32", "NUM_LOOPS": "0", "ROPE_DIMS": "4",
                              "SMEAR_GATE_ENABLED": "0"})
    with torch.no_grad():
        ids = torch.randint(2, 64, (1, 33), generator=torch.Generator().manual_seed(0))
        full, cut = (model(ids[:, :-1], ids[:, 1:], reduction="none", span=n) for n in (32, 8))
    assert torch.allclose(full[:8], cut[:8], atol=1e-5) and not torch.allclose(full[8:], cut[8:], atol=1e-3)


def test_ema_is_the_exponential_average_of_the_trajectory():
    model = nn.Linear(3, 2)
    hp = tg.Hyperparameters.from_env({"EMA_DECAY": "0.9"})
    average = tg.WeightAverage(model, hp, quiet)
    expected = model.weight.detach().clone()
    for step in range(1, 4):
        with torch.no_grad():
            model.weight.add_(1.0)
        average.update(model, step, 1.0, True)
        expected = 0.9 * expected + 0.1 * model.weight.detach()
    assert torch.allclose(average.average(model)["weight"], expected)


def test_swa_averages_late_full_depth_checkpoints_plus_the_final_weights():
    model = nn.Linear(2, 1, bias=False)
    hp = tg.Hyperparameters.from_env({"EMA_DECAY": "0", "SWA_ENABLED": "1", "SWA_START_FRAC": "0.5", "SWA_EVERY": "2"})
    average = reference.SWA(model, hp, quiet)
    seen = []
    for step, lr_scale, full_depth in [(2, 0.9, True), (4, 0.4, False), (6, 0.4, True), (7, 0.3, True), (8, 0.2, True)]:
        with torch.no_grad():
            model.weight.fill_(float(step))
        average.update(model, step, lr_scale, full_depth)
        seen.append(step)
    # collected: step 6 and step 8 (step 2: LR too high, 4: not full depth, 7: off the SWA_EVERY grid)
    assert torch.allclose(average.average(model)["weight"], torch.full((1, 2), (6 + 8 + 8) / 3))
    lines = []
    empty = reference.SWA(model, hp, lambda msg, **k: lines.append(msg))
    empty.update(model, 2, 0.9, True)
    assert empty.average(model) is None and lines == ["warning: swa collected no checkpoint; the final weights are used"]
