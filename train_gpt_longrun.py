"""
train_gpt_longrun.py: #2008's long-run features for train_gpt.py, resumable checkpoints (RESUME_*) and
periodic exports (EXPORT_MINUTES), and the setup of the run that scores such an export, or any saved artifact
(EVAL_ONLY_PATH: the model knobs from its header, the outputs.sha256 check). train_gpt.py imports this file only
when one of those knobs asks for it (train_gpt.long_run): a run without them neither loads it nor counts its
bytes; a run with them counts both files and ships both inside its packed stub.
"""

import functools
import hashlib
import io
import json
import pickle
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from train_gpt import (OUTPUT_SUMS, RUN_STATE, ArtifactError, DataError, HyperparameterError, Hyperparameters,
                       LoopState, Models, Runtime, Stage, TrainClock, TrainLoader, ValidationData, artifact_parts,
                       artifact_path, atomic_write_bytes, eval_val, export_artifact, knob_list, remove_stale_temps,
                       shard_paths, train_pattern, weights_kept, write_on_all_ranks)

# Resumable checkpoints (#2008): RESUME_DIR/resume_rank{r}_step{S}.pt per rank, then resume_manifest.json.
# What every rank holds alike (weights, averages, AdamW moments, loader position, loop state) is written once,
# in rank 0's file; each rank's file holds its own RNG and Muon momenta (a matrix's momentum lives only on
# the rank that orthogonalizes it). The manifest is replaced last: a save killed midway leaves the previous
# checkpoint whole. Files are plain tensors and containers, loaded with weights_only=True (no code unpickled).
RESUME_MANIFEST = "resume_manifest.json"
CHECKPOINT_FORMAT = 1
# The knobs a checkpoint's state depends on besides the model's own (Hyperparameters.model_config): data,
# initialization, schedule, optimizer and averaging. A continuation may change every other knob: its clock,
# horizon and length, where it reads and writes, what it logs, exports, saves and how it evaluates.
TRAINING_KNOBS = (
    "seed", "caseops_enabled", "eval_rows_by_doc", "train_batch_tokens", "train_seq_len", "gptq_reserve_seconds",
    "qk_gain_init", "tied_embed_init_std", "ortho_init", "sparse_attn_gate_init_std", "gated_attn_init_std",
    "warmdown_frac", "warmdown_iters", "min_lr", "enable_looping_at", "prog_depth", "train_seq_schedule",
    "embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", "muon_wd", "embed_wd", "adam_wd",
    "muon_momentum", "muon_backend_steps", "muon_polar_express", "muon_row_normalize", "muon_momentum_warmup_start",
    "muon_momentum_warmup_steps", "beta1", "beta2", "adam_eps", "grad_clip_norm", "grad_clip_per_rank",
    "muon_keep_warmup_momentum", "ema_decay", "swa_enabled", "swa_start_frac", "swa_every")

def training_fingerprint(hp: Hyperparameters) -> dict:
    return {**hp.model_config(), **{name: getattr(hp, name) for name in TRAINING_KNOBS}}

def rng_state(rt: Runtime) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state

def set_rng_state(state: dict[str, Tensor], rt: Runtime) -> None:
    torch.set_rng_state(state["cpu"])
    if rt.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], rt.device)

def checkpoint_state(models: Models, optimizers: list, average, loader: TrainLoader, loop: LoopState,
                     rt: Runtime) -> dict:
    local = dict(format=CHECKPOINT_FORMAT, rank=rt.rank, muon=optimizers[-1].state_dict(), rng=rng_state(rt))
    if not rt.is_main:
        return local
    weights = {k: v.detach().cpu() for k, v in models.raw.state_dict().items()}
    shared = dict(model=weights, adam=[opt.state_dict() for opt in optimizers[:-1]], loader=loader.state_dict(),
                  loop=asdict(loop))
    if average is not None:
        shared["average"] = dict(sum={k: v.cpu() for k, v in average.sum.items()}, count=average.count)
    return dict(local, **shared)

def checkpoint_name(rank: int | str, step: int | str) -> str:
    return f"resume_rank{rank}_step{step}.pt"

def save_checkpoint(models: Models, optimizers: list, average, loader: TrainLoader, loop: LoopState,
                    hp: Hyperparameters, rt: Runtime, log) -> None:
    """Every rank writes its file; once all are on disk, rank 0 replaces the manifest and deletes what is
    beyond RESUME_KEEP_LAST. A failed write (full disk) is reported and training goes on; the previous
    checkpoint stays whole."""
    start, directory = time.perf_counter(), Path(hp.resume_dir)
    buffer = io.BytesIO()
    torch.save(checkpoint_state(models, optimizers, average, loader, loop, rt), buffer)
    write = functools.partial(write_rank_file, directory, checkpoint_name(rt.rank, loop.step), buffer.getvalue())
    why = write_on_all_ranks(write, rt, "on another rank")
    digests = gather_digests(hashlib.sha256(buffer.getvalue()).digest(), rt)
    if why is None and rt.is_main:
        try:
            write_manifest(directory, loop, hp, rt, digests)
        except OSError as e:
            why = str(e)
    if why is not None:
        log(f"warning: resume checkpoint of step {loop.step} not written ({why}); the previous one is untouched")
        return
    if rt.is_main:  # the manifest names the new checkpoint now: a failed delete only leaves old files behind
        try:
            prune_checkpoints(directory, hp.resume_keep_last)
        except OSError as e:
            log(f"warning: checkpoints beyond RESUME_KEEP_LAST not all deleted ({e})")
    RUN_STATE["checkpoint"] = f"{directory} (step {loop.step})"
    log(f"resume:saved step:{loop.step} train_time:{loop.train_ms:.0f}ms dir:{directory} "
        f"seconds:{time.perf_counter() - start:.2f}")

def write_rank_file(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory, "resume_*")  # a killed save's
    atomic_write_bytes(directory / name, data)

def gather_digests(digest: bytes, rt: Runtime) -> list[str]:
    """Every rank's file sha256, for rank 0's manifest: a flipped byte would otherwise load and train on."""
    if not rt.distributed:
        return [digest.hex()]
    mine = torch.tensor(list(digest), dtype=torch.uint8, device=rt.device)
    parts = [torch.empty_like(mine) for _ in range(rt.world_size)]
    dist.all_gather(parts, mine)
    return [bytes(p.cpu().tolist()).hex() for p in parts]

def write_manifest(directory: Path, loop: LoopState, hp: Hyperparameters, rt: Runtime, digests: list[str]) -> None:
    manifest = dict(format=CHECKPOINT_FORMAT, step=loop.step, training_time_ms=loop.train_ms,
                    world_size=rt.world_size, timestamp=time.time(), exported_minutes=loop.exported,
                    rank_files={str(r): checkpoint_name(r, loop.step) for r in range(rt.world_size)},
                    sha256={str(r): d for r, d in enumerate(digests)}, fingerprint=training_fingerprint(hp))
    atomic_write_bytes(directory / RESUME_MANIFEST, json.dumps(manifest, indent=1).encode())

def prune_checkpoints(directory: Path, keep: int) -> None:
    """#2008's retention: the newest RESUME_KEEP_LAST checkpoints (by rank 0's file) stay, with all ranks' files."""
    newest_first = sorted(directory.glob(checkpoint_name(0, "*")), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in newest_first[keep:]:
        step = old.name.removesuffix(".pt").rsplit("_step", 1)[1]
        for path in directory.glob(checkpoint_name("*", step)):
            path.unlink(missing_ok=True)

def read_checkpoint(hp: Hyperparameters, rt: Runtime) -> dict:
    """RESUME_FROM checked against this run (world size, training knobs), then rank 0's file and this rank's
    loaded and the train shards compared; at startup, so a mismatch fails before any warm-up. Returns
    {manifest, shared, local}."""
    path = Path(hp.resume_from)
    path = path / RESUME_MANIFEST if path.is_dir() else path
    try:
        manifest = json.loads(path.read_text())
        ranks, saved = manifest["world_size"], manifest["fingerprint"]
    except FileNotFoundError:
        raise DataError(f"RESUME_FROM: no checkpoint manifest at {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"RESUME_FROM: {path} is not a checkpoint manifest ({type(e).__name__}: {e})") from None
    if ranks != rt.world_size:
        raise DataError(f"RESUME_FROM: the checkpoint was written by {ranks} ranks and this run has "
                        f"{rt.world_size}: resume on {ranks} (each rank holds its own Muon momenta and RNG)")
    ours = training_fingerprint(hp)
    changed = [f"{k.upper()}={saved.get(k, '(absent)')} (this run: {ours.get(k, '(absent)')})"
               for k in sorted(set(saved) | set(ours)) if saved.get(k) != ours.get(k)]
    if changed:
        raise DataError(f"RESUME_FROM: the checkpoint was trained with {', '.join(changed)}; a continuation keeps "
                        "every training knob (it may change only its clock, horizon, outputs and logging)")
    files = {r: path.parent / manifest["rank_files"][str(r)] for r in {0, rt.rank}}
    sums = manifest.get("sha256", {})  # absent in manifests written before checksums
    loaded = {r: load_checkpoint_file(f, r, sums.get(str(r))) for r, f in files.items()}
    check_same_shards(loaded[0]["loader"]["shards"], shard_paths(train_pattern(hp)))
    return dict(manifest=manifest, shared=loaded[0], local=loaded[rt.rank])

def check_same_shards(saved: list[str], paths: list[Path]) -> None:
    """A loader position means other tokens on another shard list."""
    if saved != [p.name for p in paths]:
        raise DataError(f"RESUME_FROM: the checkpoint read {len(saved)} train shards ({saved[0]}..{saved[-1]}), "
                        f"this run has {len(paths)} ({paths[0].name}..{paths[-1].name}): resume on the same shards")

def load_checkpoint_file(path: Path, rank: int, sha256: str | None = None) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"RESUME_FROM: {path}, listed in the manifest, is missing") from None
    except OSError as e:
        raise DataError(f"RESUME_FROM: {path} cannot be read ({e.strerror})") from None
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:  # flipped bytes may still unpickle
        raise DataError(f"RESUME_FROM: {path} does not match the sha256 its manifest records (damaged or "
                        "replaced since the save)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise DataError(f"RESUME_FROM: {path} is damaged ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or state.get("rank") != rank:
        raise DataError(f"RESUME_FROM: {path} is not rank {rank}'s checkpoint of format {CHECKPOINT_FORMAT}")
    return state

def restore_checkpoint(checkpoint: dict, models: Models, optimizers: list, average, loader: TrainLoader,
                       rt: Runtime, log) -> LoopState:
    """Everything the loop would have had at the saved step; returns its loop state."""
    shared, local = checkpoint["shared"], checkpoint["local"]
    models.raw.load_state_dict(shared["model"], strict=True)
    for opt, state in zip(optimizers, [*shared["adam"], local["muon"]], strict=True):
        opt.load_state_dict(state)
    if average is not None:
        for name, tensor in shared["average"]["sum"].items():
            average.sum[name].copy_(tensor)
        average.count = shared["average"]["count"]
    loader.load_state_dict(shared["loader"])
    set_rng_state(local["rng"], rt)
    saved = shared["loop"]
    loop = LoopState(**dict(saved, stage=Stage(**saved["stage"])))
    log(f"resume:restored step:{loop.step} train_time:{loop.train_ms:.0f}ms exported_minutes:{loop.exported} "
        f"plan:{loop.stage.plan} span:{loop.stage.span}")
    return loop

def milestones(hp: Hyperparameters) -> tuple[list[float], list[float], list[int]]:
    """Where the loop pauses: EXPORT_MINUTES, and with RESUME_ENABLED the RESUME_SAVE_MINUTES and _STEPS."""
    saves = hp.resume_enabled
    return (knob_list(hp, "export_minutes"), knob_list(hp, "resume_save_minutes") if saves else [],
            knob_list(hp, "resume_save_steps") if saves else [])

def run_milestones(models: Models, optimizers, average, loader: TrainLoader, val: ValidationData, loop: LoopState,
                   milestones: tuple, clock: TrainClock, hp: Hyperparameters, rt: Runtime, log) -> None:
    """The export and save minutes (milestones) the loop's (all-reduced, so common) clock has reached: one export
    and one checkpoint at most per step, with the clock paused."""
    minutes, (exports, saves, save_steps) = loop.train_ms / 60_000, milestones
    export = next((m for m in exports if m <= minutes and m not in loop.exported), None)
    saves = [m for m in saves if m <= minutes and m not in loop.saved]
    if export is None and not saves and loop.step not in save_steps:
        return
    with clock.paused():
        if export is not None:
            periodic_export(models, average, val, hp, rt, log, export, loop.step, loop.train_ms)
            loop.exported.append(export)
        if saves or loop.step in save_steps:
            loop.saved += saves  # minutes passed together (a resume past several) make one checkpoint
            save_checkpoint(models, optimizers, average, loader, loop, hp, rt, log)

def periodic_export(models: Models, average, val: ValidationData, hp: Hyperparameters, rt: Runtime, log,
                    minute: float, step: int, train_ms: float) -> None:
    """EXPORT_MINUTES (#2008's long-run milestones): the averaged weights (EMA/SWA, as the end of training
    would load them) exported to ARTIFACT_DIR/export_{M}min/ and one JSON line appended to exports.jsonl;
    then the live weights and the RNG come back, so training goes on exactly as without the export."""
    start, rng = time.perf_counter(), rng_state(rt)
    record = dict(minute=minute, step=step, train_seconds=round(train_ms / 1000, 3))
    with weights_kept(models.raw):
        if average is not None and (state := average.average(models.raw)) is not None:
            models.raw.load_state_dict(state, strict=True)
        if hp.export_eval:
            record["val_loss"], record["val_bpb"] = eval_val(models.raw, val, hp, rt)
        out = replace(hp, artifact_dir=str(Path(hp.artifact_dir) / f"export_{minute:g}min"))
        try:
            path = export_artifact(models.raw, out, rt, log)
            record.update(artifact=str(path), artifact_bytes=path.stat().st_size)
        except ArtifactError as e:  # a milestone over the cap (or a full disk) is reported, training goes on
            record["error"] = str(e)
        record["export_seconds"] = round(time.perf_counter() - start, 3)
    set_rng_state(rng, rt)
    if rt.is_main:
        with open(Path(hp.artifact_dir) / "exports.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    log(f"export:{minute:g}min " + " ".join(f"{k}:{v}" for k, v in record.items() if k != "minute"))

# -------- EVAL-ONLY: score a saved artifact (an export above, or any run's) in a fresh process

def eval_only_hyperparameters(hp: Hyperparameters, environ) -> Hyperparameters:
    """EVAL_ONLY_PATH: model knobs from the artifact's header; one given with another value is refused."""
    path = artifact_path(hp) if hp.eval_only_path == "1" else Path(hp.eval_only_path)
    if not path.is_file():
        raise DataError(f"EVAL_ONLY_PATH: no artifact at {path}")
    check_output_set(path)
    stored, model_knobs = artifact_parts(path.read_bytes())[0]["config"], hp.model_config()
    if extra := set(stored) - set(model_knobs):
        raise ArtifactError(f"{path} has model knobs this train_gpt.py lacks: {', '.join(extra)}")
    clash = [f"{k.upper()}={environ[k.upper()]} (artifact: {v})" for k, v in stored.items()
             if k.upper() in environ and getattr(hp, k) != v]
    if clash:
        raise HyperparameterError(f"{', '.join(clash)}: an eval-only run takes the model knobs from {path}")
    return Hyperparameters.from_env({**environ, **{k.upper(): str(v) for k, v in stored.items()},
                                     "EVAL_ONLY_PATH": str(path)})

def check_output_set(path: Path) -> None:
    """The artifact matches train_gpt.py's OUTPUT_SUMS listing beside it, if any (a kill between an export's
    renames leaves a mixed set: the previous listing, which the replaced files no longer match)."""
    listing = path.parent / OUTPUT_SUMS
    try:
        sums = {n.strip(): h for h, n in (ln.split(" ", 1) for ln in listing.read_text().splitlines() if ln)}
    except (OSError, ValueError):  # no listing (a set written before them): nothing to compare
        return
    if path.name in sums and hashlib.sha256(path.read_bytes()).hexdigest() != sums[path.name]:
        raise DataError(f"{path} does not match {listing}: an export was stopped between its renames (a mixed "
                        "set); export again")
