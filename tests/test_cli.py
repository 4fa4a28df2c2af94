"""The command line a newcomer meets: --help prints the knobs instead of starting a run, stray arguments
are refused, and a run refused at startup says how to fix it and leaves no log file behind."""

import subprocess
import sys

from conftest import REPO, run_script, tiny_env


def test_help_prints_every_knob_and_starts_nothing(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "train_gpt.py"), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "| `MODEL_DIM` | `512` |" in result.stdout
    assert "| `TRAIN_SEQ_SCHEDULE` |" in result.stdout and "hyperparameters:" not in result.stdout
    assert not (tmp_path / "logs").exists()


def test_stray_arguments_are_refused(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "train_gpt.py"), "--model-dim", "256"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "takes no arguments" in result.stderr and "--help" in result.stderr


def test_missing_tokenizer_says_how_to_get_it_and_leaves_no_log(tiny_dataset, tmp_path):
    env = tiny_env(tiny_dataset, tmp_path, TOKENIZER_PATH=tmp_path / "nope.model", RUN_ID="")
    result = run_script(env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not found" in result.stderr and "data/cached_challenge_fineweb.py" in result.stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())
