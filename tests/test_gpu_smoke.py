"""scripts/gpu_smoke.sh without a GPU: usage, refusals, the exact commands of --dry-run (tests, the
gpu_bench.py stages, the vocab-8192 run, the default-recipe run, the summaries), the summary parser
(scripts/gpu_smoke_summary.py) on a log and a bench output with train_gpt.py's and gpu_bench.py's real line
shapes, and scripts/gpu_bench.py's CPU paths: its refusals, syncs and ttt at toy sizes, its data."""

import importlib.util
import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpu_bench
import gpu_plan
import shard_io
import train_gpt as tg

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_smoke.sh"
SUMMARY = REPO / "scripts" / "gpu_smoke_summary.py"
BENCH = REPO / "scripts" / "gpu_bench.py"

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
        for option in ("--gpus N", "--seconds S", "--sp8192-seconds S", "--skip-tests", "--skip LIST", "--out DIR",
                       "--dry-run"):
            assert option in r.stdout
        assert "tests, fa3, syncs, ttt, sp8192" in r.stdout


def test_refuses_without_cuda_in_one_line(tmp_path):
    r = smoke("--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("gpu_smoke: error: no CUDA GPU on this machine")
    assert r.stdout == "" and not (tmp_path / "out").exists()


def torchrun_line(stdout: str, run_id: str = "gpu_smoke") -> str:
    """The dry run's torchrun line of one run: the default recipe's, or RUN_ID=gpu_smoke_sp8192's."""
    [line] = [l for l in stdout.splitlines() if "--nproc_per_node=" in l and f"RUN_ID={run_id}" in l.split()]
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
    assert "-m pytest -m gpu -q -n 0 tests" in r.stdout
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


def test_dry_run_shows_the_new_stages_in_order(tmp_path):
    out = tmp_path / "smoke"
    r = smoke("--dry-run", "--gpus", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()

    def at(text: str) -> int:
        [i] = [i for i, l in enumerate(lines) if text in l]
        return i

    fa3, syncs, ttt = (at(f"scripts/gpu_bench.py {cmd}") for cmd in ("fa3", "syncs --steps 5", "ttt"))
    built = (REPO / "data" / "datasets" / "random_sp8192" / "data_info.json").exists()  # generated once
    data = at("random-token sp8192 data already in" if built else "scripts/gpu_bench.py data --out "
              "data/datasets/random_sp8192 --vocab 8192 --shards 3 --shard-tokens 16000000 --val-tokens 131072")
    sp8192, default = (lines.index(torchrun_line(r.stdout, run)) for run in ("gpu_smoke_sp8192", "gpu_smoke"))
    tests, s8192, summary = at("-m pytest -m gpu -q -n 0 tests"), at("--title"), at("--bench")
    assert tests < fa3 < syncs < ttt < data < sp8192 < default < s8192 < summary
    assert r.stdout.count(f"# (output also appended to {out}/bench.txt)") == 3
    words = torchrun_line(r.stdout, "gpu_smoke_sp8192").split()
    for knob in ("DATA_PATH=./data/datasets/random_sp8192", "VOCAB_SIZE=8192",
                 "TOKENIZER_PATH=./data/datasets/random_sp8192/tokenizer.model", "MAX_WALLCLOCK_SECONDS=75",
                 "WARMUP_STEPS=5", "VAL_LOSS_EVERY=0", f"ARTIFACT_DIR={out}/sp8192"):
        assert knob in words, knob
    assert words[-3:] == ["--standalone", "--nproc_per_node=1", "train_gpt.py"]
    assert f"scripts/gpu_smoke_summary.py {out}/sp8192/logs/gpu_smoke_sp8192.txt --console {out}/sp8192/console.txt" \
        in lines[s8192]
    assert lines[summary].endswith(f"--target-seconds 600 --bench {out}/bench.txt")
    assert not out.exists()


def test_dry_run_skips_and_sizes_the_new_stages(tmp_path):
    r = smoke("--dry-run", "--skip", "fa3,ttt", "--skip=sp8192", "--skip-tests", "--sp8192-seconds=90",
              "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "gpu_bench.py fa3" not in r.stdout and "gpu_bench.py ttt" not in r.stdout
    assert "gpu_bench.py syncs --steps 5" in r.stdout and "-m pytest" not in r.stdout
    assert "# (fa3 benchmark skipped: --skip fa3)" in r.stdout
    assert "# (vocab-8192 run skipped: --skip sp8192)" in r.stdout
    assert not {"RUN_ID=gpu_smoke_sp8192", "--title", "gpu_bench.py data"} & set(r.stdout.split())
    r = smoke("--dry-run", "--sp8192-seconds", "90", "--out", str(tmp_path / "o"))
    assert "MAX_WALLCLOCK_SECONDS=90" in torchrun_line(r.stdout, "gpu_smoke_sp8192").split()
    assert "MAX_WALLCLOCK_SECONDS=60" in torchrun_line(r.stdout).split()


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
    (["--dry-run", "--sp8192-seconds", "5"], "--sp8192-seconds 5 must exceed the GPTQ reserve"),
    (["--dry-run", "--sp8192-seconds"], "--sp8192-seconds needs a value"),
    (["--dry-run", "--skip", "fa3,bench"], "--skip bench: no such stage (the stages: tests, fa3, syncs, ttt, sp8192)"),
    (["--dry-run", "--skip"], "--skip needs a value"),
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
warmup_buckets:64,128,192,256 plan:0 span:2048
warmup_step:20/20 plan:0 span:2048
warmup_buckets:64,128,192,256 plan:1 span:2048
warmup_step:20/20 plan:1 span:2048
step:1/20000 train_loss:6.9310 train_time:118ms step_avg:118.00ms
step:10/20000 train_loss:5.1234 train_time:1010ms step_avg:101.00ms
stage_avg: plan:0 span:2048 steps:180 step_avg:100.20ms
layer_loop:enabled step:180 frac:0.351 encoder:[0, 1, 2, 3, 4, 5, 3, 4] decoder:[5, 3, 4, 5, 6, 7, 8, 9, 10]
step:200/20000 train_loss:3.0001 train_time:20500ms step_avg:102.50ms
step:431/20000 val_loss:2.9012 val_bpb:1.2345 train_time:52040ms step_avg:120.74ms
stage_avg: plan:1 span:2048 steps:251 step_avg:135.48ms
stopping_early: wallclock_cap train_time:52040ms step:431/20000
train_loader: shards_opened:3 open_ms:1.2 (its thread) main_thread_wait_ms:0.8 max_wait_ms:0.3 batches:3448
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


def test_summary_parses_the_per_stage_lines():
    s = summary.parse(FAKE_LOG, "", target_seconds=600)
    assert s["stage_avgs"] == [dict(plan=0, span=2048, steps=180, step_avg_ms=100.2),
                               dict(plan=1, span=2048, steps=251, step_avg_ms=135.48)]
    assert s["warmup_buckets"] == [dict(buckets=[64, 128, 192, 256], plan=p, span=2048) for p in (0, 1)]
    assert (s["shard_opens"], s["shard_open_ms"], s["loader_wait_ms"], s["loader_max_wait_ms"], s["loader_batches"]) \
        == (3, 1.2, 0.8, 0.3, 3448)
    assert "train_loader:dataset:synthetic_sp1024" in FAKE_LOG  # the startup line does not match
    text = summary.format_summary(s)
    assert ("stages:      plan 0 span 2048: 180 steps at 100.20 ms/step; plan 1 span 2048: 251 steps at "
            "135.48 ms/step") in text
    assert ("warm-up:     cu_seqlens buckets 64,128,192,256 (plan 0 span 2048); 64,128,192,256 (plan 1 "
            "span 2048)") in text
    assert ("loader:      2 shard switches (3 shard opens, 1.2 ms on its thread); the steps waited 0.8 ms for 3448 "
            "batches, at most 0.3 ms") in text and "late" not in text and "bench" not in s


def test_summary_flags_a_loader_without_switch_or_late():
    log = FAKE_LOG.replace("shards_opened:3 open_ms:1.2 (its thread) main_thread_wait_ms:0.8 max_wait_ms:0.3",
                           "shards_opened:1 open_ms:0.2 main_thread_wait_ms:80.5 max_wait_ms:41.0")
    text = summary.format_summary(summary.parse(log, ""))
    assert "loader:      no shard switch (1 shard opens, 0.2 ms on its thread)" in text
    assert "at most 41.0 ms  <- a batch came > 5 ms late" in text
    new_lines = ("stage_avg", "warmup_buckets", "train_loader: ")
    bare = "".join(l for l in FAKE_LOG.splitlines(True) if not l.startswith(new_lines))
    s = summary.parse(bare, "")
    assert s["stage_avgs"] == s["warmup_buckets"] == [] and "shard_opens" not in s
    assert not {"stages:", "warm-up:", "loader:"} & {l[:8].strip() for l in summary.format_summary(s).splitlines()}


# gpu_bench.py's output on a GPU (numbers imagined): plan 1 shows a stray sync and a recompile
FAKE_BENCH = """\
fa3: tokens:98304 span:2048 heads:8 kv_heads:4 head_dim:64 segments:128 entries_trimmed:129 entries_bucketed:192 \
entries_worst:6194 ms_trimmed:1.210 ms_bucketed:1.230 ms_worst:4.870 bucketed_over_trimmed:1.017 max_abs_diff:0.000
sync: stage:train plan:0 span:2048 at:train_gpt.py:2183 in:step_clock count:5
syncs: plan:0 span:2048 steps:5 syncs:5 per_step:1.000 expected:1 graphs_built:0 step_ms:801.500 detector:cuda
sync: stage:train plan:1 span:2048 at:train_gpt.py:1011 in:next_batch count:2
sync: stage:train plan:1 span:2048 at:train_gpt.py:2183 in:step_clock count:5
syncs: plan:1 span:2048 steps:5 syncs:7 per_step:1.400 expected:1 graphs_built:1 step_ms:1180.250 detector:cuda
gpu_bench: error: a training step should sync once (step_clock) and build no graph
ttt_step: rows:64 width:2048 scored:48 ms:180.500 peak_mib:23456 syncs:0 warmup_s:61.200
ttt_step: rows:1 width:2048 scored:48 ms:9.800 peak_mib:1234 syncs:0 warmup_s:20.100
ttt_projected: ranks:8 docs:50000 batches:782 chunk_steps:51234 fixed_ms:7.090 per_row_ms:2.710 scoring_s:401.200 \
scoring_full_width_s:512.300 global_sgd_s:75.400 total_s:476.600 full_width_total_s:587.700 plan_total_s:470.000 \
budget_s:600.000
"""


def test_summary_parses_every_gpu_bench_line():
    b = summary.parse(FAKE_LOG, "", 600, FAKE_BENCH)["bench"]
    assert b["fa3"]["segments"] == 128 and b["fa3"]["entries_bucketed"] == 192 and b["fa3"]["entries_worst"] == 6194
    assert b["fa3"]["bucketed_over_trimmed"] == 1.017 and b["fa3"]["ms_worst"] == 4.87
    assert b["sync_sites"][0] == {"stage": "train", "plan": 0, "span": 2048, "at": "train_gpt.py:2183",
                                  "in": "step_clock", "count": 5}
    assert [r["syncs"] for r in b["syncs"]] == [5, 7] and b["syncs"][1]["graphs_built"] == 1
    assert b["syncs"][0]["detector"] == "cuda" and b["syncs"][0]["per_step"] == 1.0
    assert [t["rows"] for t in b["ttt_steps"]] == [64, 1] and b["ttt_steps"][0]["peak_mib"] == 23456
    assert b["ttt_projected"]["total_s"] == 476.6 and b["ttt_projected"]["ranks"] == 8
    assert b["errors"] == ["gpu_bench: error: a training step should sync once (step_clock) and build no graph"]
    text = summary.format_summary(summary.parse(FAKE_LOG, "", 600, FAKE_BENCH))
    assert ("fa3:         98,304-token row, span 2048, 128 segments: bucketed cu_seqlens (192 entries) 1.23 ms "
            "fwd+bwd, trimmed (129) 1.21 ms: 1.017x; old worst case (6,194) 4.87 ms") in text and "5% apart" not in text
    assert "syncs:       plan 0 span 2048: 1.0 host syncs a step (5 in 5 steps, 1 expected), 0 graphs built" in text
    assert ("plan 1 span 2048: 1.4 host syncs a step (7 in 5 steps, 1 expected), 1 graphs built, 1180.25 ms/step"
            "  <- NOT") in text
    lines = text.splitlines()
    i = next(i for i, l in enumerate(lines) if "plan 1 span 2048: 1.4" in l)
    assert lines[i + 1 : i + 4] == ["             sync at train_gpt.py:1011 (next_batch) x2",
                                    "             sync at train_gpt.py:2183 (step_clock) x5", lines[i + 3]]
    assert lines[i + 3].startswith("ttt step:")  # each stage's sync lines under it, the other stage's not
    assert "ttt step:    64 rows x 2048 (48 scored): 180.5 ms, peak 23456 MiB, 0 host syncs\n" in text
    assert "ttt step:    1 row x 2048 (48 scored): 9.8 ms, peak 1234 MiB, 0 host syncs\n" in text
    assert ("ttt:         projected ~477 s on the busiest of 8 ranks (scoring 401 s + global SGD 75 s; 588 s if every "
            "step cost a full window; gpu_plan's calibrated 470 s)") in text and "budget" not in text
    assert text.rstrip().endswith("gpu_bench: error: a training step should sync once (step_clock) and build no graph")


def test_summary_flags_bench_results_that_miss():
    bench = FAKE_BENCH.replace("bucketed_over_trimmed:1.017", "bucketed_over_trimmed:1.230").replace(
        "total_s:476.600", "total_s:655.000")
    text = summary.format_summary(summary.parse(FAKE_LOG, "", 600, bench))
    assert "4.87 ms  <- more than 5% apart" in text and "~655 s on the busiest" in text
    assert "<- over the 600 s budget" in text
    ttt_sync = FAKE_BENCH.replace("peak_mib:1234 syncs:0", "peak_mib:1234 syncs:1") + \
        "sync: stage:ttt rows:1 at:train_gpt.py:3050 in:ttt_step count:1\n"
    text = summary.format_summary(summary.parse(FAKE_LOG, "", 600, ttt_sync))
    assert ("1 row x 2048 (48 scored): 9.8 ms, peak 1234 MiB, 1 host syncs  <- a chunk step waited for the GPU\n"
            "             sync at train_gpt.py:3050 (ttt_step) x1\n") in text
    assert "bench" not in summary.parse(FAKE_LOG, "", 600, "")
    odd = summary.format_summary(summary.parse(FAKE_LOG, "", 600, "fa3: tokens:98304 span:2048\n"))
    assert "bench:       unreadable gpu_bench line (KeyError: 'bucketed_over_trimmed')" in odd and "score:" in odd


def test_summary_cli_with_bench_and_title(tmp_path):
    log, bench = tmp_path / "run.txt", tmp_path / "bench.txt"
    log.write_text(FAKE_LOG)
    bench.write_text(FAKE_BENCH)
    r = subprocess.run([sys.executable, str(SUMMARY), str(log), "--bench", str(bench), "--title", "vocab-8192 run"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("== vocab-8192 run ==") and "ttt step:" in r.stdout
    missing = subprocess.run([sys.executable, str(SUMMARY), str(log), "--bench", str(tmp_path / "none.txt"), "--json"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0 and '"bench"' not in missing.stdout and '"stage_avgs"' in missing.stdout


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


BENCH_STUB = f"""import os, pathlib, sys
LINES = {{"fa3": {FAKE_BENCH.splitlines()[0]!r}, "syncs": {chr(10).join(FAKE_BENCH.splitlines()[1:6])!r},
         "ttt": {chr(10).join(FAKE_BENCH.splitlines()[7:])!r}, "data": "data: out:x vocab:8192"}}
cmd = sys.argv[1]
if cmd == "data":
    out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_info.json").write_text("{{}}")
print(LINES[cmd])
sys.exit(int(os.environ.get("FAKE_BENCH_RC_" + cmd.upper(), "0")))
"""


def fake_gpu_repo(tmp_path: Path, torchrun_rc: int = 0, visible: int = 8) -> tuple[Path, dict]:
    """A copy of the two scripts beside stubs: nvidia-smi, a .venv python that sees `visible` GPUs and passes the
    GPU tests, a gpu_bench.py printing FAKE_BENCH's lines, and a torchrun that writes FAKE_LOG: the whole
    non-dry-run path, without a GPU."""
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    for script in (SCRIPT, SUMMARY):
        (repo / "scripts" / script.name).write_text(script.read_text())
    (repo / "scripts" / "gpu_bench.py").write_text(BENCH_STUB)
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
    assert "gpu tests: -m pytest -m gpu -q -n 0 tests" in r.stdout
    assert f"--standalone --nproc_per_node=8 train_gpt.py ARTIFACT_DIR={out} VOCAB_SIZE=1024" in r.stdout
    assert f"--standalone --nproc_per_node=8 train_gpt.py ARTIFACT_DIR={out}/sp8192 VOCAB_SIZE=8192" in r.stdout
    assert "step_avg 120.74 ms/step" in r.stdout and "makes ~4,903 steps" in r.stdout
    assert "1 of 8 reported" in r.stdout  # the stub's console, captured to console.txt
    assert (out / "console.txt").is_file() and (out / "pytest.txt").is_file()
    assert (out / "sp8192" / "console.txt").is_file() and (out / "sp8192" / "logs" / "gpu_smoke_sp8192.txt").is_file()
    order = [r.stdout.index(text) for text in ("[2/7] FA3", "[3/7] host syncs", "[4/7] TTT", "generating the random",
                                               "[5/7] vocab-8192 run", "[6/7] training", "== gpu_smoke summary: vocab",
                                               "== gpu_smoke summary ==")]
    assert order == sorted(order)
    assert (out / "bench.txt").read_text() == FAKE_BENCH.replace("gpu_bench: error: a training step should sync once "
                                                                 "(step_clock) and build no graph\n", "")
    assert "fa3:         98,304-token row" in r.stdout and "ttt:         projected ~477 s" in r.stdout
    assert "wallclock:   tests" in r.stdout and "vocab-8192 run" in r.stdout
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


def test_a_failed_bench_stage_runs_the_rest_and_fails(tmp_path):
    repo, env = fake_gpu_repo(tmp_path)
    (repo / "data" / "datasets" / "random_sp8192").mkdir(parents=True)
    (repo / "data" / "datasets" / "random_sp8192" / "data_info.json").write_text("{}")
    env.update(FAKE_BENCH_RC_FA3="2", FAKE_BENCH_RC_TTT="1")
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--skip-tests", "--skip", "syncs",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "gpu_smoke: stages failed: fa3 (exit 2); ttt (exit 1)" in r.stderr
    assert "[3/7] host syncs of training steps skipped (--skip syncs)" in r.stdout
    assert "generating the random" not in r.stdout  # the data was there
    assert "== gpu_smoke summary: vocab-8192 run on random tokens ==" in r.stdout
    assert "== gpu_smoke summary ==" in r.stdout
    bench = (tmp_path / "o" / "bench.txt").read_text().splitlines()
    assert [l.split(":")[0] for l in bench] == ["fa3", "ttt_step", "ttt_step", "ttt_projected"]


def test_a_failed_training_run_still_summarizes_and_fails(tmp_path):
    repo, env = fake_gpu_repo(tmp_path, torchrun_rc=3)
    r = subprocess.run(["bash", str(repo / "scripts" / "gpu_smoke.sh"), "--skip-tests", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "gpu_smoke: the training run failed (exit 3)" in r.stderr
    assert "== gpu_smoke summary ==" in r.stdout and "GPU tests skipped" in r.stdout


# -----------------------------------------------------------------------------------------------
# scripts/gpu_bench.py on the CPU: refusals, the syncs and ttt paths at toy sizes, the pieces of each stage
# -----------------------------------------------------------------------------------------------


def bench(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["fa3"], "fa3 needs a CUDA GPU"),
    (["fa3", "--device", "cpu"], "fa3 needs a CUDA GPU"),
    (["syncs"], "no CUDA GPU (torch.cuda.is_available() is False); --device cpu --small runs the CPU path"),
    (["ttt"], "no CUDA GPU"),
])
def test_gpu_bench_refuses_without_cuda_in_one_line(args, message):
    r = bench(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"gpu_bench: error: {message}") and r.stderr.count("\n") == 1


def test_gpu_bench_syncs_runs_on_the_cpu():
    r = bench("syncs", "--device", "cpu", "--small", "--steps", "2", "--warmup", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split(":")[0] for l in lines] == ["syncs", "syncs"]  # no detector on a CPU: no sync lines
    b = summary.parse_bench(r.stdout)
    assert [(x["plan"], x["span"], x["steps"], x["syncs"], x["expected"], x["detector"]) for x in b["syncs"]] == \
        [(0, 64, 2, 0, 1, "none"), (1, 64, 2, 0, 1, "none")]
    assert all(x["graphs_built"] == 0 and x["step_ms"] > 0 for x in b["syncs"])


def test_gpu_bench_ttt_runs_on_the_cpu():
    r = bench("ttt", "--device", "cpu", "--small")
    assert r.returncode == 0, r.stderr
    b = summary.parse_bench(r.stdout)
    assert [(t["rows"], t["width"], t["scored"], t["peak_mib"], t["syncs"]) for t in b["ttt_steps"]] == \
        [(64, 64, 48, "-", "-"), (1, 64, 48, "-", "-")]
    p = b["ttt_projected"]
    assert p["ranks"] == 8 and p["docs"] == 50_000 and p["batches"] == 782 and p["budget_s"] == 600
    assert 0 < p["scoring_s"] <= p["scoring_full_width_s"]
    assert p["total_s"] == pytest.approx(p["scoring_s"] + p["global_sgd_s"], abs=0.01)
    assert p["full_width_total_s"] == pytest.approx(p["scoring_full_width_s"] + p["global_sgd_s"], abs=0.01)
    assert p["plan_total_s"] > 0 and p["global_sgd_s"] > 0
    text = summary.format_summary(summary.parse(FAKE_LOG, "", 600, r.stdout))
    assert "ttt step:    64 rows x 64 (48 scored)" in text and "ttt:         projected ~" in text
    assert "peak - MiB, - host syncs" in text and "waited" not in text.split("ttt step:")[1]


def sync_site():
    warnings.warn("called a synchronizing CUDA operation")


def test_sync_recorder_counts_sync_warnings_by_line():
    with warnings.catch_warnings(record=True) as passed:
        warnings.simplefilter("always")
        with gpu_bench.SyncRecorder(target=__file__, cuda=False) as rec:
            sync_site()
            sync_site()
            warnings.warn("an unrelated warning")
        with gpu_bench.SyncRecorder(target="/no/such/file.py", cuda=False) as outside:
            sync_site()
    site = ("test_gpu_smoke.py", sync_site.__code__.co_firstlineno + 1, "sync_site")
    assert rec.counts == {site: 2} and rec.total == 2
    assert [str(w.message) for w in passed] == ["an unrelated warning"]  # others still reach the caller's filters
    [where] = outside.counts  # no train_gpt.py frame: the innermost frame outside torch and warnings.py
    assert where == site
    [line] = rec.lines(stage="train", plan=1, span=2048)
    assert line == f"sync: stage:train plan:1 span:2048 at:test_gpu_smoke.py:{site[1]} in:sync_site count:2"
    assert summary.parse_bench(line)["sync_sites"] == [dict(stage="train", plan=1, span=2048,
                                                            at=f"test_gpu_smoke.py:{site[1]}", **{"in": "sync_site"},
                                                            count=2)]


def test_fa3_boundaries_bucketed_trimmed_and_worst_case():
    tokens, span = 98_304, 2048
    cus = gpu_bench.fa3_boundaries(tokens, span, seed=0)
    trimmed, bucketed, worst = cus["trimmed"], cus["bucketed"], cus["worst"]
    segments = trimmed.size - 1
    assert 60 < segments < 256 and trimmed[0] == 0 and trimmed[-1] == tokens and np.all(np.diff(trimmed) > 0)
    assert np.all(np.diff(trimmed) <= span)  # documents are cut every span
    assert bucketed.size % tg.CU_SEQLENS_BUCKET == 0 and bucketed.size - tg.CU_SEQLENS_BUCKET < trimmed.size
    assert bucketed.size - trimmed.size >= 48  # the most padded of the drawn rows: bucketing's worst case
    assert np.array_equal(bucketed[: trimmed.size], trimmed) and np.all(bucketed[trimmed.size :] == tokens)
    assert worst.size == 1 + tokens // 16 + tokens // span + 1 and np.array_equal(worst[: trimmed.size], trimmed)
    assert np.all(worst[trimmed.size :] == tokens) and all(c.dtype == np.int32 for c in cus.values())
    assert np.array_equal(gpu_bench.fa3_boundaries(tokens, span, seed=0)["trimmed"], trimmed)  # fixed seed
    assert not np.array_equal(gpu_bench.fa3_boundaries(tokens, span, seed=1)["trimmed"], trimmed)


def test_ttt_documents_give_a_full_window_with_a_later_chunk():
    hp = tg.Hyperparameters.from_env({})
    fake, docs, step = gpu_bench.ttt_documents(hp, 64, seed=0)
    assert step == 42 and len(docs) == 64  # 43 x 48 = 2064 targets: the window is the 2048 tokens before
    windows = tg.chunk_windows(docs, step, hp.ttt_chunk_size, hp)
    assert all(e - a == hp.ttt_eval_seq_len and e - s == hp.ttt_chunk_size for a, s, e in windows)
    assert all(tg.chunk_count(d, hp.ttt_chunk_size) > step + 1 for d in docs)  # trained on: a chunk follows
    tokens = fake.tokens.numpy()
    assert [int(tokens[s]) for s, _ in docs] == [tg.BOS_ID] * 64 and (tokens[1:docs[0][1]] != tg.BOS_ID).all()
    assert [d for _, d in tg.ttt_queue(fake, hp)] == [sorted(docs)]


def test_step_costs_chunk_like_gpu_plan():
    hp = tg.Hyperparameters.from_env({})
    lengths = gpu_plan.modelled_lengths()
    steps, _ = gpu_plan.batch_work(lengths, hp, gpu_plan.ttt_shapes(hp, gpu_plan.meta_model(hp)))
    costs, total = gpu_bench.step_costs(lengths, hp, fixed_s=1.0, per_row_s=0.0)
    assert total == int(steps.sum()) and np.array_equal(costs, steps.astype(float))  # fixed cost: one a chunk step
    full, _ = gpu_bench.step_costs(lengths, hp, fixed_s=0.0, per_row_s=1.0, full_width=True)
    scaled, _ = gpu_bench.step_costs(lengths, hp, fixed_s=0.0, per_row_s=1.0)
    first = lengths[: len(lengths) % hp.ttt_batch_size or hp.ttt_batch_size]  # the remainder batch, longest
    first_batch_chunks = sum(-(-int(n) // hp.ttt_chunk_size) for n in first)
    assert full[0] == first_batch_chunks  # a row a chunk step of each document
    assert np.all(scaled <= full) and scaled[-1] < full[-1]  # short documents: narrower windows


def test_gpu_bench_data_builds_a_tokenizer_and_shards(tmp_path):
    out = tmp_path / "sp"
    r = bench("data", "--out", str(out), "--vocab", "1024", "--shards", "2", "--shard-tokens", "50000",
              "--val-tokens", "20000")
    assert r.returncode == 0, r.stderr
    fields = summary.key_values(r.stdout.removeprefix("data: "))
    assert fields["vocab"] == 1024 and fields["train_shards"] == 2 and fields["shard_tokens"] == 50_000
    sp = tg.load_tokenizer(str(out / "tokenizer.model"), 1024)  # the checks train_gpt.py makes at startup
    assert sp.bos_id() == 1 and sp.pad_id() == 0 and sp.eos_id() == 2 and sp.unk_id() == 3
    paths = sorted(out.glob("fineweb_*.bin"))
    assert [p.name for p in paths] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"]
    train = shard_io.read_shard(paths[0])
    assert train.size == 50_000 and train[0] == tg.BOS_ID and train.max() < 1024 and train.min() >= 1
    assert set(np.unique(train[train < 4])) == {tg.BOS_ID}
    assert 30 < (train == tg.BOS_ID).sum() < 80  # a BOS every ~957 tokens
    assert shard_io.read_shard(paths[2]).size == 20_000 and (out / "data_info.json").is_file()


class FakeEvent:
    """torch.cuda.Event for the fa3 path on a CPU: each timed call takes `ms`, or (None) its cu_seqlens entries
    / 100 ms, so bucketed vs trimmed is decided by the test, not by this machine's clock."""

    ms: float | None = 1.0
    entries = 0

    def __init__(self, enable_timing=False):
        pass

    def record(self):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return FakeEvent.ms if FakeEvent.ms is not None else FakeEvent.entries / 100


def fake_fa3(q, k, v, cu_q, cu_k, max_q, max_k, causal=False):
    """FA3's varlen call by per-segment causal SDPA (GQA by repeat); empty padding segments add nothing."""
    assert causal and cu_q is cu_k and max_q == max_k and cu_q.dtype == tg.torch.int32 and q.dtype == tg.torch.bfloat16
    FakeEvent.entries = cu_q.numel()
    rep, pieces = q.size(1) // k.size(1), []
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        assert 0 <= b - a <= max_q
        if b > a:
            qs, ks, vs = (x[a:b].transpose(0, 1) for x in (q, k, v))
            y = tg.F.scaled_dot_product_attention(qs, ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0),
                                                  is_causal=True)
            pieces.append(y.transpose(0, 1))
    return tg.torch.cat(pieces), None  # some builds return (out, lse)


@pytest.fixture
def one_thread():
    """In-process CPU runs on one torch thread (two on a busy 2-core host: 10x slower), restored after."""
    threads = tg.torch.get_num_threads()
    tg.torch.set_num_threads(1)
    yield
    tg.torch.set_num_threads(threads)


@pytest.mark.parametrize("ms, rc", [(1.0, 0), (None, 1)])
def test_fa3_path_with_a_fake_kernel(monkeypatch, capsys, one_thread, ms, rc):
    monkeypatch.setattr(tg.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tg.torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(gpu_bench, "bench_device", lambda name: tg.torch.device("cpu"))
    monkeypatch.setattr(tg, "flash_attn_varlen_func", fake_fa3)
    monkeypatch.setattr(FakeEvent, "ms", ms)
    assert gpu_bench.main(["fa3", "--tokens", "2048", "--span", "256", "--reps", "1"]) == rc
    out, err = capsys.readouterr()
    f = summary.parse_bench(out)["fa3"]
    assert (f["tokens"], f["span"], f["heads"], f["kv_heads"], f["head_dim"]) == (2048, 256, 8, 4, 64)
    assert f["entries_trimmed"] == f["segments"] + 1 and f["entries_bucketed"] == 64
    assert f["entries_worst"] == 1 + 2048 // 16 + 2048 // 256 + 1 and f["max_abs_diff"] == 0.0
    if rc == 0:
        assert f["bucketed_over_trimmed"] == 1.0 and err == ""
    else:  # timed by entries: 64 bucketed vs ~5 trimmed
        assert f["ms_bucketed"] == 0.64 and f["bucketed_over_trimmed"] > 1.05
        assert err.startswith("gpu_bench: error: bucketed cu_seqlens take") and err.count("\n") == 1


def test_fa3_refuses_without_flash_attention_3(monkeypatch, capsys):
    monkeypatch.setattr(tg.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tg, "flash_attn_varlen_func", None)
    assert gpu_bench.main(["fa3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("gpu_bench: error: FlashAttention-3 is not installed (import flash_attn_interface "
                                 "failed)\n")


def test_syncs_attributes_a_sync_to_its_train_gpt_line(monkeypatch, capsys, one_thread):
    """On CUDA, step_clock's .tolist() raises the sync-debug warning; here a patched tolist raises it: the stage
    must count one a step and name step_clock's line in train_gpt.py."""
    original = tg.torch.Tensor.tolist

    def syncing_tolist(self):
        warnings.warn("called a synchronizing CUDA operation")
        return original(self)

    monkeypatch.setattr(tg.torch.Tensor, "tolist", syncing_tolist)
    with warnings.catch_warnings():  # the unmeasured steps' syncs: not counted, not shown
        warnings.filterwarnings("ignore", message=".*synchronizing CUDA operation")
        assert gpu_bench.main(["syncs", "--device", "cpu", "--small", "--steps", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    source, first = inspect.getsourcelines(tg.step_clock)
    line = first + next(i for i, text in enumerate(source) if ".tolist()" in text)
    b = summary.parse_bench(out)
    assert b["sync_sites"] == [dict(stage="train", plan=p, span=64, at=f"train_gpt.py:{line}", count=2,
                                    **{"in": "step_clock"}) for p in (0, 1)]
    assert [(r["syncs"], r["per_step"]) for r in b["syncs"]] == [(2, 1.0), (2, 1.0)]
