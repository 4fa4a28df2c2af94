"""Two CPU processes under torchrun (gloo): on the wallclock cap both ranks stop on the same step, switch
layer plans (looping, progressive depth) on the same step, hold identical weights and report one score."""

import re

import pytest

from conftest import run_script, tiny_env

SCHEDULES = {
    "looping": dict(NUM_LAYERS=3, NUM_LOOPS=1, LOOP_START=1, LOOP_END=1, ENABLE_LOOPING_AT=0.4),
    "progressive_depth": dict(NUM_LAYERS=2, NUM_REPEATS=4, PROG_DEPTH="0.3:2,0.6:3,1.0:4", NUM_VALUE_EMBEDS=1),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_two_process_torchrun_switches_and_stops_together(tiny_dataset, tmp_path, schedule, numeric_mode):
    env = tiny_env(tiny_dataset, tmp_path, MAX_WALLCLOCK_SECONDS=5, ITERATIONS=100_000, TRAIN_LOG_EVERY=0,
                   AUTOCAST=numeric_mode, **SCHEDULES[schedule])
    result = run_script(env, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = re.findall(r"rank_summary rank:(\d)/2 stop_step:(\d+) plan_switches:(\S+) val_bpb:(\S+) "
                           r"trained_weights_crc32:([0-9a-f]{8})", result.stdout)
    assert sorted(s[0] for s in summaries) == ["0", "1"]
    assert summaries[0][1:] == summaries[1][1:]  # same stop step, switch steps, score and weights
    stop_step, switches = int(summaries[0][1]), [int(s) for s in summaries[0][2].split(",")]
    assert 0 < switches[0] < stop_step < 100_000
    assert len(switches) == (1 if schedule == "looping" else 2)
    assert re.search(rf"stopping_early: wallclock_cap train_time:\d+ms step:{stop_step}/100000", result.stdout)
    switch_line = "layer_loop:enabled" if schedule == "looping" else "prog_depth: switched to 3 repeats"
    assert f"{switch_line} step:{switches[0]}" in result.stdout.replace(" at step:", " step:")
    assert "world_size:2 grad_accum_steps:4" in result.stdout


def test_per_rank_clipping_keeps_ranks_in_sync_and_changes_the_step(tiny_dataset, tmp_path):
    """GRAD_CLIP_PER_RANK=1 clips each rank's own gradient before the average (as #1855); with a clip this
    tight that is another update than clipping the average, and both ranks still hold identical weights."""
    runs = {}
    for per_rank in ("0", "1"):
        env = tiny_env(tiny_dataset, tmp_path / per_rank, ITERATIONS=4, GRAD_CLIP_NORM=0.05,
                       GRAD_CLIP_PER_RANK=per_rank, TRAIN_LOG_EVERY=0, QUANT_METHOD="int8", CODE_PACKING="raw")
        result = run_script(env, nproc=2)
        assert result.returncode == 0, result.stderr[-3000:]
        crcs = re.findall(r"rank_summary rank:\d/2 .* trained_weights_crc32:([0-9a-f]{8})", result.stdout)
        assert len(crcs) == 2 and crcs[0] == crcs[1]
        runs[per_rank] = crcs[0]
    assert runs["0"] != runs["1"]
