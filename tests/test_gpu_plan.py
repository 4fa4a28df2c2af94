"""scripts/gpu_plan.py on CPU: hand counts of parameters, FLOPs and FA3 buffers, the calibration it claims
(the default config reproduces #1855's step times, peak memory and TTT timer), its refusals, and real
validation shards as the document lengths. Nothing here reads ../shared or needs a GPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shard_io
import torch
import train_gpt as tg

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_plan.py"

spec = importlib.util.spec_from_file_location("gpu_plan", SCRIPT)
gpu_plan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_plan)

DIM, LAYERS, HEADS, KV_HEADS, VOCAB, ROW = 512, 11, 8, 4, 8192, 98_304
HEAD_DIM = DIM // HEADS


@pytest.fixture(scope="module")
def default_plan() -> dict:
    return gpu_plan.build_plan(gpu_plan.hyperparameters({}), gpu_plan.modelled_lengths())


def run_cli(*args: str, **knobs: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "CUDA_VISIBLE_DEVICES": "", **knobs}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


def test_default_parameter_count_matches_a_hand_count(default_plan):
    attention = DIM * DIM + DIM * (KV_HEADS * HEAD_DIM) * 2 + DIM * DIM  # c_q, c_k, c_v, proj
    mlp = DIM * 4 * DIM * 2  # fc, proj at MLP_MULT 4
    layer_controls = DIM + DIM + 2 * DIM + HEADS + HEADS * 12  # attn/mlp scales, resid_mix, q_gain, gate (window 12)
    # U-Net skips: the looped plan has 17 applications, 8 encoder and 9 decoder, so 8 skip rows (the plain
    # plan's 5 use the first 5); parallel lambdas for every physical layer; SmearGate's window and lambda.
    global_controls = 8 * DIM + 8 * DIM + LAYERS * 2 + LAYERS * 2 * 2 + 12 + 1
    embedding = VOCAB * DIM  # tied: the head is this table
    total = embedding + LAYERS * (attention + mlp + layer_controls) + global_controls
    # #1855's count (sota_stack.md 1.7) is the same: 35,945,671; ours has no extra or missing tensor.
    assert total == 35_945_671
    assert default_plan["parameters"] == dict(block_matrices=LAYERS * (attention + mlp), embeddings=embedding,
                                              lm_head=0, controls=LAYERS * layer_controls + global_controls,
                                              total=total)


def test_matmul_flops_per_stage_are_six_tokens_times_params_applied(default_plan):
    block = DIM * DIM * 2 + DIM * KV_HEADS * HEAD_DIM * 2 + DIM * 4 * DIM * 2
    stages = default_plan["training"]["stages"]
    assert [s["applications"] for s in stages] == [11, 17]  # plain, then layers 3-5 three times
    for s in stages:
        assert s["matmul_flops_per_step"] == 6 * 786_432 * (s["applications"] * block + VOCAB * DIM)
        # attention: 3 x (QK^T + AV) = 3 x 2 x 2 x context x head_dim x heads per application
        expected = 786_432 * 12 * s["mean_causal_context"] * DIM * s["applications"]
        assert s["attention_flops_per_step"] == pytest.approx(expected)
        assert 1 < s["mean_causal_context"] < (2048 + 1) / 2
    assert sum(s["share"] for s in stages) == pytest.approx(1.0)
    assert stages[0]["share"] == pytest.approx(0.35)  # ENABLE_LOOPING_AT


def test_bucketed_cu_seqlens_stay_within_a_bucket_of_the_real_segments(default_plan):
    [row] = default_plan["attention"]
    assert row["row_tokens"] == ROW and row["span"] == 2048
    segments, entries = row["expected_segments"], row["bucketed_entries"]
    assert entries % 64 == 0 and segments + 1 <= entries <= segments + 64
    assert row["worst_case_entries"] == 1 + ROW // 16 + ROW // 2048 + 1 == 6_194


def test_fa3_backward_scratch_follows_flash_api_formulas(default_plan):
    worst = default_plan["attention"][0]["worst_case"]
    batch, block = 6_193, 128  # kBlockM = kBlockN = 128: head dim 64, causal, no softcap, sm90
    rows = -(-(ROW + batch * block) // block) * block
    assert worst["total_q_padded_rounded"] == rows == 891_008
    assert worst["dq_accum"] == 4 * HEADS * rows * HEAD_DIM
    assert worst["dk_dv_accum"] == 2 * 4 * KV_HEADS * rows * HEAD_DIM
    assert worst["softmax_d_and_lse_log2"] == 2 * 4 * HEADS * rows
    assert worst["dq_semaphore"] == 4 * (2048 // block) * batch * HEADS
    bucketed = default_plan["attention"][0]["bucketed"]
    assert bucketed["zero_filled"] < worst["zero_filled"] / 7  # the padding entries were most of the scratch


def test_default_plan_reproduces_the_record_it_is_calibrated_to(default_plan):
    train = default_plan["training"]
    assert train["projected_mean_ms_per_step"] == pytest.approx(121, rel=0.05)
    for stage, measured in zip(train["stages"], (96, 141)):
        assert stage["projected_ms_per_step"] == pytest.approx(measured, rel=0.05)
    assert train["projected_steps"] == pytest.approx(4_931, rel=0.05)
    memory = default_plan["memory"]
    assert memory["projected_allocated"] / 2**20 == pytest.approx(41_700, rel=0.01)
    assert memory["projected_reserved"] / 2**20 == pytest.approx(47_100, rel=0.01)
    ttt = default_plan["ttt"]
    assert ttt["projected_seconds_static"] >= ttt["projected_seconds_dynamic"]
    # the record's TTT is top.env's: the defaults' global SGD trains on other documents (GLOBAL_TTT_STREAM=queue)
    top = gpu_plan.build_plan(gpu_plan.hyperparameters(gpu_plan.recipe_env("top")), gpu_plan.modelled_lengths())
    assert 455 <= top["ttt"]["projected_seconds_dynamic"] <= 509
    assert 15_000_000 < default_plan["artifact"]["projected_total"] < 16_000_000
    assert default_plan["refusals"] == []


def test_constants_are_what_the_record_facts_give():
    fitted, used = gpu_plan.calibrate(), gpu_plan.CALIBRATION
    for name in ("train_mfu", "activation_bytes", "reserved_over_allocated", "sgd_step_overhead_s", "ttt_mfu"):
        assert getattr(used, name) == pytest.approx(getattr(fitted, name), rel=0.01), name
    assert used.entropy_efficiency == fitted.entropy_efficiency


def test_modelled_document_lengths_are_fineweb_val_sized_and_deterministic():
    lengths = gpu_plan.document_lengths()
    assert len(lengths) == 50_000 and int(lengths.sum()) == 47_853_343
    assert np.array_equal(lengths, gpu_plan.document_lengths()) and np.all(np.diff(lengths) <= 0)
    assert 20_000 < lengths[0] < 100_000 and lengths[-1] >= 1


def test_dynamic_claiming_balances_what_a_static_split_cannot():
    costs = np.array([5.0, 1, 1, 1, 1, 1])
    assert gpu_plan.busiest_dynamic(costs, 2) == 5  # rank 1 takes the five short batches while rank 0 runs the long
    assert gpu_plan.busiest_static(costs, 2, 0) == 7  # batches 0, 2, 4 on rank 0


def test_oversized_artifact_is_refused_in_one_line(capsys):
    assert gpu_plan.main([], {"MODEL_DIM": "1024"}) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and out.err.startswith("gpu_plan: error: projected artifact")
    assert "## Projected artifact" in out.out  # the plan that shows why is still printed


def test_invalid_knobs_are_refused_in_one_line():
    r = run_cli(NUM_HEADS="7")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "gpu_plan: error: MODEL_DIM must be divisible by NUM_HEADS\n"


def test_batch_over_h100_memory_is_refused_but_fits_an_h200(capsys):
    knobs = {"TRAIN_BATCH_TOKENS": str(2 * 786_432)}
    assert gpu_plan.main(["--json"], knobs) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and out.err.startswith("gpu_plan: error: projected peak memory")
    assert json.loads(out.out)["memory"]["projected_reserved"] > 79.1 * 2**30
    assert gpu_plan.main(["--json", "--gpu", "h200"], knobs) == 0
    assert json.loads(capsys.readouterr().out)["refusals"] == []


def test_val_shards_give_the_real_document_lengths(tmp_path, capsys):
    docs = [[1] + [7] * n for n in (1_999, 699, 299, 99)]  # every document starts at BOS (id 1)
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", [t for d in docs for t in d])
    assert gpu_plan.main(["--json", "--val-shards", str(tmp_path / "fineweb_val_*.bin")], {}) == 0
    plan = json.loads(capsys.readouterr().out)
    # targets: each document's tokens up to the next BOS; the last one ends at the stream's last token
    assert plan["documents"]["count"] == 4 and plan["documents"]["targets"] == 3_100 - 1
    assert plan["documents"]["longest"] == 2_000
    assert plan["ttt"]["batches"] == 1


@pytest.mark.parametrize("stream_order", ["queue", "record"])
def test_the_plan_cuts_batches_and_picks_sgd_documents_as_the_evaluation_does(stream_order):
    """chunk_steps' batches are ttt_queue's (cut from the short end, the remainder of the longest first) and a
    phase's global-SGD tokens are phase_docs' documents, on a stream of known document lengths."""
    hp = gpu_plan.hyperparameters({"TTT_BATCH_SIZE": "4", "TTT_CHUNK_SIZE": "4", "PHASED_TTT_PREFIX_DOCS": "6",
                                   "PHASED_TTT_NUM_PHASES": "2", "GLOBAL_TTT_STREAM": stream_order})
    lengths = np.array([30, 25, 22, 17, 12, 10, 9, 5, 3, 2])  # targets per document, longest first
    tokens = np.concatenate([np.r_[tg.BOS_ID, np.full(n - 1, 5)] for n in lengths] + [[tg.BOS_ID]])
    val = tg.ValidationData(torch.from_numpy(tokens.astype(np.int32)), torch.ones(tokens.size, dtype=torch.int16))
    queue = tg.ttt_queue(val, hp)
    steps = [len(b["rows"]) for b in gpu_plan.chunk_steps(lengths, hp)]
    assert steps == [max(tg.chunk_count(d, hp.ttt_chunk_size) for d in docs) for _, docs in queue] == [8, 6, 3]
    plan = gpu_plan.global_sgd_plan(hp, gpu_plan.meta_model(hp), lengths, 1, gpu_plan.CALIBRATION)
    phases = tg.phase_plan([len(d) for _, d in queue], hp, 1)
    want = [sum(e - s for s, e in tg.phase_docs(queue, bound, docs, hp)) for bound, docs in phases]
    assert [p["tokens"] for p in plan] == want and want == ([77, 116] if stream_order == "queue" else [39, 116])
