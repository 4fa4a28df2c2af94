"""What a resume checkpoint of a model costs: bytes per rank file and seconds to save and to load, measured on
this machine with one real training step (so every optimizer holds its state), on random tokens.

    .venv/bin/python scripts/checkpoint_cost.py                     # the default model (11x512, vocab 8192)
    NUM_LAYERS=6 MODEL_DIM=128 .venv/bin/python scripts/checkpoint_cost.py --world-size 8

Knobs come from the environment as for train_gpt.py (TRAIN_SEQ_LEN and TRAIN_BATCH_TOKENS are cut to keep the
step short). Rank 0's file holds the shared state, every rank's file its own Muon momenta; --world-size N
prints the sizes N ranks would write (the momenta split over N ranks), from the one-rank measurement."""

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data")]
import shard_io  # noqa: E402
import train_gpt as tg  # noqa: E402
import train_gpt_longrun as longrun  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-size", type=int, default=8, help="ranks to project the file sizes to")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"TRAIN_SEQ_LEN": "256", "TRAIN_BATCH_TOKENS": "2048", "AUTOCAST": "off", **os.environ,
               "DATA_PATH": tmp, "ARTIFACT_DIR": tmp, "RESUME_ENABLED": "1", "RESUME_SAVE_MINUTES": "1"}
        knobs = {f.name.upper() for f in dataclasses.fields(tg.Hyperparameters)}
        hp = tg.Hyperparameters.from_env({k: v for k, v in env.items() if k in knobs})
        tokens = np.random.default_rng(0).integers(2, hp.vocab_size, 200_000)
        tokens[::1000] = tg.BOS_ID
        shard_io.write_shard(Path(tmp) / "fineweb_train_000000.bin", tokens.tolist())
        rt = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), autocast=False)
        model = tg.build_model(hp, rt.device)
        models, optimizers = tg.Models(model, model, model), tg.build_optimizers(model, hp, rt)
        loader = tg.TrainLoader(tg.train_pattern(hp), rt, hp.train_batch_tokens)
        average = tg.WeightAverage(model, hp, print)
        loop = tg.LoopState(tg.stage_at(0.0, hp), step=1)
        tg.train_step(model, optimizers, loader, hp, rt, 0, 1.0, loop.stage)
        average.update(model, 1, 1.0, True)
        start = time.perf_counter()
        longrun.save_checkpoint(models, optimizers, average, loader, loop, hp, rt, lambda *a, **k: None)
        save_s = time.perf_counter() - start
        path = Path(hp.resume_dir) / "resume_rank0_step1.pt"
        start = time.perf_counter()
        checkpoint = longrun.read_checkpoint(dataclasses.replace(hp, resume_from=hp.resume_dir), rt)
        longrun.restore_checkpoint(checkpoint, models, optimizers, average, loader, rt, lambda *a, **k: None)
        load_s = time.perf_counter() - start
        muon = sum(p.numel() * p.element_size() for g in optimizers[-1].param_groups for p in g["params"])
        total, n = path.stat().st_size, args.world_size
        print(f"params:{sum(p.numel() for p in model.parameters())} rank_file_bytes(1 rank):{total} "
              f"save_seconds:{save_s:.2f} load_seconds:{load_s:.2f}")
        print(f"on {n} ranks: rank 0 ~{total - muon + muon // n} bytes, each other rank ~{muon // n} bytes "
              f"(~{total} bytes a checkpoint, whatever the world size)")


if __name__ == "__main__":
    try:
        main()
    except (tg.HyperparameterError, tg.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
