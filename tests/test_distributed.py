"""Two CPU processes under torchrun (gloo): same stop step on the wallclock cap, same weights, same score."""

import re

from conftest import run_script, tiny_env


def test_two_process_torchrun_stops_together_and_agrees(tiny_dataset, tmp_path):
    env = tiny_env(tiny_dataset, tmp_path, MAX_WALLCLOCK_SECONDS=2, ITERATIONS=100_000, TRAIN_LOG_EVERY=0)
    result = run_script(env, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = re.findall(r"rank_summary rank:(\d)/2 stop_step:(\d+) val_bpb:(\S+) trained_weights_crc32:(\w+)",
                           result.stdout)
    assert sorted(s[0] for s in summaries) == ["0", "1"]
    (_, step0, bpb0, crc0), (_, step1, bpb1, crc1) = summaries
    assert step0 == step1 and bpb0 == bpb1 and crc0 == crc1  # replicas identical after DDP + Muon sharing
    assert 0 < int(step0) < 100_000
    assert f"stopping_early: wallclock_cap train_time:" in result.stdout
    assert re.search(rf"stopping_early: wallclock_cap train_time:(\d+)ms step:{step0}/100000", result.stdout)
    assert "world_size:2 grad_accum_steps:4" in result.stdout
