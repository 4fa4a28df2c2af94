"""Resumable checkpoints (#2008's RESUME_*): a run killed after a checkpoint and resumed ends bitwise where the
uninterrupted run ends, on one rank and on two (sharded Muon momenta); a save killed midway or hitting a full
disk leaves the previous checkpoint loadable; a resume under other training knobs or another world size fails
with one line."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_gpt as tg
import train_gpt_longrun as longrun
from conftest import REPO, cpu_runtime, run_script, tiny_env
from test_faults import one_line_error

CPU = cpu_runtime()
CRC = r"trained_weights_crc32:(\w+)"
# 24 steps of a 3-block model whose middle block loops from step 12 on; EMA on; a fractional warm-down. The
# schedule follows steps (no cap), so two runs can be compared step by step whatever the machine's speed.
RUN = dict(NUM_LAYERS=3, NUM_LOOPS=1, LOOP_START=1, LOOP_END=1, ENABLE_LOOPING_AT=0.5, ITERATIONS=24,
           EMA_DECAY=0.9, WARMDOWN_FRAC=0.3)


def quiet(*args, **kwargs):
    pass


def losses(text: str) -> dict[int, str]:
    return {int(s): v for s, v in re.findall(r"step:(\d+)/\d+ train_loss:(\S+)", text)}


def killed_after_first_checkpoint(env: dict, resume_dir) -> int:
    """Start the run, kill -9 it as soon as a checkpoint's manifest exists; returns the checkpoint's step."""
    full_env = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}, **env,
                "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train_gpt.py")], env=full_env, cwd=env["ARTIFACT_DIR"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = resume_dir / longrun.RESUME_MANIFEST
    deadline = time.time() + 120
    while not manifest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    return json.loads(manifest.read_text())["step"]


def test_a_run_killed_after_a_checkpoint_resumes_bitwise(tiny_dataset, tmp_path, numeric_mode):
    plain = run_script(tiny_env(tiny_dataset, tmp_path / "plain", **RUN, AUTOCAST=numeric_mode))
    assert plain.returncode == 0, plain.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    saving = tiny_env(tiny_dataset, killed_dir, **RUN, AUTOCAST=numeric_mode, RESUME_ENABLED=1,
                      RESUME_SAVE_MINUTES="0.002")
    step = killed_after_first_checkpoint(saving, killed_dir / "resume")
    resumed = run_script(tiny_env(tiny_dataset, tmp_path / "resumed", **RUN, AUTOCAST=numeric_mode,
                                  RESUME_FROM=killed_dir / "resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resume:restored step:{step} " in resumed.stdout
    assert 0 < step < 12, "the checkpoint must come before looping switches on"
    later = losses(resumed.stdout)
    assert sorted(later) == list(range(step + 1, 25))  # training went on from the checkpoint's step
    assert later == {s: v for s, v in losses(plain.stdout).items() if s > step}
    assert "layer_loop:enabled step:12 " in resumed.stdout and "plan_switches:12 " in resumed.stdout
    assert re.search(CRC, resumed.stdout).group(1) == re.search(CRC, plain.stdout).group(1)
    assert re.findall(r"final_\w+_exact .*", resumed.stdout) == re.findall(r"final_\w+_exact .*", plain.stdout)


def test_two_ranks_resume_bitwise_and_keep_the_last_checkpoints(tiny_dataset, tmp_path):
    """Each rank holds the Muon momenta of the matrices it orthogonalizes: rank 1's file carries them."""
    run = dict(RUN, ITERATIONS=24, ENABLE_LOOPING_AT=0.6)  # looping from step 15
    # saves at fixed steps, not training minutes: a slow step on a busy machine cannot merge two saves
    saving = run_script(tiny_env(tiny_dataset, tmp_path / "a", **run, RESUME_ENABLED=1, RESUME_KEEP_LAST=2,
                                 RESUME_SAVE_STEPS="3,6,9,12"), nproc=2)
    assert saving.returncode == 0, saving.stderr[-2000:]
    resume_dir = tmp_path / "a" / "resume"
    manifest = json.loads((resume_dir / longrun.RESUME_MANIFEST).read_text())
    steps = [int(s) for s in re.findall(r"resume:saved step:(\d+)", saving.stdout)]
    assert steps == [3, 6, 9, 12] and manifest["step"] == 12 and manifest["world_size"] == 2
    kept = sorted(p.name for p in resume_dir.glob("resume_rank*.pt"))
    assert kept == sorted(f"resume_rank{r}_step{s}.pt" for r in (0, 1) for s in steps[-2:])
    rank1 = torch.load(resume_dir / manifest["rank_files"]["1"], weights_only=True)
    assert "model" not in rank1 and len(rank1["muon"]["state"]) > 0  # its own momenta, no second weight copy
    resumed = run_script(tiny_env(tiny_dataset, tmp_path / "b", **run, RESUME_FROM=resume_dir), nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resume:restored step:{steps[-1]} " in resumed.stdout
    crcs = set(re.findall(CRC, resumed.stdout))
    assert len(crcs) == 1 and crcs == set(re.findall(CRC, saving.stdout))


# --- in process: the save and load functions themselves ----------------------------------------------------

def tiny_training(tiny_dataset, tmp_path, rt=CPU, **env):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, RESUME_ENABLED=1,
                                              RESUME_SAVE_MINUTES="1", RESUME_FROM=env.pop("RESUME_FROM", ""),
                                              AUTOCAST="bf16" if rt.autocast else "off", **env))
    torch.manual_seed(hp.seed)
    model = tg.build_model(hp, rt.device)
    models = tg.Models(model, model, model)
    return dict(hp=hp, rt=rt, models=models, optimizers=tg.build_optimizers(model, hp, rt),
                loader=tg.TrainLoader(tg.train_pattern(hp), rt, hp.train_batch_tokens),
                average=tg.WeightAverage(model, hp, quiet),
                loop=tg.LoopState(tg.stage_at(0.0, hp)))


def train_steps(t: dict, n: int) -> None:
    for _ in range(n):
        tg.train_step(t["models"].train, t["optimizers"], t["loader"], t["hp"], t["rt"], t["loop"].step, 1.0,
                      t["loop"].stage)
        t["loop"].step += 1
        t["average"].update(t["models"].raw, t["loop"].step, 1.0, True)


def save(t: dict, log=quiet) -> None:
    longrun.save_checkpoint(t["models"], t["optimizers"], t["average"], t["loader"], t["loop"], t["hp"], t["rt"],
                            log)


def restore(t: dict) -> tg.LoopState:
    checkpoint = longrun.read_checkpoint(t["hp"], t["rt"])
    return longrun.restore_checkpoint(checkpoint, t["models"], t["optimizers"], t["average"], t["loader"], t["rt"],
                                      quiet)


def tensors_of(t: dict) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint must bring back, by a name."""
    out = {f"model.{k}": v for k, v in t["models"].raw.state_dict().items()}
    out.update({f"average.{k}": v for k, v in t["average"].sum.items()})
    for i, opt in enumerate(t["optimizers"]):
        for j, state in opt.state_dict()["state"].items():
            out.update({f"opt{i}.{j}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
    out.update({f"rng.{k}": v for k, v in longrun.rng_state(t["rt"]).items()})
    return {k: v.detach().clone() for k, v in out.items()}


GPU = pytest.param(tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cuda"), autocast=True),
                   marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
                   id="cuda")


@pytest.mark.parametrize("rt", [pytest.param(CPU, id="cpu"), GPU])
def test_a_restore_brings_back_every_tensor_exactly(tiny_dataset, tmp_path, rt):
    """Weights, EMA sums, every optimizer state (on CUDA, fused AdamW keeps its step on the device) and the
    device's RNG come back bit for bit into a fresh model, and training goes on from them."""
    a = tiny_training(tiny_dataset, tmp_path, rt)
    train_steps(a, 2)
    save(a)
    saved = tensors_of(a)
    b = tiny_training(tiny_dataset, tmp_path, rt, SEED=7, RESUME_FROM=tmp_path / "resume")
    torch.rand(100, device=rt.device)
    b["loop"] = restore(b)
    restored = tensors_of(b)
    assert sorted(restored) == sorted(saved) and any(k.startswith("opt") for k in saved)
    for name, tensor in saved.items():
        assert restored[name].device == tensor.device and torch.equal(restored[name], tensor), name
    train_steps(b, 1)
    assert all(torch.isfinite(p).all() for p in b["models"].raw.parameters())


def test_restore_brings_back_every_state_and_the_next_steps_match(tiny_dataset, tmp_path):
    a = tiny_training(tiny_dataset, tmp_path)
    train_steps(a, 3)
    a["loop"].train_ms = 1234.5
    save(a)
    draw = torch.rand(4)  # the RNG right after the save
    train_steps(a, 2)
    b = tiny_training(tiny_dataset, tmp_path, SEED=7, RESUME_FROM=tmp_path / "resume")
    torch.rand(100)  # b's RNG has moved elsewhere: the restore must bring a's back
    loop = b["loop"] = restore(b)
    assert torch.equal(torch.rand(4), draw)
    assert (loop.step, loop.train_ms, loop.stage) == (3, 1234.5, a["loop"].stage)
    train_steps(b, 2)
    assert tg.weights_crc32(a["models"].raw) == tg.weights_crc32(b["models"].raw)
    assert all(torch.equal(a["average"].sum[k], b["average"].sum[k]) for k in a["average"].sum)
    assert a["loader"].state_dict() == b["loader"].state_dict()


KILL_DURING_SAVE = """
import json, os, signal, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests", sys.argv[1] + "/data"]
from pathlib import Path
import test_resume as t, train_gpt as tg
run = t.tiny_training(Path(sys.argv[2]), Path(sys.argv[3]))
t.train_steps(run, 2)
t.save(run)
print(tg.weights_crc32(run["models"].raw), flush=True)
t.train_steps(run, 1)
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed with the new rank file not yet renamed
t.save(run)
"""


def test_kill_9_during_a_save_leaves_the_previous_checkpoint_loadable(tiny_dataset, tmp_path):
    result = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(REPO), str(tiny_dataset), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    resume_dir = tmp_path / "resume"
    assert json.loads((resume_dir / longrun.RESUME_MANIFEST).read_text())["step"] == 2
    assert len(list(resume_dir.glob(".resume_rank0_step3.pt.*.tmp"))) == 1  # the killed write's temp
    b = tiny_training(tiny_dataset, tmp_path, RESUME_FROM=resume_dir)
    b["loop"] = restore(b)
    assert b["loop"].step == 2 and tg.weights_crc32(b["models"].raw) == int(result.stdout.split()[0])
    train_steps(b, 1)
    save(b)  # the next save clears the dead writer's temp
    assert not list(resume_dir.glob(".*.tmp"))
    assert json.loads((resume_dir / longrun.RESUME_MANIFEST).read_text())["step"] == 3


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_training_goes_on(tiny_dataset, tmp_path,
                                                                                       monkeypatch):
    a = tiny_training(tiny_dataset, tmp_path)
    train_steps(a, 1)
    save(a)
    train_steps(a, 1)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tg.os, "fsync", full_disk)
    lines = []
    save(a, log=lambda msg, **k: lines.append(msg))
    assert lines == ["warning: resume checkpoint of step 2 not written ([Errno 28] No space left on device); the "
                     "previous one is untouched"]
    monkeypatch.undo()
    resume_dir = tmp_path / "resume"
    assert sorted(p.name for p in resume_dir.iterdir()) == [longrun.RESUME_MANIFEST, "resume_rank0_step1.pt"]
    assert restore(tiny_training(tiny_dataset, tmp_path, RESUME_FROM=resume_dir)).step == 1


@pytest.mark.parametrize("failing", ["write_manifest", "prune_checkpoints"])
def test_a_failed_manifest_write_or_delete_is_one_warning_and_the_manifest_names_a_whole_checkpoint(
        tiny_dataset, tmp_path, monkeypatch, failing):
    a = tiny_training(tiny_dataset, tmp_path, RESUME_KEEP_LAST=1)
    train_steps(a, 1)
    save(a)
    train_steps(a, 1)

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(longrun, failing, denied)
    lines = []
    save(a, log=lambda msg, **k: lines.append(msg))
    monkeypatch.undo()
    if failing == "write_manifest":  # step 2's file is on disk, unnamed: the manifest still names step 1
        assert lines == [("warning: resume checkpoint of step 2 not written ([Errno 13] Permission denied); the "
                          "previous one is untouched")]
    else:  # the manifest already names step 2: only step 1's file stays behind
        assert lines[0] == "warning: checkpoints beyond RESUME_KEEP_LAST not all deleted ([Errno 13] Permission denied)"
        assert lines[1].startswith("resume:saved step:2 ") and len(lines) == 2
    resume_dir = tmp_path / "resume"
    assert sorted(p.name for p in resume_dir.glob("*.pt")) == ["resume_rank0_step1.pt", "resume_rank0_step2.pt"]
    named = 1 if failing == "write_manifest" else 2
    assert restore(tiny_training(tiny_dataset, tmp_path, RESUME_FROM=resume_dir)).step == named


def test_a_milestone_export_over_the_cap_is_reported_and_training_goes_on(tiny_dataset, tmp_path, monkeypatch):
    a = tiny_training(tiny_dataset, tmp_path, EXPORT_MINUTES="1")
    train_steps(a, 2)
    live = tg.weights_crc32(a["models"].raw)
    monkeypatch.setattr(tg, "ARTIFACT_CAP_BYTES", 1000)
    lines = []
    longrun.periodic_export(a["models"], a["average"], None, a["hp"], CPU, lambda msg, **k: lines.append(msg), 1.0, 2,
                            60_000.0)
    record = json.loads((tmp_path / "exports.jsonl").read_text())
    assert record["error"].startswith("artifact is ") and "over the 1000-byte cap" in record["error"]
    assert record["step"] == 2 and "artifact" not in record and not list(tmp_path.glob("export_1min/*.ptz"))
    assert lines[-1].startswith("export:1min step:2 ") and f"error:{record['error']}" in lines[-1]
    assert tg.weights_crc32(a["models"].raw) == live  # the live weights came back: training goes on


def test_the_fingerprint_holds_training_knobs_and_not_the_continuations():
    base = longrun.training_fingerprint(tg.Hyperparameters.from_env({}))
    same = {"MAX_WALLCLOCK_SECONDS": "21600", "SCHEDULE_HORIZON_SECONDS": "21600", "ITERATIONS": "100000",
            "RUN_ID": "x", "ARTIFACT_DIR": "/x", "DATA_PATH": "/pod/data", "EXPORT_MINUTES": "60",
            "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "100", "RESUME_KEEP_LAST": "1", "TTT_LORA_RANK": "96",
            "MATRIX_BITS": "5", "COMPRESSOR": "zstd", "COMPILE": "0", "AUTOCAST": "off", "ATTN_BACKEND": "sdpa"}
    for name, value in same.items():
        assert longrun.training_fingerprint(tg.Hyperparameters.from_env({name: value})) == base, name
    changed = {"SEED": "1", "MATRIX_LR": "0.03", "EMA_DECAY": "0.99", "NUM_LAYERS": "9", "TRAIN_SEQ_LEN": "1024",
               "TRAIN_BATCH_TOKENS": "524288", "ENABLE_LOOPING_AT": "0.5", "WARMDOWN_FRAC": "0.7",
               "MUON_WD": "0.1", "GPTQ_RESERVE_SECONDS": "12", "VOCAB_SIZE": "1024", "SMEAR_GATE_ENABLED": "0"}
    for name, value in changed.items():
        assert longrun.training_fingerprint(tg.Hyperparameters.from_env({name: value})) != base, name


@pytest.fixture
def checkpoint_dir(tiny_dataset, tmp_path):
    a = tiny_training(tiny_dataset, tmp_path / "saved")
    train_steps(a, 1)
    save(a)
    return tmp_path / "saved" / "resume"


def test_a_resume_under_other_knobs_fails_with_one_line(tiny_dataset, tmp_path, checkpoint_dir):
    env = tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, RESUME_FROM=checkpoint_dir, MATRIX_LR=0.05, SEED=8)
    one_line_error(run_script(env), "RESUME_FROM: the checkpoint was trained with MATRIX_LR=0.026 (this run: 0.05), "
                   "SEED=7 (this run: 8); a continuation keeps every training knob")


def test_a_resume_on_another_world_size_fails_with_one_line(tiny_dataset, tmp_path, checkpoint_dir):
    result = run_script(tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, RESUME_FROM=checkpoint_dir), nproc=2)
    assert result.returncode != 0
    last = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    line = "error: RESUME_FROM: the checkpoint was written by 1 ranks and this run has 2: resume on 1"
    assert any(line in text for text in last[-4:]), last[-8:]  # torchrun's summary shows it last


def test_damaged_or_missing_checkpoints_fail_with_one_line(tiny_dataset, tmp_path, checkpoint_dir):
    hp = lambda path: tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9,  # noqa: E731
                                                           RESUME_FROM=path))
    with pytest.raises(tg.DataError, match="RESUME_FROM: no checkpoint manifest at"):
        longrun.read_checkpoint(hp(tmp_path / "nowhere"), CPU)
    rank_file = checkpoint_dir / "resume_rank0_step1.pt"
    rank_file.write_bytes(rank_file.read_bytes()[:1000])
    with pytest.raises(tg.DataError, match="resume_rank0_step1.pt does not match the sha256 its manifest records"):
        longrun.read_checkpoint(hp(checkpoint_dir / longrun.RESUME_MANIFEST), CPU)
    manifest = json.loads((checkpoint_dir / longrun.RESUME_MANIFEST).read_text())
    del manifest["sha256"]  # a manifest written before checksums: the load itself fails plainly
    (checkpoint_dir / longrun.RESUME_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(tg.DataError, match="resume_rank0_step1.pt is damaged"):
        longrun.read_checkpoint(hp(checkpoint_dir / longrun.RESUME_MANIFEST), CPU)
    rank_file.unlink()
    with pytest.raises(tg.DataError, match="listed in the manifest, is missing"):
        longrun.read_checkpoint(hp(checkpoint_dir), CPU)


def test_malformed_manifests_and_foreign_rank_files_fail_with_one_line(tiny_dataset, tmp_path, checkpoint_dir):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, RESUME_FROM=checkpoint_dir))
    manifest_path, rank_file = checkpoint_dir / longrun.RESUME_MANIFEST, checkpoint_dir / "resume_rank0_step1.pt"
    manifest = json.loads(manifest_path.read_text())
    cases = [("{not json", r"resume_manifest.json is not a checkpoint manifest \(JSONDecodeError: "),
             (json.dumps({k: v for k, v in manifest.items() if k != "fingerprint"}),
              r"is not a checkpoint manifest \(KeyError: 'fingerprint'\)"),
             ("[]", r"is not a checkpoint manifest \(TypeError: ")]
    for text, match in cases:
        manifest_path.write_text(text)
        with pytest.raises(tg.DataError, match=match):
            longrun.read_checkpoint(hp, CPU)
    manifest_path.write_text(json.dumps({**manifest, "sha256": {}}))  # past the checksum: what the file holds
    torch.save({**torch.load(rank_file, weights_only=True), "rank": 1}, rank_file)
    with pytest.raises(tg.DataError, match="resume_rank0_step1.pt is not rank 0's checkpoint of format 1"):
        longrun.read_checkpoint(hp, CPU)
    rank_file.unlink()
    rank_file.mkdir()
    with pytest.raises(tg.DataError, match=r"resume_rank0_step1.pt cannot be read \(Is a directory\)"):
        longrun.read_checkpoint(hp, CPU)


def test_a_checkpoint_with_flipped_bytes_is_refused_by_its_sha256(tiny_dataset, tmp_path, checkpoint_dir):
    rank_file = checkpoint_dir / "resume_rank0_step1.pt"
    data = bytearray(rank_file.read_bytes())
    weights = torch.load(rank_file, weights_only=True)["model"]
    values = weights["tok_emb.weight"].view(torch.uint8).numpy().tobytes()
    start = bytes(data).find(values[:64])  # inside the embedding's values
    assert start > 0
    data[start + 100:start + 110] = bytes(b ^ 0xFF for b in data[start + 100:start + 110])
    rank_file.write_bytes(bytes(data))
    flipped = torch.load(rank_file, weights_only=True)["model"]  # it loads: without the sha256, other weights
    assert not torch.equal(flipped["tok_emb.weight"], weights["tok_emb.weight"])
    assert json.loads((checkpoint_dir / longrun.RESUME_MANIFEST).read_text())["sha256"].keys() == {"0"}
    env = tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, RESUME_FROM=checkpoint_dir)
    one_line_error(run_script(env), f"RESUME_FROM: {rank_file} does not match the sha256 its manifest records")


def test_a_resume_on_other_train_shards_fails_with_one_line(tiny_dataset, tmp_path, checkpoint_dir):
    state = torch.load(checkpoint_dir / "resume_rank0_step1.pt", weights_only=True)["loader"]
    one_shard = tg.shard_paths(str(tiny_dataset / "fineweb_train_000000.bin"))
    with pytest.raises(tg.DataError, match="the checkpoint read 2 train shards .* this run has 1 .*same shards"):
        longrun.check_same_shards(state["shards"], one_shard)
    fewer = tmp_path / "fewer"  # DATA_PATH may change on a continuation; the shards it holds may not
    fewer.mkdir()
    (fewer / "fineweb_train_000000.bin").write_bytes((tiny_dataset / "fineweb_train_000000.bin").read_bytes())
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, EMA_DECAY=0.9, DATA_PATH=fewer,
                                              RESUME_FROM=checkpoint_dir))
    with pytest.raises(tg.DataError, match="the checkpoint read 2 train shards .* this run has 1 .*same shards"):
        longrun.read_checkpoint(hp, CPU)  # at startup, before any warm-up


def test_checkpoint_cost_script_measures_the_files(tmp_path):
    env = {**os.environ, "NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
           "VOCAB_SIZE": "320", "NUM_LOOPS": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "checkpoint_cost.py"), "--world-size", "4"],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    params, total = map(int, re.search(r"params:(\d+) rank_file_bytes\(1 rank\):(\d+)", result.stdout).groups())
    rank0, other = map(int, re.search(r"rank 0 ~(\d+) bytes, each other rank ~(\d+) bytes", result.stdout).groups())
    assert total > 2 * 4 * params  # at least the fp32 weights and the fp32 EMA sums
    assert 0 < other < rank0 and abs(rank0 + 3 * other - total) <= 3
