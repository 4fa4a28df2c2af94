"""scripts/ttt_sweep.py on a tiny CPU artifact: a sweep interrupted after its first variant resumes (the done
one skipped, untouched), its numbers are the eval log's _exact line, --dry-run runs nothing, and a bad
variants file is one line and exit 2."""

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

SWEEP = REPO / "scripts" / "ttt_sweep.py"
# phased TTT only (no window pass, no tilt): two stages, the headline quantized_ttt_phased, seconds per run
EVAL = dict(TTT_ENABLED=1, TTT_CHUNK_SIZE=16, TTT_EVAL_SEQ_LEN=32, TTT_BATCH_SIZE=8, TTT_LORA_RANK=4,
            TTT_LORA_ALPHA=8, TTT_LORA_LR=0.003, PHASED_TTT_PREFIX_DOCS=40, PHASED_TTT_NUM_PHASES=2,
            GLOBAL_TTT_CHUNK_TOKENS=512, GLOBAL_TTT_BATCH_SEQS=4, SLIDING_WINDOW_ENABLED=0, USE_HEDGE=0,
            NGRAM_TILT_ENABLED=0)
VARIANTS = {"variants": [{"id": "v0", "description": "LoRA lr 0.003", "env": {"TTT_LORA_LR": "0.003"}},
                         {"id": "v1", "description": "LoRA lr 0.03", "env": {"TTT_LORA_LR": 0.03}}]}


def sweep(*args, shell: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """The sweep run from a shell with this environment, plus shell's variables."""
    env = {**os.environ, **(shell or {}), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SWEEP), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


def exact_lines(text: str) -> dict[str, tuple[str, str]]:
    return {m[0]: (m[1], m[2]) for m in re.findall(r"^(\S+)_exact val_loss:(\S+) val_bpb:(\S+)$", text, re.M)}


def processes_with_env(needle: bytes) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and needle in (p / "environ").read_bytes():
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def setup(tiny_run, tmp_path_factory):
    """A tiny artifact (the shared fp32 run, TTT off), the recipe it was trained with plus the eval knobs (as a
    .env) and a two-variant file."""
    work = tmp_path_factory.mktemp("sweep")
    env, result = tiny_run("off")
    assert result.returncode == 0, result.stderr[-3000:]
    base = {k: str(v) for k, v in {**env, **EVAL}.items() if k not in ("ARTIFACT_DIR", "RUN_ID")}
    (work / "recipe.env").write_text("# the tiny recipe\n" + "".join(f"{k}={v}\n" for k, v in base.items()))
    (work / "variants.json").write_text(json.dumps(VARIANTS))
    return work, Path(env["ARTIFACT_DIR"]) / "final_model.int6.ptz"


def test_interrupted_sweep_resumes_and_reports_the_logs_numbers(setup):
    work, artifact = setup
    out = work / "out"
    args = [sys.executable, str(SWEEP), "--artifact", artifact, "--variants", work / "variants.json", "--out", out,
            "--base-env", work / "recipe.env", "--timeout-minutes", 2]
    first = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    done = out / "v0" / "variant_result.json"
    deadline = time.monotonic() + 120
    while not done.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.exists(), first.communicate()[0]
    while not (out / "v1" / "eval.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # v1 has started: the kill lands mid-variant
    os.killpg(first.pid, signal.SIGKILL)  # the sweep's group; v1's processes are in their own session
    first.wait()
    assert first.returncode == -signal.SIGKILL
    needle = f"EVAL_SUMMARY_JSON={out / 'v1' / 'eval.json'}".encode()
    deadline = time.monotonic() + 20
    while processes_with_env(needle) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with_env(needle), "v1's eval outlived the killed sweep"
    assert not (out / "v1" / "variant_result.json").exists()
    assert json.loads(done.read_text())["status"] == "success"
    mtime = done.stat().st_mtime_ns

    second = sweep(*args[2:])
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skip v0: done" in second.stdout and "run v1" in second.stdout
    assert done.stat().st_mtime_ns == mtime

    for vid, lr in (("v0", "0.003"), ("v1", "0.03")):
        r = json.loads((out / vid / "variant_result.json").read_text())
        assert r["status"] == "success" and r["error"] is None and r["env_overrides"] == {"TTT_LORA_LR": lr}
        assert r["headline_label"] == "quantized_ttt_phased"
        log = (out / vid / "eval.log").read_text()
        assert exact_lines(log)[r["headline_label"]] == (f"{r['val_loss']:.8f}", f"{r['val_bpb']:.8f}")
        assert f"  TTT_LORA_LR={float(lr)}" in log  # the variant's knob reached the process
        assert r["ttt_seconds"] > 0 and r["eval_seconds"] >= r["ttt_seconds"]
        assert (out / vid / "logs" / f"{vid}.txt").exists()
    results = [json.loads((out / v / "variant_result.json").read_text()) for v in ("v0", "v1")]
    assert results[0]["val_bpb"] != results[1]["val_bpb"]

    rows = list(csv.DictReader((out / "sweep_results.csv").open()))
    assert [r["variant_id"] for r in rows] == ["v0", "v1"] and {r["status"] for r in rows} == {"success"}
    summary = json.loads((out / "sweep_summary.json").read_text())
    best = min(results, key=lambda r: r["val_bpb"])
    assert summary["best"]["variant_id"] == best["variant_id"] and summary["best"]["val_bpb"] == best["val_bpb"]
    assert summary["counts"] == {"success": 2, "error": 0, "timeout": 0, "pending": 0}
    assert summary["artifact"] == str(artifact) and summary["base_env"]["env"]["TTT_LORA_RANK"] == "4"


def test_dry_run_prints_the_commands_and_runs_nothing(setup):
    work, artifact = setup
    out = work / "dry"
    result = sweep("--artifact", artifact, "--variants", work / "variants.json", "--out", out,
                   "--base-env", work / "recipe.env", "--dry-run", "--nproc", 2)
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    for command, vid, lr in zip(commands, ("v0", "v1"), ("0.003", "0.03")):
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
        assert env["TTT_LORA_LR"] == lr and env["RUN_ID"] == vid and env["EVAL_ONLY_PATH"] == str(artifact)
        assert env["EVAL_SUMMARY_JSON"] == str(out / vid / "eval.json") and env["ARTIFACT_DIR"] == str(out / vid)
        assert env["TTT_LORA_RANK"] == "4"  # from the base env
        assert words[len(env):] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc_per_node=2", str(REPO / "train_gpt.py")]
    assert not out.exists()


@pytest.mark.parametrize("case", ["unknown_key", "duplicate_id", "missing_artifact", "not_utf8"])
def test_bad_input_is_one_line_and_exit_2(setup, tmp_path, case):
    work, artifact = setup
    variants = json.loads(json.dumps(VARIANTS))
    if case == "unknown_key":
        variants["variants"][1]["envs"] = {"TTT_LORA_RANK": 8}
    elif case == "duplicate_id":
        variants["variants"][1]["id"] = "v0"
    elif case == "missing_artifact":
        artifact = tmp_path / "missing.ptz"
    (tmp_path / "v.json").write_text(json.dumps(variants))
    if case == "not_utf8":  # a variants file saved in Latin-1
        (tmp_path / "v.json").write_bytes(json.dumps(variants).replace("LoRA", "LoRA\u00e9").encode("latin-1"))
    result = sweep("--artifact", artifact, "--variants", tmp_path / "v.json", "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert {"unknown_key": "envs", "duplicate_id": "duplicate id 'v0'", "missing_artifact": "missing.ptz",
            "not_utf8": f"variants file {tmp_path / 'v.json'} is not UTF-8 text (at byte "}[case] in result.stderr
    assert not (tmp_path / "out").exists()


def test_toml_variants_file_is_read_like_json(setup, tmp_path):
    work, artifact = setup
    (tmp_path / "v.toml").write_text('[[variants]]\nid = "r8"\ndescription = "rank 8"\nenv = { TTT_LORA_RANK = 8 }\n'
                                     '[[variants]]\nid = "off"\nenv = { TTT_ENABLED = false }\n')
    result = sweep("--artifact", artifact, "--variants", tmp_path / "v.toml", "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert "TTT_LORA_RANK=8 " in commands[0] and "TTT_ENABLED=0 " in commands[1]
    assert "# r8: rank 8" in result.stdout


def test_the_shell_wins_over_the_base_env_and_a_variant_over_both(tmp_path):
    """Precedence, lowest first: base env, shell, variant, the sweep's own; each shell override is noted."""
    (tmp_path / "a.ptz").write_bytes(b"not read by a dry run")
    (tmp_path / "v.json").write_text(json.dumps(VARIANTS))
    (tmp_path / "r.env").write_text("# recipe\nDATA_PATH=./recipe_data\nTTT_LORA_LR=1\nTTT_LORA_RANK=4\nRUN_ID=r\n")
    shell = {"DATA_PATH": "/shell/data", "TTT_LORA_LR": "2", "TTT_LORA_RANK": "4", "RUN_ID": "shell"}
    result = sweep("--artifact", tmp_path / "a.ptz", "--variants", tmp_path / "v.json", "--out", tmp_path / "out",
                   "--base-env", tmp_path / "r.env", "--dry-run", shell=shell)
    assert result.returncode == 0, result.stderr
    assert "note: the shell's DATA_PATH, TTT_LORA_LR win over the base env's" in result.stdout
    for command, vid, lr in zip([c for c in result.stdout.splitlines() if c and c[0] != "#" and "=" in c.split()[0]],
                                ("v0", "v1"), ("0.003", "0.03")):
        env = dict(w.split("=", 1) for w in shlex.split(command) if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
        assert env["DATA_PATH"] == "/shell/data" and env["TTT_LORA_RANK"] == "4"
        assert env["TTT_LORA_LR"] == lr and env["RUN_ID"] == vid
    assert "base env, shell, variant" in " ".join(sweep("--help").stdout.split())


def test_a_bad_base_env_line_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "a.ptz").write_bytes(b"")
    (tmp_path / "v.json").write_text(json.dumps(VARIANTS))
    (tmp_path / "r.env").write_text("# recipe\nTTT_LORA_RANK=4\nTTT_LORA_LR 0.1\n")
    result = sweep("--artifact", tmp_path / "a.ptz", "--variants", tmp_path / "v.json", "--out", tmp_path / "out",
                   "--base-env", tmp_path / "r.env")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"ttt_sweep: error: base env file {tmp_path / 'r.env'}:3: expected VAR=value, got " \
                            "'TTT_LORA_LR 0.1'\n"
    assert not (tmp_path / "out").exists()
