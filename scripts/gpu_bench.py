"""GPU checks of train_gpt.py that find costly mistakes in a smoke test's first minutes (scripts/gpu_smoke.sh).

    python scripts/gpu_bench.py fa3   [--tokens 98304] [--span 2048] [--reps 20] [--seed 0]
    python scripts/gpu_bench.py syncs [--tokens 786432] [--steps 5] [--warmup 2] [--device cuda|cpu] [--small]
    python scripts/gpu_bench.py ttt   [--device cuda|cpu] [--small]
    python scripts/gpu_bench.py data  --out DIR [--vocab 8192] [--shards 3] [--shard-tokens 16000000]
                                      [--val-tokens 131072]

fa3    FlashAttention-3 varlen forward + backward on one training row (TRAIN_BATCH_TOKENS / 8 tokens; the default
       recipe's 8 heads, 4 KV heads, head dim 64, span TRAIN_SEQ_LEN, bf16, causal) whose documents are drawn
       (fixed seed; the most padded of 32 rows) from gpu_plan's modelled FineWeb lengths: the bucketed cu_seqlens
       train_gpt.py passes, the same trimmed to the real segments, and the old worst-case sizing (1 + T//16 +
       T//span segments). Exit 1 when bucketed and trimmed are more than 5% apart in time, or outputs differ.
syncs  WARMUP_STEPS compile warm-up as train_gpt.py runs it (every stage, every cu_seqlens bucket), then --steps
       steps of each schedule stage as the timed loop runs them (train_step, the EMA update, step_clock) on a
       random-token shard, under torch.cuda.set_sync_debug_mode("warn"): every host sync by train_gpt.py line.
       Exit 1 unless each step syncs exactly once (step_clock) and no graph is built while measuring.
ttt    One score-first LoRA TTT chunk step (compiled scorer, warmed up: the third run of a shape is timed) at
       TTT_BATCH_SIZE rows and at 1 row of a full TTT_EVAL_SEQ_LEN window; its time, peak memory and host syncs
       (exit 1 if any); then the busiest rank's TTT time on 8 GPUs projected from the two: a chunk step costs
       fixed + rows x per-row (fitted to the two), the per-row part scaled by the step's widest window (the
       full_width numbers: unscaled, an upper bound), over gpu_plan's modelled FineWeb documents in TTT batches,
       dynamic claiming, plus gpu_plan's global-SGD seconds.
data   A tokenizer of exactly --vocab pieces (SentencePiece BPE, byte fallback, BOS 1) trained on generated
       random words, and shards of random token ids with a BOS every ~957 tokens (FineWeb's mean document):
       the vocab-8192 training run of the smoke test, built without a download.

Knobs in the environment pass through as train_gpt.py reads them. --device cpu --small runs the syncs and ttt
code paths on a CPU at toy sizes (no sync detection there: `detector:none`). Every result is one or more
`key:value` lines:
    fa3: tokens:T span:S heads:H kv_heads:K head_dim:D segments:N entries_trimmed:E entries_bucketed:E
         entries_worst:E ms_trimmed:X ms_bucketed:X ms_worst:X bucketed_over_trimmed:R max_abs_diff:X
    sync: stage:train plan:P span:S at:FILE:LINE in:FUNCTION count:N       (also stage:ttt rows:R)
    syncs: plan:P span:S steps:N syncs:N per_step:X expected:1 graphs_built:N step_ms:X detector:cuda|none
    ttt_step: rows:R width:W scored:C ms:X peak_mib:M syncs:N warmup_s:X
    ttt_projected: ranks:8 docs:N batches:N chunk_steps:N fixed_ms:X per_row_ms:X scoring_s:X
         scoring_full_width_s:X global_sgd_s:X total_s:X full_width_total_s:X plan_total_s:X budget_s:X
    data: out:DIR vocab:V train_shards:N shard_tokens:N val_tokens:N mean_doc:X seconds:X
Exit codes: 0 ok, 1 a check failed, 2 refused (no CUDA; fa3: no CUDA or no FlashAttention-3) or bad usage.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data"), str(REPO / "scripts")]
import gpu_plan  # noqa: E402
import shard_io  # noqa: E402
import train_gpt as tg  # noqa: E402

TRAIN_GPT = str((REPO / "train_gpt.py").resolve())
SYNC_MESSAGE = "synchronizing CUDA operation"  # torch.cuda.set_sync_debug_mode("warn")'s warning
MEAN_DOC_TOKENS = 957  # FineWeb val's mean document (gpu_plan.FINEWEB_VAL_TARGETS / FINEWEB_VAL_DOCS)
FA3_TOLERANCE = 0.05  # bucketed vs trimmed time
# The default recipe's structure (loop, lanes, gates, XSA everywhere) at toy sizes, for --small (the CPU path)
SMALL = dict(NUM_LAYERS=4, LOOP_START=1, LOOP_END=2, PARALLEL_START_LAYER=2, MODEL_DIM=32, NUM_HEADS=4,
             NUM_KV_HEADS=2, ROPE_DIMS=4, VOCAB_SIZE=256, TRAIN_SEQ_LEN=64, TRAIN_BATCH_TOKENS=1024,
             VAL_BATCH_SIZE=1024, AUTOCAST="off", TTT_EVAL_SEQ_LEN=64, TTT_LORA_RANK=4)


class Refusal(Exception):
    """One `gpu_bench: error:` line, exit 2."""


def hyperparameters(overrides: dict) -> tg.Hyperparameters:
    try:
        return tg.Hyperparameters.from_env({**os.environ, **{k: str(v) for k, v in overrides.items()}})
    except tg.HyperparameterError as e:
        raise Refusal(" ".join(str(e).split())) from None


def bench_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise Refusal("no CUDA GPU (torch.cuda.is_available() is False); --device cpu --small runs the CPU path")
    if name == "cpu":  # toy shapes: one thread, as torchrun sets it (two on a busy 2-core host: 10-50x slower steps)
        torch.set_num_threads(1)
    return torch.device("cuda", 0) if name == "cuda" else torch.device("cpu")


def runtime(hp: tg.Hyperparameters, device: torch.device) -> tg.Runtime:
    """One process, as init_runtime sets it up (TF32 on CUDA, the autocast rule)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    native_bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return tg.Runtime(0, 1, 0, device, hp.autocast == "bf16" or (hp.autocast == "auto" and native_bf16))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def line(prefix: str, **fields) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return f"{prefix}: " + " ".join(f"{k}:{fmt(v)}" for k, v in fields.items())


# -----------------------------------------------------------------------------------------------
# Host syncs: torch.cuda.set_sync_debug_mode("warn"), each warning attributed to a train_gpt.py line
# -----------------------------------------------------------------------------------------------


class SyncRecorder:
    """While active, counts the sync warnings by where they come from: the innermost frame of `target`
    (train_gpt.py), else the innermost frame outside torch and the warnings module. cuda=False: no debug
    mode (a CPU), only warnings issued by hand are counted (the tests)."""

    def __init__(self, target: str = TRAIN_GPT, cuda: bool = True):
        self.target, self.cuda, self.counts = os.path.realpath(target), cuda, Counter()

    def __enter__(self):
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        warnings.filterwarnings("always", message=f".*{SYNC_MESSAGE}")
        shown = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, text=None):
            if SYNC_MESSAGE in str(message):
                self.counts[self.where(traceback.extract_stack()[:-1])] += 1
            else:
                shown(message, category, filename, lineno, file, text)

        warnings.showwarning = hook
        if self.cuda:
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
        self.catch.__exit__(*exc)
        return False

    def where(self, stack: list) -> tuple[str, int, str]:
        torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
        frames = [(os.path.realpath(f.filename), f) for f in stack]
        mine = [f for path, f in frames if path == self.target]
        other = [f for path, f in frames if not path.startswith(torch_dir) and Path(path).name != "warnings.py"]
        f = (mine or other or [stack[-1]])[-1]
        return Path(f.filename).name, f.lineno, f.name

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self, **context) -> list[str]:
        return [line("sync", **context, at=f"{name}:{lineno}", **{"in": func}, count=n)
                for (name, lineno, func), n in sorted(self.counts.items())]


# -----------------------------------------------------------------------------------------------
# fa3: bucketed vs trimmed cu_seqlens
# -----------------------------------------------------------------------------------------------


def row_bos(tokens: int, seed: int) -> np.ndarray:
    """BOS positions of a row cut from a stream of documents drawn from gpu_plan's modelled FineWeb lengths
    (documents in stream order are a uniform draw of documents), starting inside its first document."""
    rng, lengths = np.random.default_rng(seed), gpu_plan.modelled_lengths()
    picks = rng.choice(lengths, size=4 * tokens // MEAN_DOC_TOKENS + 64)
    while picks.sum() < 2 * tokens:
        picks = np.concatenate([picks, rng.choice(lengths, size=picks.size)])
    ends, offset = np.cumsum(picks), int(rng.integers(picks[0]))
    return ends[(ends > offset) & (ends < offset + tokens)] - offset


def fa3_boundaries(tokens: int, span: int, seed: int, candidates: int = 32) -> dict[str, np.ndarray]:
    """cu_seqlens of a row: as train_gpt.py passes them (bucketed), trimmed to segments + 1 entries, and the old
    worst-case capacity of 1 + T//16 + T//span segments, each padded with T. The row is the most padded of
    `candidates` drawn (FineWeb-like rows take 128 or 192 entries: up to 63 empty segments), bucketing's worst."""
    rows = [tg.segment_starts(row_bos(tokens, seed * candidates + i), tokens, span) for i in range(candidates)]
    starts = max(rows, key=lambda s: tg.bucketed_cu_seqlens(s, tokens).size - s.size)
    worst = np.full(1 + tokens // 16 + tokens // span + 1, tokens, dtype=np.int32)
    worst[: starts.size] = starts
    return dict(trimmed=np.append(starts, tokens).astype(np.int32),
                bucketed=tg.bucketed_cu_seqlens(starts, tokens), worst=worst)


def time_fa3(qkv: tuple, cu: torch.Tensor, span: int, reps: int) -> tuple[float, torch.Tensor]:
    """Median ms of forward + backward (3 warm-ups first), and the forward's output."""
    q, k, v = qkv

    def run():
        out = tg.flash_attn_varlen_func(q, k, v, cu, cu, span, span, causal=True)
        out = out[0] if isinstance(out, tuple) else out
        torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
        return out

    for _ in range(3):
        out = run()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), out.detach()


def cmd_fa3(args) -> int:
    if args.device != "cuda" or not torch.cuda.is_available():
        raise Refusal("fa3 needs a CUDA GPU (torch.cuda.is_available() is False or --device cpu)")
    if tg.flash_attn_varlen_func is None:
        raise Refusal("FlashAttention-3 is not installed (import flash_attn_interface failed)")
    hp, device = hyperparameters({}), bench_device("cuda")
    tokens, span = args.tokens or hp.train_batch_tokens // 8, args.span or hp.train_seq_len
    head_dim, gen = hp.model_dim // hp.num_heads, torch.Generator(device).manual_seed(args.seed)
    qkv = tuple(torch.randn(tokens, h, head_dim, device=device, generator=gen, dtype=torch.bfloat16).requires_grad_()
                for h in (hp.num_heads, hp.num_kv_heads, hp.num_kv_heads))
    cus = fa3_boundaries(tokens, span, args.seed)
    ms, outs = {}, {}
    for name, cu in cus.items():
        ms[name], outs[name] = time_fa3(qkv, torch.from_numpy(cu).to(device), min(span, tokens), args.reps)
    ratio = ms["bucketed"] / ms["trimmed"]
    diff = float((outs["bucketed"].float() - outs["trimmed"].float()).abs().max())
    print(line("fa3", tokens=tokens, span=span, heads=hp.num_heads, kv_heads=hp.num_kv_heads, head_dim=head_dim,
               segments=cus["trimmed"].size - 1, entries_trimmed=cus["trimmed"].size,
               entries_bucketed=cus["bucketed"].size, entries_worst=cus["worst"].size, ms_trimmed=ms["trimmed"],
               ms_bucketed=ms["bucketed"], ms_worst=ms["worst"], bucketed_over_trimmed=ratio, max_abs_diff=diff))
    if abs(ratio - 1) > FA3_TOLERANCE or not diff < 1e-2:
        print(f"gpu_bench: error: bucketed cu_seqlens take {ratio:.3f}x the trimmed time (limit 1 +- "
              f"{FA3_TOLERANCE}), outputs differ by {diff:.3g}", file=sys.stderr)
        return 1
    return 0


# -----------------------------------------------------------------------------------------------
# syncs: the timed loop's steps under the sync debug mode
# -----------------------------------------------------------------------------------------------


def write_random_shard(path: Path, tokens: int, vocab: int, seed: int) -> None:
    """Random ids in 4..vocab-1 (no pad, BOS, EOS, unk) with a BOS at the start and every ~957 tokens."""
    rng = np.random.default_rng(seed)
    shard = rng.integers(4, vocab, tokens, dtype=np.uint16)
    gaps = rng.geometric(1 / MEAN_DOC_TOKENS, tokens // MEAN_DOC_TOKENS * 2 + 16)
    bos = np.cumsum(gaps)
    shard[bos[bos < tokens]] = tg.BOS_ID
    shard[0] = tg.BOS_ID
    shard_io.write_shard(path, shard)


def sync_knobs(args, data_dir: str) -> dict:
    knobs = dict(SMALL) if args.small else {}
    if args.tokens:
        knobs["TRAIN_BATCH_TOKENS"] = args.tokens
    return {**knobs, "DATA_PATH": data_dir, "WARMUP_STEPS": args.warmup}


def loop_step(models: tg.Models, optimizers, average, loader, hp, rt, step: int, stage: tg.Stage) -> None:
    """What train_loop does for one step: LR, train_step, the EMA update, step_clock (its one host sync)."""
    lr_scale = tg.lr_scale_at(step, 0.0, hp)
    loss = tg.train_step(models.train, optimizers, loader, hp, rt, step, lr_scale, stage)
    if average is not None:
        average.update(models.raw, step + 1, lr_scale, stage.plan == len(models.raw.plans) - 1)
    tg.step_clock(loss, 0.0, rt)


def measure_stage(models, optimizers, average, loader, hp, rt, stage: tg.Stage, steps: int) -> tuple[dict, list]:
    """One step unmeasured (the stage's first batch), then `steps` under the recorder."""
    loop_step(models, optimizers, average, loader, hp, rt, 0, stage)
    synchronize(rt.device)
    graphs, t0 = tg.compiled_graphs(), time.perf_counter()
    with SyncRecorder(cuda=rt.device.type == "cuda") as rec:
        for i in range(steps):
            loop_step(models, optimizers, average, loader, hp, rt, 1 + i, stage)
    synchronize(rt.device)  # a sync warning is raised by the host call that waits, never later
    step_ms = 1000 * (time.perf_counter() - t0) / steps
    result = dict(plan=stage.plan, span=stage.span, steps=steps, syncs=rec.total, per_step=rec.total / steps,
                  expected=1, graphs_built=tg.compiled_graphs() - graphs, step_ms=step_ms,
                  detector="cuda" if rec.cuda else "none")
    return result, rec.lines(stage="train", plan=stage.plan, span=stage.span)


def cmd_syncs(args) -> int:
    device = bench_device(args.device)
    with tempfile.TemporaryDirectory(prefix="gpu_bench_syncs_") as tmp:
        hp = hyperparameters(sync_knobs(args, tmp))
        rt, stages = runtime(hp, device), tg.schedule_stages(hp)
        steps_needed = (args.warmup + args.steps + 2) * len(stages) + 2
        write_random_shard(Path(tmp) / "fineweb_train_000000.bin", steps_needed * (hp.train_batch_tokens + 8) + 4096,
                           hp.vocab_size, seed=0)
        models = tg.prepare_models(hp, rt)
        optimizers = tg.build_optimizers(models.raw, hp, rt)
        tg.compile_warmup_and_restore(models, optimizers, hp, rt, lambda *a, **k: None)
        average = tg.WeightAverage(models.raw, hp, lambda *a, **k: None) if hp.ema_decay > 0 else None
        loader = tg.TrainLoader(tg.train_pattern(hp), rt, hp.train_batch_tokens, hp.doc_isolation)
        failed = False
        try:
            for stage in stages:
                result, sites = measure_stage(models, optimizers, average, loader, hp, rt, stage, args.steps)
                print("\n".join(sites + [line("syncs", **result)]), flush=True)
                failed |= device.type == "cuda" and (result["syncs"] != args.steps or result["graphs_built"] > 0)
        finally:
            loader.close()
    if failed:
        print("gpu_bench: error: a training step should sync once (step_clock) and build no graph", file=sys.stderr)
    return int(failed)


# -----------------------------------------------------------------------------------------------
# ttt: one chunk step at a full window, measured, and the projected TTT time on 8 GPUs
# -----------------------------------------------------------------------------------------------


def ttt_documents(hp: tg.Hyperparameters, rows: int, seed: int) -> tuple[tg.ValidationData, list, int]:
    """`rows` documents of random tokens, each with a chunk after step `step`, the first step whose window
    is a full TTT_EVAL_SEQ_LEN (the tokens before the chunk's end)."""
    step = -(-hp.ttt_eval_seq_len // hp.ttt_chunk_size) - 1
    length = (step + 2) * hp.ttt_chunk_size
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, hp.vocab_size, (rows * length + 1,), generator=gen, dtype=torch.int32)
    tokens[torch.arange(rows) * length] = tg.BOS_ID
    docs = [(i * length, (i + 1) * length) for i in range(rows)]
    return tg.ValidationData(tokens, torch.ones_like(tokens, dtype=torch.int16)), docs, step


def ttt_run(model, lora, optimizer, meters, docs: list, step: int, hp, rt) -> dict:
    """Two warm-up runs (the second under the sync recorder), the third timed; peak memory of the third."""
    rows = len(docs)
    windows = tg.chunk_windows(docs, step, tg.chunk_size_of(docs, hp), hp)
    host, _ = tg.window_arrays(windows, meters, hp.ttt_eval_seq_len, hp)
    host["train"] = np.ones(rows, np.int32)
    cuda = rt.device.type == "cuda"
    args = (model, lora.delta(rows), optimizer, host, meters, "warmup", hp, rt)
    t0 = time.perf_counter()
    tg.ttt_step(*args)
    with SyncRecorder(cuda=cuda) as rec:
        tg.ttt_step(*args)
    synchronize(rt.device)
    warmup_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats(rt.device)
    t0 = time.perf_counter()
    tg.ttt_step(*args)
    synchronize(rt.device)
    ms = 1000 * (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(rt.device) // 2**20 if cuda else "-"
    result = dict(rows=rows, width=host["x"].shape[1], scored=host["index"].shape[1], ms=ms, peak_mib=peak,
                  syncs=rec.total if cuda else "-", warmup_s=warmup_s)
    return dict(result=result, sites=rec.lines(stage="ttt", rows=rows))


def step_costs(lengths: np.ndarray, hp: tg.Hyperparameters, fixed_s: float, per_row_s: float,
               full_width: bool = False) -> tuple[np.ndarray, int]:
    """Seconds of every TTT batch (gpu_plan.chunk_steps: chunked as ttt_batch chunks them): each chunk step
    fixed_s + per_row_s x its rows, the per-row cost scaled by the step's widest window over TTT_EVAL_SEQ_LEN
    (full_width: not scaled, an upper bound)."""
    costs, steps = [], 0
    for b in gpu_plan.chunk_steps(lengths, hp):
        scale = 1.0 if full_width else b["width"] / hp.ttt_eval_seq_len
        costs.append(float((fixed_s + per_row_s * b["rows"] * scale).sum()))
        steps += len(b["rows"])
    return np.array(costs), steps


def ttt_projection(hp: tg.Hyperparameters, big: dict, one: dict, ranks: int = 8) -> dict:
    """Busiest rank over `ranks` (dynamic claiming, phases as barriers) from the two measured steps, plus
    gpu_plan's global-SGD estimate; gpu_plan's own calibrated projection beside it."""
    per_row = max(0.0, (big["ms"] - one["ms"]) / max(1, big["rows"] - 1)) / 1000
    fixed = max(0.0, one["ms"] / 1000 - per_row)
    lengths, meta = gpu_plan.modelled_lengths(), gpu_plan.meta_model(hp)
    costs, steps = step_costs(lengths, hp, fixed, per_row)
    bound_costs, _ = step_costs(lengths, hp, fixed, per_row, full_width=True)
    phases = gpu_plan.global_sgd_plan(hp, meta, lengths, ranks, gpu_plan.CALIBRATION)
    bounds = [p["after_batch"] for p in phases] + [len(costs)]
    scoring = sum(leg["dynamic"] for leg in gpu_plan.scoring_legs(costs, bounds, ranks))
    bound = sum(leg["dynamic"] for leg in gpu_plan.scoring_legs(bound_costs, bounds, ranks))
    sgd = sum(p["projected_seconds"] for p in phases)
    plan = gpu_plan.ttt_plan(hp, meta, lengths, ranks)["projected_seconds_dynamic"]
    return dict(ranks=ranks, docs=len(lengths), batches=len(costs), chunk_steps=steps, fixed_ms=1000 * fixed,
                per_row_ms=1000 * per_row, scoring_s=scoring, scoring_full_width_s=bound, global_sgd_s=sgd,
                total_s=scoring + sgd, full_width_total_s=bound + sgd, plan_total_s=plan,
                budget_s=hp.eval_budget_seconds)


def cmd_ttt(args) -> int:
    device = bench_device(args.device)
    hp = hyperparameters(dict(SMALL) if args.small else {})
    rt = runtime(hp, device)
    fake_hp = replace(hp, ngram_tilt_enabled=False, use_hedge=False, ttt_short_doc_chunks="")
    model = tg.build_model(hp, device)
    if tg.attention_backend(model.hp, device) == "flex":  # as eval_stages: the eval runs SDPA, not Flex
        model = tg.sdpa_view(model)
    model.eval()
    model.requires_grad_(False)
    fake, docs, step = ttt_documents(fake_hp, hp.ttt_batch_size, seed=hp.seed)
    meters = tg.StageMeters(["warmup"], fake, rt)
    lora = tg.new_lora(model, fake_hp, 0, len(docs), {})
    optimizer = tg.ttt_optimizer(lora, fake_hp)
    runs = [ttt_run(model, lora, optimizer, meters, docs[:rows], step, fake_hp, rt) for rows in (len(docs), 1)]
    for run in runs:
        print("\n".join(run["sites"] + [line("ttt_step", **run["result"])]), flush=True)
    print(line("ttt_projected", **ttt_projection(hp, runs[0]["result"], runs[1]["result"])))
    if device.type == "cuda" and any(run["result"]["syncs"] for run in runs):
        print("gpu_bench: error: a TTT chunk step waited for the GPU (see the sync lines)", file=sys.stderr)
        return 1
    return 0


# -----------------------------------------------------------------------------------------------
# data: a vocab-V tokenizer and random-token shards, nothing downloaded
# -----------------------------------------------------------------------------------------------


def random_word_documents(docs: int, words: int, seed: int) -> list[str]:
    """Documents of 100 words each drawn (Zipf) from `words` invented lowercase words of 2-10 letters."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, n)) for n in rng.integers(2, 11, words)], dtype=object)
    p = 1 / np.arange(1, words + 1)
    picks = rng.choice(words, size=(docs, 100), p=p / p.sum())
    return [" ".join(vocab[row]) for row in picks]


def cmd_data(args) -> int:
    import build_shards  # data/: SentencePiece training with the repository's settings

    out, t0 = Path(args.out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.shards):
        write_random_shard(out / shard_io.shard_name("train", i), args.shard_tokens, args.vocab, seed=1 + i)
    write_random_shard(out / shard_io.shard_name("val", 0), args.val_tokens, args.vocab, seed=0)
    model = build_shards.train_tokenizer(random_word_documents(5000, 20_000, seed=0), args.vocab, out)
    tg.load_tokenizer(str(model), args.vocab)  # train_gpt.py's own checks: size, BOS id, a "▁" piece
    info = dict(vocab=args.vocab, train_shards=args.shards, shard_tokens=args.shard_tokens, val_tokens=args.val_tokens,
                mean_doc=MEAN_DOC_TOKENS)
    (out / "data_info.json").write_text(json.dumps(info, indent=1) + "\n")  # last: the smoke test's marker
    print(line("data", out=out, **info, seconds=time.perf_counter() - t0))
    return 0


# -----------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fa3", "syncs", "ttt"):
        p = sub.add_parser(name)
        p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
        if name != "fa3":
            p.add_argument("--small", action="store_true", help="toy sizes (the CPU path)")
        if name != "ttt":
            p.add_argument("--tokens", type=int, help="fa3: the row; syncs: TRAIN_BATCH_TOKENS")
    sub.choices["fa3"].add_argument("--span", type=int)
    sub.choices["fa3"].add_argument("--reps", type=int, default=20)
    sub.choices["fa3"].add_argument("--seed", type=int, default=0)
    sub.choices["syncs"].add_argument("--steps", type=int, default=5)
    sub.choices["syncs"].add_argument("--warmup", type=int, default=2, help="WARMUP_STEPS of the compile warm-up")
    data = sub.add_parser("data")
    data.add_argument("--out", required=True)
    data.add_argument("--vocab", type=int, default=8192)
    data.add_argument("--shards", type=int, default=3)
    data.add_argument("--shard-tokens", type=int, default=16_000_000)
    data.add_argument("--val-tokens", type=int, default=131_072)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return dict(fa3=cmd_fa3, syncs=cmd_syncs, ttt=cmd_ttt, data=cmd_data)[args.command](args)
    except (Refusal, tg.DataError) as e:
        print(f"gpu_bench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
