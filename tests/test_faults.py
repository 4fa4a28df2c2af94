"""Faults and bad input: one clear line and exit 2, never a traceback or a silent wrong number; a run that
fails (a diverging loss, a full disk, kill -9) leaves the previous run's outputs as they were."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import shard_io
import train_gpt as tg
from conftest import REPO, cpu_runtime, run_script, tiny_env

OUTPUTS = ("final_model.pt", "final_model.int6.ptz", "train_gpt_packed.py")


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.stderr[-2000:]


def copy_dataset(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def previous_outputs(out_dir) -> dict:
    out_dir.mkdir(exist_ok=True)
    for name in OUTPUTS:
        (out_dir / name).write_bytes(f"a good earlier {name}".encode())
    return {name: (out_dir / name).read_bytes() for name in OUTPUTS}


def test_a_diverging_run_stops_with_one_line_and_exports_nothing(tiny_dataset, tmp_path):
    before = previous_outputs(tmp_path)
    env = tiny_env(tiny_dataset, tmp_path, MATRIX_LR=1e12, SCALAR_LR=1e12, TIED_EMBED_LR=1e12, ITERATIONS=20)
    result = run_script(env)
    one_line_error(result, "train loss is not finite at step", "nothing exported")
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert "final_int6" not in result.stdout


def test_non_finite_weights_are_never_exported(tiny_dataset, tmp_path):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path))
    model = tg.build_model(hp, torch.device("cpu"))
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight[0, 0] = float("nan")
    with pytest.raises(tg.ArtifactError, match="non-finite weights in blocks.0.mlp.fc.weight"):
        tg.export_artifact(model, hp, cpu_runtime(), lambda *a, **k: None)
    assert not any((tmp_path / name).exists() for name in OUTPUTS)


def test_a_full_disk_during_export_keeps_the_previous_outputs(tiny_dataset, tmp_path, monkeypatch):
    before = previous_outputs(tmp_path)
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path))
    model = tg.build_model(hp, torch.device("cpu"))
    calls = []

    def fsync_on_a_full_disk(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second file of the set does not fit
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(tg.os, "fsync", fsync_on_a_full_disk)
    with pytest.raises(tg.ArtifactError, match="No space left on device.*previous ones are untouched"):
        tg.export_artifact(model, hp, cpu_runtime(), lambda *a, **k: None)
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert not list(tmp_path.glob(".*.tmp")), "temp files left behind"


KILL_DURING_WRITE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import train_gpt as tg
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed between the temps and the renames
tg.atomic_write_files({Path(sys.argv[2]) / name: b"new" for name in sys.argv[3:]})
"""


def test_kill_9_during_a_write_keeps_the_previous_outputs_and_the_next_write_clears_its_temps(tmp_path):
    before = previous_outputs(tmp_path)
    result = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(REPO), str(tmp_path), *OUTPUTS])
    assert result.returncode == -signal.SIGKILL
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert len(list(tmp_path.glob(".*.tmp"))) == 3  # a killed writer cannot clean up...
    tg.atomic_write_files({tmp_path / name: b"next" for name in OUTPUTS})
    assert not list(tmp_path.glob(".*.tmp"))  # ...the next write of those files does
    assert all((tmp_path / name).read_bytes() == b"next" for name in OUTPUTS)


def test_an_error_inside_a_write_removes_its_temp(tmp_path, monkeypatch):
    monkeypatch.setattr(tg.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        tg.atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_output_dir_is_checked_before_training(tiny_dataset, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    env = {**os.environ, **tiny_env(tiny_dataset, tmp_path, ARTIFACT_DIR=blocker / "out")}
    result = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    one_line_error(result, "ARTIFACT_DIR=", "is not writable")
    assert "step:" not in result.stdout
    monkeypatch.setattr(tg.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1 << 20})())
    with pytest.raises(tg.DataError, match="has 1 MiB free; the outputs need about"):
        tg.check_output_dir(tmp_path, torch.nn.Linear(4, 4))


def bad_train_shard(dataset, tmp_path):
    data = copy_dataset(dataset, tmp_path / "data")
    shard_io.write_shard(data / "fineweb_train_000002.bin", np.array([1, 5, 400, 7] * 50, dtype=np.uint16))
    return {"DATA_PATH": data}


def garbage_tokenizer(dataset, tmp_path, content: bytes):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    return {"TOKENIZER_PATH": path}


@pytest.mark.parametrize("case, fragments", [
    ("bad_train_shard", ("fineweb_train_000002.bin: token id 400 >= VOCAB_SIZE 320",)),
    ("garbage_tokenizer", ("is not a SentencePiece model",)),
    ("empty_tokenizer", ("is not a SentencePiece model",)),
    ("missing_eval_only_path", ("EVAL_ONLY_PATH: no artifact at",)),
    ("num_heads_0", ("NUM_HEADS must be positive",)),
    ("num_kv_heads_0", ("NUM_KV_HEADS must be positive",)),
    ("world_size_0", ("WORLD_SIZE=0 must divide 8",)),
    ("mlp_mult_nan", ("MLP_MULT=nan must be a finite number",)),
])
def test_bad_input_is_one_line_and_exit_2(case, fragments, tiny_dataset, tmp_path):
    overrides = {
        "bad_train_shard": lambda: bad_train_shard(tiny_dataset, tmp_path),
        "garbage_tokenizer": lambda: garbage_tokenizer(tiny_dataset, tmp_path, os.urandom(3000)),
        "empty_tokenizer": lambda: garbage_tokenizer(tiny_dataset, tmp_path, b""),
        "missing_eval_only_path": lambda: {"EVAL_ONLY_PATH": tmp_path / "nowhere.ptz"},
        "num_heads_0": lambda: {"NUM_HEADS": 0},
        "num_kv_heads_0": lambda: {"NUM_KV_HEADS": 0},
        "world_size_0": lambda: {"WORLD_SIZE": 0},
        "mlp_mult_nan": lambda: {"MLP_MULT": "nan"},
    }[case]()
    result = run_script(tiny_env(tiny_dataset, tmp_path / "run", **overrides), timeout=120)
    one_line_error(result, *fragments)
    assert "step:" not in result.stdout  # found before any training


def test_under_torchrun_the_line_is_the_last_thing_printed(tiny_dataset, tmp_path):
    result = run_script(tiny_env(tiny_dataset, tmp_path, NUM_KV_HEADS=0), nproc=2, timeout=120)
    assert result.returncode != 0
    last = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert any("error: NUM_KV_HEADS must be positive" in line for line in last[-4:]), last[-8:]
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1  # rank 0 only


def test_reusing_a_run_id_keeps_the_earlier_log(tiny_dataset, tmp_path):
    env = tiny_env(tiny_dataset, tmp_path, ITERATIONS=1, SEED=1)
    assert run_script(env).returncode == 0
    first = (tmp_path / "logs" / "tiny.txt").read_text()
    assert run_script({**env, "SEED": "2"}).returncode == 0
    assert (tmp_path / "logs" / "tiny.1.txt").read_text() == first
    second = (tmp_path / "logs" / "tiny.txt").read_text()
    assert "seed:2" in second and "seed:1" not in second and "earlier log of this RUN_ID is now" in second
