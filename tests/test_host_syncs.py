"""What a training step and a TTT chunk step would make the host wait for on CUDA, counted on the CPU by
scripts/host_syncs.py: one sync a training step (its clock), none a TTT chunk step, every host->device copy
non-blocking; and the counter itself sees each kind of sync it claims to."""

import torch

import host_syncs
import train_gpt as tg


def kinds(events) -> list[str]:
    return [kind for kind, _ in events]


def test_a_training_step_waits_for_the_gpu_once_at_its_clock(tmp_path):
    m = host_syncs.training_step(tg, str(tmp_path))
    assert m["step"].syncs == [] and m["ema"].syncs == []  # 8 micro-batches, clipping, Muon, fused AdamW, EMA
    [(kind, where)] = m["clock"].syncs
    assert kind == "tolist()" and "step_clock" in where
    micro = [t for k, t in m["step"].buckets.items() if k != "outside"]
    assert len(micro) == 8 and all(len(t.transfers) == 2 for t in micro)  # the row and its cu_seqlens
    assert len(m["clock"].transfers) == 1 and m["step"].buckets["outside"].transfers == []


def test_a_ttt_chunk_step_never_waits_for_the_gpu():
    batch = host_syncs.ttt_batch_steps(tg, 3)["batch"]
    steps = {k: t for k, t in batch.buckets.items() if k != "outside"}
    assert sorted(steps) == [0, 1, 2]  # three chunks: trained, trained, scored only
    for t in steps.values():
        assert t.syncs == [] and len(t.transfers) == 1  # positions, masks, targets, bytes: one packed copy
    assert kinds(batch.buckets["outside"].syncs) == ["tolist()"]  # the batch's progress line, once a batch


def test_the_counter_sees_each_kind_of_sync():
    x = torch.arange(6.0, device=torch.device("cpu"))  # a torch.device object: the accelerator, to the counter
    with host_syncs.HostSyncs() as hs:
        x.sum().item()
        x.tolist()
        torch.nonzero(x > 2)
        _ = x[x > 2]
        torch.tensor([1.0], device=torch.device("cpu"))
        torch.ones(3).to(x.device)
        torch.ones(3).to(x.device, non_blocking=True)
        torch.nonzero_static(x > 2, size=6)
    assert kinds(hs.syncs) == ["item()", "tolist()", "nonzero", "boolean index", "torch.tensor(device=) host->device",
                               "to(device) host->device"]
    assert kinds(hs.tally.transfers) == ["to(device) host->device, non_blocking"]
