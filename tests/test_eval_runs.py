"""Eval stages as users run them: in the training run, again on the saved artifact in a fresh process (same
numbers, to the last digit, and a JSON of every stage), on 2 gloo ranks (the same totals), and as dev
subsets whose lines are labelled partial."""

import json
import re

import pytest

import sample_val
from conftest import NUMERIC_MODES, run_script, tiny_env

EVAL = dict(TTT_ENABLED=1, TTT_CHUNK_SIZE=16, TTT_EVAL_SEQ_LEN=32, TTT_BATCH_SIZE=8, TTT_LORA_RANK=4,
            TTT_LORA_ALPHA=8, TTT_LORA_LR=0.003, PHASED_TTT_PREFIX_DOCS=40, PHASED_TTT_NUM_PHASES=2,
            GLOBAL_TTT_CHUNK_TOKENS=512, GLOBAL_TTT_BATCH_SEQS=4, SLIDING_WINDOW_ENABLED=1, EVAL_STRIDE=16,
            USE_HEDGE=1, NGRAM_TILT_ENABLED=1,
            TTT_WARM_START_A=0)  # a warm start comes from the rank's previous batch: with it, ranks change the score
STAGES = ["final_int6_brotli_roundtrip", "quantized_sliding_window", "quantized_sliding_window_tilt",
          "quantized_hedge_mixer", "quantized_hedge_mixer_tilt", "quantized_ttt_phased", "quantized_ttt_phased_tilt"]


def exact_lines(stdout: str) -> dict[str, tuple[float, float]]:
    return {m[0]: (float(m[1]), float(m[2])) for m in re.findall(r"^(\S+)_exact val_loss:(\S+) val_bpb:(\S+)$",
                                                                stdout, re.M)}


@pytest.fixture(scope="module", params=NUMERIC_MODES)
def trained(request, tiny_dataset, tmp_path_factory):
    """One training run that evaluates every stage, per numeric mode; its artifact and its printed numbers."""
    work, mode = tmp_path_factory.mktemp("eval_run"), request.param
    result = run_script(tiny_env(tiny_dataset, work, **EVAL, AUTOCAST=mode, EVAL_SUMMARY_JSON=work / "in_run.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result.stdout, mode


def test_training_run_prints_every_stage_and_the_timers(trained):
    work, stdout, mode = trained
    assert list(exact_lines(stdout)) == STAGES
    assert "beginning TTT eval timer" in stdout and re.search(r"^ttpp: phase:2/2 docs:40 ", stdout, re.M)
    timers = re.search(r"^eval_timers: (.*)$", stdout, re.M).group(1)
    for leg in ("decompress", "roundtrip", "eval_warmup", "sliding_window", "ttt_scoring_1", "ttt_global_sgd_1",
                "ttt_scoring_3", "ttt", "total"):
        assert re.search(rf"(^| ){leg}:\d+\.\d+s", timers), leg
    assert re.search(r"^total_eval_time:\d+\.\d+s$", stdout, re.M)
    summary = json.loads((work / "in_run.json").read_text())
    assert [s["label"] for s in summary["stages"]] == STAGES
    val_tokens = int(re.search(r"^val_tokens: (\d+)$", stdout, re.M).group(1))
    assert all(s["tokens"] == val_tokens for s in summary["stages"])  # every mode, the tail included


def test_eval_only_reproduces_the_run_exactly_and_writes_the_json(trained, tiny_dataset, tmp_path):
    work, stdout, mode = trained
    env = tiny_env(tiny_dataset, work, **EVAL, AUTOCAST=mode, EVAL_ONLY_PATH=work / "final_model.int6.ptz",
                   RUN_ID="eval_only", EVAL_SUMMARY_JSON=tmp_path / "summary.json", EVAL_BUDGET_SECONDS=0.001)
    result = run_script(env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert exact_lines(result.stdout) == exact_lines(stdout)  # over its budget: warned, and scored the same
    assert re.search(r"^warning: ttt:\d+\.\ds > EVAL_BUDGET_SECONDS=0.001$", result.stdout, re.M)
    assert "warning: total_eval_time > EVAL_BUDGET_SECONDS=0.001 (records count ttt only)" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    stage = {s["label"]: s for s in summary["stages"]}
    assert stage["quantized_ttt_phased"]["val_bpb"] == pytest.approx(exact_lines(stdout)["quantized_ttt_phased"][1],
                                                                     abs=5e-9)
    assert {"val_loss", "val_bpb", "tokens", "bytes", "seconds"} <= set(stage["quantized_ttt_phased"])
    assert summary["timers"]["ttt"] > 0 and summary["hyperparameters"]["ttt_chunk_size"] == 16


def test_two_gloo_ranks_give_the_same_totals_as_one(trained, tiny_dataset, tmp_path):
    work, stdout, mode = trained
    env = tiny_env(tiny_dataset, tmp_path, **EVAL, AUTOCAST=mode, EVAL_ONLY_PATH=work / "final_model.int6.ptz",
                   RUN_ID="two")
    result = run_script(env, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = exact_lines(stdout), exact_lines(result.stdout)
    assert list(two) == STAGES
    # summation order and global SGD's gradient all-reduce differ, nothing else; under bf16 the bf16
    # embedding table's gradients are summed in bf16 across ranks, hence the looser bound there
    rel = 1e-6 if mode == "off" else 1e-5
    for label in STAGES:
        assert two[label][1] == pytest.approx(one[label][1], rel=rel, abs=0), label


def test_dev_subsets_are_labelled_partial(trained, tiny_dataset, tmp_path):
    work, _, mode = trained
    artifact = work / "final_model.int6.ptz"
    base = dict(EVAL, AUTOCAST=mode, SLIDING_WINDOW_ENABLED=0, USE_HEDGE=0, NGRAM_TILT_ENABLED=0, EVAL_ONLY_PATH=artifact)
    sampled = tmp_path / "sampled"
    assert sample_val.main([str(tiny_dataset), str(sampled), "--fraction", "0.3"]) == 0
    result = run_script(tiny_env(tiny_dataset, tmp_path, **base, DATA_PATH=sampled, RUN_ID="sample"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(exact_lines(result.stdout)) == ["final_int6_brotli_roundtrip_partial", "quantized_ttt_phased_partial"]
    assert "every score below is partial" in result.stdout
    result = run_script(tiny_env(tiny_dataset, tmp_path, **base, TTT_EVAL_BATCHES="0,3", RUN_ID="batches"))
    assert result.returncode == 0, result.stderr[-3000:]
    # two batches hold fewer documents than a phase needs: no global SGD runs, and the label says LoRA TTT
    assert list(exact_lines(result.stdout)) == ["final_int6_brotli_roundtrip", "quantized_ttt_lora_partial"]
    assert re.search(r"^ttt: .* phase_docs:\[\]$", result.stdout, re.M)
