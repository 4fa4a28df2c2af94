"""scripts/gpu_smoke.sh without a GPU: usage, refusals, the exact torchrun lines of --dry-run, and the
summary parser (scripts/gpu_smoke_summary.py) on a log with train_gpt.py's real line shapes."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_smoke.sh"
SUMMARY = REPO / "scripts" / "gpu_smoke_summary.py"

spec = importlib.util.spec_from_file_location("gpu_smoke_summary", SUMMARY)
summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summary)


def smoke(*args, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU machine
    env.pop("GPTQ_RESERVE_SECONDS", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_help_prints_usage():
    for flag in ("-h", "--help"):
        r = smoke(flag)
        assert r.returncode == 0 and r.stdout.startswith("Usage: bash scripts/gpu_smoke.sh")
        for option in ("--gpus N", "--seconds S", "--skip-tests", "--out DIR", "--dry-run"):
            assert option in r.stdout


def test_refuses_without_cuda_in_one_line(tmp_path):
    r = smoke("--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("gpu_smoke: error: no CUDA GPU on this machine")
    assert r.stdout == "" and not (tmp_path / "out").exists()


def torchrun_line(stdout: str) -> str:
    [line] = [l for l in stdout.splitlines() if "--nproc_per_node=" in l]
    return line


@pytest.mark.parametrize("gpus", [8, 1])
def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, gpus):
    out = tmp_path / "smoke"
    r = smoke("--dry-run", "--gpus", str(gpus), "--out", str(out))
    assert r.returncode == 0, r.stderr
    line = torchrun_line(r.stdout)
    words = line.split()
    assert words[0] == "env" and words[-3:] == ["--standalone", f"--nproc_per_node={gpus}", "train_gpt.py"]
    assert Path(words[-4]).name == "torchrun" or words[-6:-3] == [words[-6], "-m", "torch.distributed.run"]
    for knob in ("DATA_PATH=./data/datasets/synthetic_sp1024",
                 "TOKENIZER_PATH=./data/datasets/synthetic_sp1024/tokenizer.model", "VOCAB_SIZE=1024",
                 "MAX_WALLCLOCK_SECONDS=60", "VAL_LOSS_EVERY=0", "RUN_ID=gpu_smoke", f"ARTIFACT_DIR={out}"):
        assert knob in words, knob
    assert not any(w.startswith(("NUM_LAYERS=", "MODEL_DIM=", "TRAIN_BATCH_TOKENS=")) for w in words)  # defaults
    assert "-m pytest -m gpu -q tests" in r.stdout
    assert f"scripts/gpu_smoke_summary.py {out}/logs/gpu_smoke.txt --console {out}/console.txt" in r.stdout
    assert not out.exists()


def test_dry_run_flags(tmp_path):
    r = smoke("--dry-run", "--gpus=2", "--seconds", "90", "--skip-tests", "--out", "rel/dir", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    words = torchrun_line(r.stdout).split()
    assert "--nproc_per_node=2" in words and "MAX_WALLCLOCK_SECONDS=90" in words
    assert f"ARTIFACT_DIR={tmp_path}/rel/dir" in words  # a relative --out is taken from the caller's directory
    assert "-m pytest" not in r.stdout and "--skip-tests" in r.stdout
    assert not (tmp_path / "rel").exists()


def test_dry_run_without_gpus_flag_shows_eight(tmp_path):
    r = smoke("--dry-run", "--out", str(tmp_path / "o"))
    assert r.returncode == 0 and "--nproc_per_node=8" in torchrun_line(r.stdout)
    assert "no CUDA GPU visible here" in r.stdout


@pytest.mark.parametrize("gpus", ["3", "5", "6", "7", "0", "16", "two"])
def test_a_gpu_count_that_does_not_divide_8_is_refused(gpus):
    for args in (("--gpus", gpus), ("--dry-run", "--gpus", gpus)):
        r = smoke(*args)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith(f"gpu_smoke: error: --gpus {gpus}") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--dry-run", "extra"], "unknown argument 'extra'"),
    (["--gpus"], "--gpus needs a value"),
    (["--dry-run", "--seconds", "8"], "must exceed the GPTQ reserve"),
    (["--dry-run", "--seconds", "1.5"], "whole number of seconds"),
])
def test_bad_arguments_are_refused(args, message):
    r = smoke(*args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_gpu_marker_selects_the_gpu_tests():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                        "tests/test_model.py", "tests/test_gpu.py"], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    selected = [l for l in r.stdout.splitlines() if "::" in l]
    assert any(l.startswith("tests/test_model.py::test_fa3_matches_sdpa_on_the_gpu") for l in selected), r.stdout
    assert any(l.startswith("tests/test_gpu.py::test_default_model_compiles_and_matches_eager") for l in selected)
    assert any(l.startswith("tests/test_gpu.py::test_flex_matches_sdpa_on_the_gpu") for l in selected)
    assert all(l.startswith(("tests/test_gpu.py::", "tests/test_model.py::test_fa3_matches")) for l in selected)
    assert "PytestUnknownMarkWarning" not in r.stdout + r.stderr


# The line shapes train_gpt.py writes (log_header, train loop, export, score); numbers from an imagined run.
FAKE_LOG = '''\
"""train_gpt.py source comes first in the log file"""
        log(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
step:1/2 train_loss:9.9 train_time:1ms step_avg:999.00ms
====================================================================================================
Running Python 3.12.3 PyTorch 2.9.1+cu128 device:cuda
| NVIDIA-SMI 570.00 |
hyperparameters:
  DATA_PATH=./data/datasets/synthetic_sp1024
  MAX_WALLCLOCK_SECONDS=60.0
  VOCAB_SIZE=1024
  MODEL_DIM=512
attention_backend:flex
world_size:8 grad_accum_steps:1 autocast_bf16:1
seed:1337
val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/datasets/synthetic_sp1024/tokenizer.model
val_loader:shards pattern=./data/datasets/synthetic_sp1024/fineweb_val_*.bin tokens:98765 documents:50
val_tokens: 98764
target_tokens: 98764
model_params:32275143
train_loader:dataset:synthetic_sp1024 train_shards:1
gptq:reserving 8s, effective=52000ms
warmup_step:20/20 plan:1
step:1/20000 train_loss:6.9310 train_time:118ms step_avg:118.00ms
step:10/20000 train_loss:5.1234 train_time:1010ms step_avg:101.00ms
layer_loop:enabled step:180 frac:0.351 encoder:[0, 1, 2, 3, 4, 5, 3, 4] decoder:[5, 3, 4, 5, 6, 7, 8, 9, 10]
step:200/20000 train_loss:3.0001 train_time:20500ms step_avg:102.50ms
step:431/20000 val_loss:2.9012 val_bpb:1.2345 train_time:52040ms step_avg:120.74ms
stopping_early: wallclock_cap train_time:52040ms step:431/20000
ema:applying EMA weights
diagnostic pre-quantization post-average val_loss:2.90062356 val_bpb:1.23001234
compile:graphs_before_training:6 graphs_built_while_training:0
peak memory allocated: 40123 MiB reserved: 45678 MiB
Serialized model: 130000000 bytes
GPTQ:collected 67 Hessians in 3.2s
quantize_wallclock:4.1s
serialize_wallclock:1.0s
Code size (uncompressed): 102216 bytes
Code size (compressed): 26033 bytes
Code size: 26033 bytes
Serialized model int6+brotli: 13024567 bytes (raw:72000000 ratio:5.53x)
Total submission size int6+brotli: 13050600 bytes
budget:attn tensors:44 params:11534336 bytes:4400000 bits_per_param:3.052
budget:matrices params:31719424 bits_per_param:3.281
budget:total code:26033 model:13024567 total:13050600 cap:16000000 headroom:2949400
artifact_production_wallclock:9.8s
final_int6_brotli_roundtrip val_loss:2.9100 val_bpb:1.2400 eval_time:812ms
final_int6_brotli_roundtrip_exact val_loss:2.91003456 val_bpb:1.23998765
beginning TTT eval timer
ttt: docs:50 batches:1 world_size:8 phase_docs:[17, 34, 50]
ttp: b0/1 docs:50 dl:2048-12 rl:2.8800 rb:1.2270 t:3.0s
ttpp: phase:1/3 docs:17 t:4.1s
quantized_ttt_phased val_loss:2.8800 val_bpb:1.2270 eval_time:12345ms
quantized_ttt_phased_exact val_loss:2.88001234 val_bpb:1.22701234
eval_timers: decompress:0.4s roundtrip:0.8s ngram_hints:0.0s eval_warmup:1.2s ttt_scoring_1:3.0s ttt_global_sgd_1:1.1s ttt:12.3s total:15.1s
total_eval_time:15.1s
'''
FAKE_CONSOLE = "".join(f"rank_summary rank:{r}/8 stop_step:431 plan_switches:180 val_bpb:1.23998765 "
                       f"trained_weights_crc32:0badf00d\n" for r in range(8))


def test_summary_parser_extracts_the_numbers():
    s = summary.parse(FAKE_LOG, FAKE_CONSOLE, target_seconds=600)
    assert s["step_avg_ms"] == 120.74 and s["steps"] == 431 and s["train_time_ms"] == 52040
    assert s["world_size"] == 8 and s["attention_backend"] == "flex" and s["model_params"] == 32275143
    assert s["peak_allocated_mib"] == 40123 and s["peak_reserved_mib"] == 45678  # not the source line's template
    assert s["graphs_before_training"] == 6 and s["graphs_built_while_training"] == 0
    assert s["export"] == "int6+brotli" and s["submission_bytes"] == 13050600
    assert s["headroom_bytes"] == 2949400 and s["cap_bytes"] == 16000000 and s["code_bytes"] == 26033
    assert s["final_label"] == "int6_brotli" and s["final_val_bpb"] == 1.23998765 and s["final_eval_ms"] == 812
    assert s["ttt_label"] == "ttt_phased" and s["ttt_val_bpb"] == 1.22701234 and s["ttt_val_loss"] == 2.88001234
    assert s["ttt_seconds"] == 12.3 and s["total_eval_seconds"] == 15.1  # the TTT leg, not ttt_scoring_1
    assert s["loop_on_step"] == 180 and s["gptq_reserve_s"] == 8 and s["matrix_bits_per_param"] == 3.281
    assert s["projected_steps"] == int(1000 * (600 - 8) / 120.74) == 4903
    assert "ideal_8gpu_step_avg_ms" not in s  # already 8 GPUs
    assert s["vocab_size"] == 1024 and s["model_dim"] == 512
    assert s["ranks_reported"] == s["ranks_expected"] == 8 and s["ranks_same_stop_step"] and s["ranks_same_weights"]
    assert s["finished"] and s["warnings"] == [] and s["errors"] == []


def test_summary_of_a_one_gpu_run_projects_ideal_scaling():
    log = FAKE_LOG.replace("world_size:8 grad_accum_steps:1", "world_size:1 grad_accum_steps:8")
    log = log.replace("step_avg:120.74ms", "step_avg:960.00ms")
    s = summary.parse(log, "", target_seconds=600)
    assert s["projected_steps"] == 616 and s["ideal_8gpu_step_avg_ms"] == 120.0
    assert s["ideal_8gpu_projected_steps"] == 4933 and "ranks_reported" not in s


def test_summary_without_ttt_or_with_lora_only_on_a_sample():
    plain = "".join(l for l in FAKE_LOG.splitlines(True) if not l.startswith(("quantized_", "eval_timers:")))
    plain = plain.replace("total_eval_time:15.1s", "total_eval_time:1.3s")
    s = summary.parse(plain, "", target_seconds=600)
    assert s["finished"] and s["total_eval_seconds"] == 1.3 and not {"ttt_label", "ttt_val_bpb", "ttt_seconds"} & set(s)
    assert "ttt:" not in summary.format_summary(s) and "1.3 s in all" in summary.format_summary(s)
    lora = FAKE_LOG.replace("quantized_ttt_phased", "quantized_ttt_lora_partial")
    s = summary.parse(lora, "", target_seconds=600)
    assert (s["ttt_label"], s["ttt_val_bpb"]) == ("ttt_lora_partial", 1.22701234)
    assert "quantized_ttt_lora_partial_exact val_bpb 1.22701234" in summary.format_summary(s)


def test_summary_cli(tmp_path):
    log, console = tmp_path / "gpu_smoke.txt", tmp_path / "console.txt"
    log.write_text(FAKE_LOG.replace("graphs_built_while_training:0", "graphs_built_while_training:2")
                   .replace("artifact_production", "warning: the Hessian pass took 9.1s > GPTQ_RESERVE_SECONDS=8\n"
                            "artifact_production"))
    console.write_text(FAKE_CONSOLE.replace("rank:7/8 stop_step:431", "rank:7/8 stop_step:430"))
    r = subprocess.run([sys.executable, str(SUMMARY), str(log), "--console", str(console)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "step_avg 120.74 ms/step" in out and "431 in 52040 ms" in out
    assert "peak allocated 40123 MiB, reserved 45678 MiB" in out
    assert "graphs_built_while_training 2  <- RECOMPILED" in out
    assert "total submission 13,050,600 bytes (13.05 MB)" in out and "headroom 2,949,400 bytes (2.95 MB)" in out
    assert "final_int6_brotli_roundtrip_exact val_bpb 1.23998765" in out
    assert "quantized_ttt_phased_exact val_bpb 1.22701234 (TTT timer 12.3 s)" in out and "15.1 s in all" in out
    assert "makes ~4,903 steps" in out and "same stop step: NO" in out
    assert "warning: the Hessian pass took 9.1s" in out and "8 of 8 reported" in out
    assert "embedding has 3,670,016 more parameters" in out


def test_summary_of_an_unfinished_run_fails(tmp_path):
    log = tmp_path / "gpu_smoke.txt"
    log.write_text(FAKE_LOG.split("ema:applying")[0] + "error: artifact is 16000100 bytes, over the cap\n")
    r = subprocess.run([sys.executable, str(SUMMARY), str(log)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "the run did not finish" in r.stdout and "error: artifact is 16000100 bytes" in r.stdout
    missing = subprocess.run([sys.executable, str(SUMMARY), str(tmp_path / "none.txt")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "no log file" in missing.stderr


def fake_gpu_repo(tmp_path: Path, torchrun_rc: int = 0, visible: int = 8) -> tuple[Path, dict]:
    """A copy of the two scripts beside stubs: nvidia-smi, a .venv python that sees `visible` GPUs and passes the
    GPU tests, and a torchrun that writes FAKE_LOG: the whole non-dry-run path, without a GPU."""
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    for script in (SCRIPT, SUMMARY):
        (repo / "scripts" / script.name).write_text(script.read_text())
    (repo / "data" / "datasets" / "synthetic_sp1024").mkdir(parents=True)
    (repo / "data" / "datasets" / "synthetic_sp1024" / "floor.json").write_text("{}")
    (repo / "fake_log.txt").write_text(FAKE_LOG)
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    bin_dir.mkdir()
    stubs = {
        bin_dir / "nvidia-smi": "echo 'GPU 0: NVIDIA H100'",
        venv / "python": f'''case "$1" in
  -c) echo {visible} ;;
  -m) [ "$2" = pytest ] && echo "gpu tests: $*" && exit 0; exec {sys.executable} "$@" ;;
  *) exec {sys.executable} "$@" ;;
esac''',
        venv / "torchrun": f'''echo "torchrun $* ARTIFACT_DIR=$ARTIFACT_DIR VOCAB_SIZE=$VOCAB_SIZE"
mkdir -p "$ARTIFACT_DIR/logs" && cp fake_log.txt "$ARTIFACT_DIR/logs/$RUN_ID.txt"
echo "rank_summary rank:0/8 stop_step:431 plan_switches:180 val_bpb:1.2 trained_weights_crc32:0badf00d"
exit {torchrun_rc}''',
    }
    for path, body in stubs.items():
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("GPTQ_RESERVE_SECONDS", None)
    return repo, env


def test_full_run_with_stubbed_gpus(tmp_path):
    repo, env = fake_gpu_repo(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--out", str(out)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gpu tests: -m pytest -m gpu -q tests" in r.stdout
    assert f"--standalone --nproc_per_node=8 train_gpt.py ARTIFACT_DIR={out} VOCAB_SIZE=1024" in r.stdout
    assert "step_avg 120.74 ms/step" in r.stdout and "makes ~4,903 steps" in r.stdout
    assert "1 of 8 reported" in r.stdout  # the stub's console, captured to console.txt
    assert (out / "console.txt").is_file() and (out / "pytest.txt").is_file()
    again = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and "already holds a smoke run" in again.stderr


@pytest.mark.parametrize("visible, args, message", [
    (4, ["--gpus", "8"], "--gpus 8 but only 4 CUDA GPU(s) are visible"),
    (6, [], "6 GPUs are visible but the number must divide 8"),
])
def test_gpu_counts_the_machine_cannot_run_are_refused(tmp_path, visible, args, message):
    repo, env = fake_gpu_repo(tmp_path, visible=visible)
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), *args, "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and message in r.stderr and r.stdout == "" and not (tmp_path / "o").exists()


def test_four_visible_gpus_default_to_four(tmp_path):
    repo, env = fake_gpu_repo(tmp_path, visible=4)
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--dry-run"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "--nproc_per_node=4" in torchrun_line(r.stdout) and "showing" not in r.stdout


def test_a_failed_training_run_still_summarizes_and_fails(tmp_path):
    repo, env = fake_gpu_repo(tmp_path, torchrun_rc=3)
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--skip-tests", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "gpu_smoke: the training run failed (exit 3)" in r.stderr
    assert "== gpu_smoke summary ==" in r.stdout and "GPU tests skipped" in r.stdout
