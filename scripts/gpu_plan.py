"""A plan for a GPU run of train_gpt.py from its knobs alone, to read before paying for an 8xH100 pod.

    python scripts/gpu_plan.py [--recipe top] [--gpus 8] [--gpu h100|h200] [--val-shards GLOB] [--json]
    MODEL_DIM=640 NUM_LAYERS=9 python scripts/gpu_plan.py      # knobs are env vars, read as train_gpt.py reads them
    python scripts/gpu_plan.py --calibrate                     # re-derive the calibration constants below

It prints the parameters by group; the training FLOPs, projected ms/step and steps of each schedule stage
(layer plan x attention span); FlashAttention-3's varlen buffers for one training row, with the bucketed
cu_seqlens against the old worst-case sizing; the projected peak memory per GPU; the projected TTT seconds
of the busiest rank (dynamic batch claiming, and the static b mod N split); the projected artifact bytes;
and the assumptions, each with the measured number it was calibrated to.

Every time, memory and size in the output is a projection: no GPU ran anything here. The constants are
fitted to the #1855 record's logs (records/recipes/top.env is that config, and the code defaults of
train_gpt.py are too); --calibrate recomputes them from those facts. Recipe values override the
environment, as `env $(grep -v '^#' records/recipes/NAME.env | xargs) train_gpt.py` would.

Exit 2 with one line on stderr (`gpu_plan: error: ...`) when the knobs are invalid, or the projected
artifact exceeds 16,000,000 bytes, or the projected peak memory exceeds the GPU's; the plan is still printed
for the last two.
"""

import argparse
import functools
import glob as globlib
import heapq
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train_gpt as tg  # noqa: E402
import train_gpt_tools as tools  # noqa: E402
from records.tool import EnvFileError, read_env_file  # noqa: E402

MIB, GIB = 2**20, 2**30
H100_BF16_FLOPS = 989e12  # dense bf16 peak of an H100 SXM; an H200 has the same compute
# What torch sees as free on an idle card: an H100 80 GB shows ~79.1 GiB; an H200 (141 GB, 143,771 MiB in
# nvidia-smi) the same ~0.6 GiB less than its total. Checked against the projected *reserved* bytes.
GPU_USABLE_GIB = {"h100": 79.1, "h200": 139.8}
GPU_NAMES = {"h100": "H100 SXM 80 GB", "h200": "H200 141 GB"}
HBM_BYTES_PER_S = {"h100": 3.35e12, "h200": 4.8e12}  # spec sheets; only prices FA3's zero-fills (assumption)

# Document lengths (targets a document: its tokens up to and including the next BOS). FineWeb val: 50,000
# documents, 47,853,343 targets (sota_stack.md 5.4, frontier.md 1), mean ~957 tokens with sp8192; its
# longest are 30k-97k tokens. Shape: a log-normal whose sigma was fitted once, when this script was written
# (tests must not read shared/, so nothing reruns it): the 2,000 pages of
# shared/data/corpora/c4_validation_2k/c4_validation_2k.jsonl tokenized with
# shared/data/tokenizers/fineweb_8192_bpe.model, +1 target each for the BOS after it: mean 562.6, median
# 302, max 17,254; the maximum-likelihood sigma of log(length) is 1.040 (mu 5.750; the interquartile range
# gives 1.097, the moments 1.116). mu is then set so the mean is FineWeb's 957, and the 50,000 lengths are
# the (i + 0.5)/50,000 quantiles scaled to exactly 47,853,343 targets: deterministic. Their longest is ~47k
# tokens, shorter than FineWeb's, so the long-document TTT legs come out light (the TTT fit absorbs that).
# Checked: #1855's phase 1 trained global SGD on 4.3M tokens (the 833 shortest of the 1,296 longest
# documents); the same selection of these lengths holds 4.24M.
FINEWEB_VAL_DOCS, FINEWEB_VAL_TARGETS = 50_000, 47_853_343
C4_LOG_SIGMA = 1.040

# The #1855 record's logged numbers the constants are fitted to (sota_stack.md 3.3, 7; frontier.md 1).
RECORD_STAGE_MS = (96.0, 141.0)  # ms/step before looping (11 applications), after (17)
RECORD_MEAN_MS, RECORD_STEPS = 121.0, 4_931
# "41.7 GB / 47.1 GB" of the digest, read as the log's MiB ("peak memory allocated: N MiB reserved: M MiB")
RECORD_ALLOCATED_MIB, RECORD_RESERVED_MIB = 41_700, 47_100
# TTT timer 455.1 / 470.0 / 508.8 s (seeds 0 / 1234 / 42), global SGD 76 / 75 / 84 s of it, 130 + 218 + 288
# SGD steps. Fitted to the median seed, 1234.
RECORD_TTT_SECONDS, RECORD_SGD_SECONDS, RECORD_SGD_STEPS = 470.0, 75.0, 636
RECORD_TTT_RANGE = (455.1, 508.8)
# Bits a large-matrix parameter (embedding, attention, MLP: codes, row scales, LQER factors) on the three
# cpu_demo checkpoints, docs/measurements.md: GPTQ int6/int7 + LQER + rANS + brotli (the default) 3.488,
# without rANS 3.520, GPTQ-lite 5.548, int8 per-row + zlib 6.221.
MEASURED_BITS_PER_MATRIX_PARAM = {"gptq": 3.488, "gptq_norans": 3.520, "gptq_lite": 5.548, "int8": 6.221}

# Assumed, not fitted (no measurement separates them from the fitted constants):
TTT_STEP_OVERHEAD_S = 0.010  # launches, AdamW over the adapters, host work of one TTT chunk step
HEAD_BYTES_PER_LOGIT = 4  # one fp32 logits tensor of the row kept for the softcapped cross-entropy's backward
OLD_MIN_MEAN_DOC_TOKENS = 16  # the pre-bucketing cu_seqlens: room for rows of 16-token documents
CU_SEQLENS_BUCKET = tg.CU_SEQLENS_BUCKET  # cu_seqlens entries padded to a multiple of this


@dataclass(frozen=True)
class Calibration:
    """The fitted constants; `python scripts/gpu_plan.py --calibrate` prints what the facts above give."""

    train_mfu: float  # training FLOPs / (GPUs x peak x step time): #1855's 96 / 141 ms/step, least squares
    activation_bytes: float  # bytes saved for backward per token per layer application: #1855's 41.7 GB peak
    reserved_over_allocated: float  # the caching allocator's reserve over the peak allocation: 47.1 / 41.7
    sgd_step_overhead_s: float  # a global-SGD step beyond its FLOPs: 75 s / 636 steps of #1855
    ttt_mfu: float  # LoRA-TTT FLOPs rate: #1855's 470 - 75 = 395 s of scoring on the busiest rank
    entropy_efficiency: tuple  # (quant method, coded bits / nominal bits): docs/measurements.md, cpu_demo exports


CALIBRATION = Calibration(train_mfu=0.2728, activation_bytes=23_603.0, reserved_over_allocated=1.1295,
                          sgd_step_overhead_s=0.1116, ttt_mfu=0.1040,
                          entropy_efficiency=(("gptq", 0.5662), ("gptq_norans", 0.5714), ("gptq_lite", 0.9006),
                                              ("int8", 0.7776)))


class PlanError(Exception):
    """A refusal: printed as one `gpu_plan: error:` line, exit 2."""


# -----------------------------------------------------------------------------------------------
# Knobs, model, documents
# -----------------------------------------------------------------------------------------------


def recipe_env(name: str) -> dict[str, str]:
    path = REPO / "records" / "recipes" / f"{name}.env"
    if not path.is_file():
        raise PlanError(f"no recipe {path.relative_to(REPO)}")
    try:
        return read_env_file(path)
    except EnvFileError as e:
        raise PlanError(str(e)) from None


def hyperparameters(environ: dict) -> tg.Hyperparameters:
    try:
        return tg.Hyperparameters.from_env(environ)
    except tg.HyperparameterError as e:
        raise PlanError(" ".join(str(e).split())) from None


def meta_model(hp: tg.Hyperparameters) -> tg.GPT:
    with torch.device("meta"):  # shapes only: no memory
        return tg.GPT(hp)


def block_matrix_params(model: tg.GPT) -> list[int]:
    """CastedLinear weights of each physical block: the Muon matrices, applied once per application."""
    return [sum(m.weight.numel() for m in b.modules() if isinstance(m, tg.CastedLinear)) for b in model.blocks]


def parameter_split(model: tg.GPT) -> dict[str, int]:
    blocks = sum(block_matrix_params(model))
    embeddings = model.tok_emb.weight.numel() + sum(p.numel() for p in model.value_embeds.parameters())
    head = 0 if model.lm_head is None else model.lm_head.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return dict(block_matrices=blocks, embeddings=embeddings, lm_head=head,
                controls=total - blocks - embeddings - head, total=total)


def document_lengths(docs: int = FINEWEB_VAL_DOCS, targets: int = FINEWEB_VAL_TARGETS,
                     sigma: float = C4_LOG_SIGMA) -> np.ndarray:
    """Log-normal quantiles of mean targets/docs, summing to exactly `targets`; longest first."""
    normal = NormalDist()
    z = np.array([normal.inv_cdf((i + 0.5) / docs) for i in range(docs)])
    raw = np.exp(math.log(targets / docs) - sigma**2 / 2 + sigma * z)
    raw *= targets / raw.sum()
    lengths = np.maximum(1, np.floor(raw)).astype(np.int64)
    left = targets - int(lengths.sum())  # whole tokens to hand out: largest remainders first
    lengths[np.argsort(np.floor(raw) - raw, kind="stable")[:left]] += 1
    return np.sort(lengths)[::-1]


@functools.lru_cache(maxsize=1)
def modelled_lengths() -> np.ndarray:
    return document_lengths()


def shard_lengths(pattern: str, hp: tg.Hyperparameters) -> np.ndarray:
    if not globlib.glob(pattern):
        raise PlanError(f"--val-shards {pattern}: no file matches")
    tokens = tg.load_val_tokens(pattern, hp.train_seq_len, hp.vocab_size)
    return np.sort(np.array([e - s for s, e in tg.val_documents(tokens)], dtype=np.int64))[::-1]


def segment_stats(lengths: np.ndarray, span: int, doc_isolation: bool = True) -> tuple[float, float]:
    """(attention segments per token, mean causal context per token) when documents are cut every `span`
    tokens; a segment of n tokens gives its queries 1..n keys, (n + 1)/2 on average. Cuts at row ends are
    left out (one document in ~100 of a 98k-token row). DOC_ISOLATION=0: fixed segments of `span`."""
    if not doc_isolation:
        return 1 / span, (span + 1) / 2
    full, rest = np.divmod(lengths.astype(np.float64), span)
    segments = full + (rest > 0)
    pairs = full * span * (span + 1) / 2 + rest * (rest + 1) / 2
    return float(segments.sum() / lengths.sum()), float(pairs.sum() / lengths.sum())


# -----------------------------------------------------------------------------------------------
# Training: FLOPs, step time, steps
# -----------------------------------------------------------------------------------------------


def stage_shares(hp: tg.Hyperparameters, samples: int = 2000) -> tuple[dict, str]:
    """Share of training each stage runs, as train_gpt.py switches stages: by the training clock when the
    run is capped by MAX_WALLCLOCK_SECONDS (a share of time), else by step / ITERATIONS (of steps)."""
    cap_ms = tg.training_cap_ms(hp)
    shares: dict = {}
    for i in range(samples):
        at = (i + 0.5) / samples
        frac = tg.training_frac(0, at * cap_ms, hp) if cap_ms < math.inf else at
        stage = tg.stage_at(frac, hp)
        shares[stage] = shares.get(stage, 0.0) + 1 / samples
    return shares, "time" if cap_ms < math.inf else "steps"


def train_flops_per_token(hp: tg.Hyperparameters, model: tg.GPT, stage: tg.Stage, lengths: np.ndarray) -> dict:
    """6 N for the matmuls (forward 2 per weight applied: the block matrices of every application and the
    head; backward twice that) and 3 x the causal attention's 2 x 2 x context x head_dim x heads."""
    order = model.plans[stage.plan].order
    per_block = block_matrix_params(model)
    matmul = 6 * (sum(per_block[b] for b in order) + hp.vocab_size * hp.model_dim)
    _, context = segment_stats(lengths, stage.span, hp.doc_isolation)
    attention = 3 * 2 * 2 * context * (hp.model_dim // hp.num_heads) * hp.num_heads * len(order)
    return dict(applications=len(order), context=context, matmul=matmul, attention=attention)


def training_plan(hp: tg.Hyperparameters, model: tg.GPT, lengths: np.ndarray, gpus: int,
                  cal: Calibration = CALIBRATION) -> dict:
    shares, basis = stage_shares(hp)
    tokens = hp.train_batch_tokens
    stages = []
    for i, stage in enumerate(tg.schedule_stages(hp)):
        f = train_flops_per_token(hp, model, stage, lengths)
        step_flops = tokens * (f["matmul"] + f["attention"])
        stages.append(dict(stage=i, plan=stage.plan, span=stage.span, applications=f["applications"],
                           mean_causal_context=f["context"], matmul_flops_per_step=tokens * f["matmul"],
                           attention_flops_per_step=tokens * f["attention"], flops_per_step=step_flops,
                           share=shares.get(stage, 0.0),
                           projected_ms_per_step=1000 * step_flops / (gpus * H100_BF16_FLOPS * cal.train_mfu)))
    return dict(tokens_per_step=tokens, tokens_per_gpu=tokens // gpus, row_tokens=tokens // 8,
                micro_steps=8 // gpus, share_basis=basis, stages=stages, **projected_steps(hp, stages, basis))


def projected_steps(hp: tg.Hyperparameters, stages: list[dict], basis: str) -> dict:
    """Steps and seconds of the run: the clock's share of each stage over its step time, stopped at
    ITERATIONS if that comes first; without a cap, ITERATIONS steps split by the stages' step shares."""
    if basis == "steps":
        for s in stages:
            s["projected_steps"] = s["share"] * hp.iterations
        seconds = sum(s["projected_steps"] * s["projected_ms_per_step"] for s in stages) / 1000
    else:
        seconds = tg.training_cap_ms(hp) / 1000
        left = hp.iterations
        for s in stages:
            s["projected_steps"] = min(left, s["share"] * seconds * 1000 / s["projected_ms_per_step"])
            left -= s["projected_steps"]
        seconds = sum(s["projected_steps"] * s["projected_ms_per_step"] for s in stages) / 1000
    steps = sum(s["projected_steps"] for s in stages)
    return dict(projected_train_seconds=seconds, projected_steps=steps, stopped_by_iterations=steps >= hp.iterations,
                projected_mean_ms_per_step=1000 * seconds / max(steps, 1e-9))


# -----------------------------------------------------------------------------------------------
# FlashAttention-3 varlen buffers of one training row
# -----------------------------------------------------------------------------------------------
# From Dao-AILab/flash-attention, hopper/ at commit 0251105a (line numbers there); the formulas have had
# this form since 7a802796 (2025-01-07), before the torch 2.9.1 wheels the records install.
# flash_api.cpp, mha_fwd (887-892), varlen q:
#     softmax_lse = torch::empty({num_heads, total_q}, float)
# flash_api.cpp, mha_bwd (1373-1395, 1476-1498, 1536):
#     kBlockM_sm90 = head_size_rounded <= 64 ? (is_causal && softcap > 0.0 ? 96 : 128)
#                    : (<= 96 ? 64 : (<= 128 ? (is_causal || is_local || softcap > 0.0 ? 64 : 80) : 64));
#     kBlockN_sm90 = head_size_rounded <= 128 ? 128 : (<= 192 ? 96 : 80);
#     total_q_padded_rounded = round_multiple(total_q + batch_size * kBlockM, kBlockM);
#     total_k_padded_rounded = round_multiple(total_k + batch_size * kBlockN, kBlockN);
#     softmax_d, softmax_lse_log2 = torch::empty({num_heads, total_q_padded_rounded}, float)     (varlen)
#     dq_accum = torch::empty({num_heads, total_q_padded_rounded * head_size_rounded}, float)
#     dk_accum = torch::zeros({num_heads_k, total_k_padded_rounded, head_size_rounded}, float)  (GQA only)
#     dv_accum = torch::zeros({num_heads_k, total_k_padded_rounded, head_size_v_rounded}, float)
#     dq_semaphore = torch::empty({(seqlen_q + kBlockM - 1) / kBlockM, batch_size, num_heads}, int32)
#   with batch_size = cu_seqlens_q.size(0) - 1, seqlen_q = max_seqlen_q (our span), round_up_headdim(64) = 64.
# flash_bwd_launch_template.h, run_mha_bwd_hdim64 (312-321): sm90 runs kBlockM x kBlockN = 128 x 128 (96 x 128
#   only when causal with softcap); run_flash_bwd (38-39, 50) sizes the same total_q/k_padded_rounded, and its
#   preprocess kernel is FlashAttnBwdPreprocess<..., /*Clear_dQaccum=*/true, ...>: dq_accum is zeroed too.
# So every cu_seqlens entry adds kBlockM (kBlockN) rows to all five buffers, all three accumulators are
# written with zeros on every backward call, and padding entries cost as much as real segments.


def round_up_headdim(d: int) -> int:
    return next(r for r in (64, 96, 128, 192, 256) if d <= r)


def bwd_tiles_sm90(head_dim_rounded: int, causal: bool = True, softcap: bool = False) -> tuple[int, int]:
    if head_dim_rounded <= 64:
        block_m = 96 if causal and softcap else 128
    elif head_dim_rounded <= 96:
        block_m = 64
    elif head_dim_rounded <= 128:
        block_m = 64 if causal or softcap else 80
    else:
        block_m = 64
    block_n = 128 if head_dim_rounded <= 128 else 96 if head_dim_rounded <= 192 else 80
    return block_m, block_n


def fa3_backward_bytes(tokens: int, entries: int, span: int, hp: tg.Hyperparameters) -> dict[str, int]:
    """FA3's backward scratch for one varlen call over `tokens` (q = k = v) with `entries` cu_seqlens."""
    batch, heads, kv_heads = entries - 1, hp.num_heads, hp.num_kv_heads
    d = round_up_headdim(hp.model_dim // hp.num_heads)
    block_m, block_n = bwd_tiles_sm90(d)
    q_rows = -(-(tokens + batch * block_m) // block_m) * block_m
    k_rows = -(-(tokens + batch * block_n) // block_n) * block_n
    gqa = kv_heads != heads
    out = dict(batch=batch, total_q_padded_rounded=q_rows, softmax_d_and_lse_log2=2 * 4 * heads * q_rows,
               dq_accum=4 * heads * q_rows * d, dk_dv_accum=2 * 4 * kv_heads * k_rows * d if gqa else 0,
               dq_semaphore=4 * -(-span // block_m) * batch * heads)
    out["zero_filled"] = out["dq_accum"] + out["dk_dv_accum"]
    out["total"] = out["softmax_d_and_lse_log2"] + out["zero_filled"] + out["dq_semaphore"]
    return out


def attention_buffers(hp: tg.Hyperparameters, lengths: np.ndarray, span: int) -> dict:
    tokens = hp.train_batch_tokens // 8  # one row a micro-step at any world size
    per_token, _ = segment_stats(lengths, span, hp.doc_isolation)
    segments = 1 + tokens * per_token  # the row's start cuts one more
    bucketed = -(-math.ceil(segments + 1) // CU_SEQLENS_BUCKET) * CU_SEQLENS_BUCKET
    worst = 1 + tokens // OLD_MIN_MEAN_DOC_TOKENS + tokens // span + 1  # capacity bsz*(1+T//16+T//span), + end
    return dict(span=span, row_tokens=tokens, expected_segments=segments, bucketed_entries=bucketed,
                worst_case_entries=worst, bucketed=fa3_backward_bytes(tokens, bucketed, span, hp),
                worst_case=fa3_backward_bytes(tokens, worst, span, hp),
                forward_lse_bytes=4 * hp.num_heads * tokens)


# -----------------------------------------------------------------------------------------------
# Peak memory per GPU
# -----------------------------------------------------------------------------------------------


def state_bytes(hp: tg.Hyperparameters, split: dict, gpus: int) -> dict[str, float]:
    """What lives through the whole step: weights (fp32 masters, bf16 embedding tables as build_model
    leaves them), gradients of the same dtypes, DDP's gradient buckets (a copy: gradient_as_bucket_view is
    off), AdamW's two moments (bf16 for the embeddings), Muon momentum (fp32, each rank holds its
    round-robin share of the matrices), the fp32 EMA/SWA shadow."""
    fp32 = split["total"] - split["embeddings"]
    weights = 4 * fp32 + 2 * split["embeddings"]
    return dict(weights=weights, gradients=weights, ddp_buckets=weights if gpus > 1 else 0,
                adam_moments=2 * (2 * split["embeddings"] + 4 * (split["lm_head"] + split["controls"])),
                muon_momentum=4 * split["block_matrices"] / gpus,
                weight_average=4 * split["total"] if hp.ema_decay > 0 or hp.swa_enabled else 0)


def peak_memory(hp: tg.Hyperparameters, split: dict, train: dict, fa3: dict, gpus: int,
                cal: Calibration = CALIBRATION) -> dict:
    """Peak during a backward: the states, the forward's saved activations of one micro-step row (per token
    per application: the calibrated constant), the row's logits, the largest FA3 backward scratch."""
    parts = state_bytes(hp, split, gpus)
    applications = max(s["applications"] for s in train["stages"])
    parts["activations"] = cal.activation_bytes * train["row_tokens"] * applications
    parts["logits"] = HEAD_BYTES_PER_LOGIT * train["row_tokens"] * hp.vocab_size
    parts["fa3_backward_scratch"] = max(f["bucketed"]["total"] for f in fa3)
    allocated = sum(parts.values())
    return dict(parts=parts, max_applications=applications, projected_allocated=allocated,
                projected_reserved=allocated * cal.reserved_over_allocated)


# -----------------------------------------------------------------------------------------------
# TTT: score-first LoRA batches, dynamic or static claiming, phased global SGD
# -----------------------------------------------------------------------------------------------


def ttt_shapes(hp: tg.Hyperparameters, model: tg.GPT) -> dict:
    """Weights a TTT token meets: every application of the eval plan (looping on), the adapters of each."""
    order, per_block = model.plans[-1].order, block_matrix_params(model)
    d, kv, r = hp.model_dim, hp.num_kv_heads * (hp.model_dim // hp.num_heads), hp.ttt_lora_rank
    fans = {"q": (d, d), "k": (d, kv), "v": (d, kv), "o": (d, d), "mlp": (d, d)}
    lora = sum(r * (i + o) for t, (i, o) in fans.items() if getattr(hp, f"ttt_{t}_lora"))
    return dict(applications=len(order), d=d, block=sum(per_block[b] for b in order), lora=lora * len(order),
                head=d * hp.vocab_size, head_lora=r * (d + hp.vocab_size))


def batch_cuts(docs: int, size: int) -> list[int]:
    """Where tg.ttt_queue's batches start in a longest-first list: a remainder batch first, then full ones."""
    return [0] + list(range(docs % size or size, docs + 1, size))


def chunk_steps(lengths: np.ndarray, hp: tg.Hyperparameters):
    """Per TTT batch (lengths longest first, cut into TTT_BATCH_SIZE from the short end as tg.ttt_queue does, so
    a remainder batch of the longest comes first) as ttt_batch runs it, per chunk step s: the rows still
    scoring (the documents with a chunk s), the widest window (up to TTT_EVAL_SEQ_LEN tokens of prefix), the
    most scored positions and whether any row has a later chunk (then a backward follows)."""
    cuts = batch_cuts(len(lengths), hp.ttt_batch_size)
    for i, j in zip(cuts, cuts[1:]):
        n = lengths[i:j]
        c = tg.chunk_size_of([(0, int(n.max()))], hp)  # one size a batch, by its longest document
        chunks = -(-n // c)
        s = np.arange(int(chunks.max()))[:, None]
        live = chunks[None, :] > s
        hi = np.minimum((s + 1) * c, n[None, :])
        yield dict(rows=live.sum(1), width=np.where(live, np.minimum(hi, hp.ttt_eval_seq_len), 0).max(1).astype(float),
                   scored=np.where(live, hi - s * c, 0).max(1),
                   trained=((chunks[None, :] > s + 1) & live).any(1))


def batch_work(lengths: np.ndarray, hp: tg.Hyperparameters, shapes: dict) -> tuple[np.ndarray, np.ndarray]:
    """(chunk steps, FLOPs) of every TTT batch: step s forwards its rows right-padded to the widest window, the
    head over the most scored positions; a trained step adds the backward (activation gradients through the
    frozen weights, adapter gradients, attention twice its forward), and TTT_GRAD_STEPS > 1 repeats both."""
    steps, flops = [], []
    for b in chunk_steps(lengths, hp):
        rows, width = b["rows"], b["width"]
        matmul = 2 * rows * (width * (shapes["block"] + shapes["lora"])
                             + b["scored"] * (shapes["head"] + shapes["head_lora"]))
        attention = 2 * rows * width**2 * shapes["d"] * shapes["applications"]
        backward = matmul + 2 * rows * width * shapes["lora"] + 2 * attention
        again = (hp.ttt_grad_steps - 1) * (matmul + attention + backward)
        steps.append(len(rows))
        flops.append(float((matmul + attention + b["trained"] * (backward + again)).sum()))
    return np.array(steps), np.array(flops)


def busiest_dynamic(costs: np.ndarray, ranks: int) -> float:
    """Ranks claim the next batch from a shared counter as they free up: each goes to the earliest-free rank."""
    free = [0.0] * ranks
    for c in costs:
        heapq.heappush(free, heapq.heappop(free) + float(c))
    return max(free)


def busiest_static(costs: np.ndarray, ranks: int, first: int) -> float:
    """Batch b runs on rank b mod N (eval_ttt before dynamic claiming)."""
    index = np.arange(first, first + len(costs)) % ranks
    return float(max(costs[index == r].sum() for r in range(ranks)))


def global_sgd_plan(hp: tg.Hyperparameters, model: tg.GPT, lengths: np.ndarray, gpus: int,
                    cal: Calibration) -> list[dict]:
    """Per phase (tg.phase_plan): the queue's first documents (the longest), or under GLOBAL_TTT_STREAM=record
    the shortest of the batches scored before it (tg.phase_docs), in GLOBAL_TTT_CHUNK_TOKENS steps, the last
    chunk skipped; each rank trains its share of the rows with the full training plan."""
    plan, cuts = [], batch_cuts(len(lengths), hp.ttt_batch_size)
    for bound, docs in tg.phase_plan(np.diff(cuts), hp, gpus):
        scored = lengths[: cuts[bound]]
        used = scored[len(scored) - docs :] if hp.global_ttt_stream == "record" else lengths[:docs]
        tokens = int(used.sum())
        steps = max(0, -(-tokens // hp.global_ttt_chunk_tokens) - 1) * hp.global_ttt_epochs
        f = train_flops_per_token(hp, model, tg.Stage(len(model.plans) - 1, hp.ttt_eval_seq_len), used)
        rank_flops = hp.global_ttt_chunk_tokens / gpus * (f["matmul"] + f["attention"])
        per_step = cal.sgd_step_overhead_s + rank_flops / (H100_BF16_FLOPS * cal.train_mfu)
        plan.append(dict(after_batch=bound, docs=docs, tokens=tokens, steps=steps, projected_seconds=steps * per_step))
    return plan


def scoring_legs(costs: np.ndarray, bounds: list[int], gpus: int) -> list[dict]:
    """Busiest rank of each scoring leg: phases are barriers (every rank joins global SGD), so each leg
    between two of them ends with its slowest rank."""
    legs, first = [], 0
    for bound in bounds:
        part = costs[first:bound]
        legs.append(dict(kind="scoring", batches=[first, bound], dynamic=busiest_dynamic(part, gpus),
                         static=busiest_static(part, gpus, first)))
        first = bound
    return legs


def ttt_plan(hp: tg.Hyperparameters, model: tg.GPT, lengths: np.ndarray, gpus: int,
             cal: Calibration = CALIBRATION) -> dict:
    if not hp.ttt_enabled:
        return dict(enabled=False, legs=[], projected_seconds_dynamic=0.0, projected_seconds_static=0.0)
    steps, flops = batch_work(lengths, hp, ttt_shapes(hp, model))
    costs = steps * TTT_STEP_OVERHEAD_S + flops / (H100_BF16_FLOPS * cal.ttt_mfu)
    phases = global_sgd_plan(hp, model, lengths, gpus, cal)
    scoring = scoring_legs(costs, [p["after_batch"] for p in phases] + [len(costs)], gpus)
    legs = []
    for k, leg in enumerate(scoring):
        legs.append(leg)
        if k < len(phases):
            p = phases[k]
            legs.append(dict(kind="global_sgd", phase=k + 1, docs=p["docs"], tokens=p["tokens"], steps=p["steps"],
                             dynamic=p["projected_seconds"], static=p["projected_seconds"]))
    return dict(enabled=True, batches=len(costs), chunk_steps=int(steps.sum()), lora_flops=float(flops.sum()),
                longest_batch_steps=int(steps.max()), legs=legs,
                projected_seconds_dynamic=sum(leg["dynamic"] for leg in legs),
                projected_seconds_static=sum(leg["static"] for leg in legs))


# -----------------------------------------------------------------------------------------------
# Artifact bytes
# -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def code_bytes(packing: str) -> int:
    """What the run counts: the packed two-line stub of train_gpt.py (CODE_PACKING=brotli), or the raw file."""
    source = (REPO / "train_gpt.py").read_text()
    return len((tools.packed_code(source) if packing == "brotli" else source).encode())


def efficiency_key(hp: tg.Hyperparameters) -> str:
    if hp.quant_method == "gptq":
        return "gptq" if hp.rans_coding else "gptq_norans"
    return hp.quant_method


def tensor_export(name: str, t: torch.Tensor, hp: tg.Hyperparameters) -> tuple[str, float]:
    """(group, nominal bits a parameter) as quantize_state_dict stores this tensor."""
    role = tg.tensor_role(name)
    if tg.is_int8_gate(name, t, hp):
        return "attention gates, int8 rows", 8 + 16 / t.shape[-1]  # int8 codes, an fp16 scale a row
    if t.ndim != 2 or t.numel() <= hp.keep_float_max_numel:
        fp32 = tg.kept_dtype(name, t, hp) == torch.float32
        return f"small tensors, {'fp32' if fp32 else 'fp16'}", 32 if fp32 else 16
    bits = 8 if hp.quant_method == "int8" else tg.role_bits_and_sigmas(role, hp)[0]
    return f"{role} matrices, int{bits}", bits


def artifact_plan(hp: tg.Hyperparameters, model: tg.GPT, cal: Calibration = CALIBRATION) -> dict:
    """Quantized matrices at their nominal bits x the measured coding efficiency; small tensors at their
    raw size (brotli shrinks them a little: an overestimate by a few KB); the container header is left out."""
    efficiency = dict(cal.entropy_efficiency)[efficiency_key(hp)]
    groups: dict[str, dict] = {}
    for name, t in model.state_dict().items():
        group, bits = tensor_export(name, t, hp)
        coded = bits * efficiency if "matrices" in group else bits
        g = groups.setdefault(group, dict(params=0, bytes=0.0))
        g["params"] += t.numel()
        g["bytes"] += t.numel() * coded / 8
    model_bytes = round(sum(g["bytes"] for g in groups.values()))
    code = code_bytes(hp.code_packing)
    return dict(groups=groups, code_bytes=code, model_bytes=model_bytes, projected_total=code + model_bytes,
                cap=tg.ARTIFACT_CAP_BYTES, projected_headroom=tg.ARTIFACT_CAP_BYTES - code - model_bytes,
                efficiency=efficiency, efficiency_key=efficiency_key(hp))


# -----------------------------------------------------------------------------------------------
# The plan, its refusals, the calibration
# -----------------------------------------------------------------------------------------------


def training_and_memory(hp: tg.Hyperparameters, model: tg.GPT, lengths: np.ndarray, gpus: int, gpu: str,
                        cal: Calibration) -> dict:
    split = parameter_split(model)
    train = training_plan(hp, model, lengths, gpus, cal)
    attention = [attention_buffers(hp, lengths, span) for span in sorted({s["span"] for s in train["stages"]})]
    for a in attention:  # one backward call per layer application and micro-step zero-fills the accumulators
        calls = train["micro_steps"] * max(s["applications"] for s in train["stages"] if s["span"] == a["span"])
        for key in ("bucketed", "worst_case"):
            a[key]["projected_zero_fill_ms_per_step"] = 1000 * calls * a[key]["zero_filled"] / HBM_BYTES_PER_S[gpu]
    memory = peak_memory(hp, split, train, attention, gpus, cal)
    memory.update(gpu=GPU_NAMES[gpu], usable_bytes=GPU_USABLE_GIB[gpu] * GIB)
    return dict(parameters=split, training=train, attention=attention, memory=memory)


def build_plan(hp: tg.Hyperparameters, lengths: np.ndarray, gpus: int = 8, gpu: str = "h100",
               documents: str = "modelled", cal: Calibration = CALIBRATION) -> dict:
    model = meta_model(hp)
    plan = dict(gpus=gpus, gpu=gpu, documents=dict(source=documents, count=len(lengths), targets=int(lengths.sum()),
                                                   longest=int(lengths.max())),
                **training_and_memory(hp, model, lengths, gpus, gpu, cal),
                ttt=ttt_plan(hp, model, lengths, gpus, cal), artifact=artifact_plan(hp, model, cal),
                assumptions=assumptions(cal))
    plan["refusals"] = refusals(plan)
    return plan


def refusals(plan: dict) -> list[str]:
    out, art, mem = [], plan["artifact"], plan["memory"]
    if art["projected_total"] > art["cap"]:
        out.append(f"projected artifact {art['projected_total']:,} bytes > {art['cap']:,} (code {art['code_bytes']:,} "
                   f"+ model {art['model_bytes']:,}): fewer parameters or bits")
    if mem["projected_reserved"] > mem["usable_bytes"]:
        out.append(f"projected peak memory {mem['projected_reserved'] / GIB:.1f} GiB reserved > "
                   f"{mem['usable_bytes'] / GIB:.1f} GiB usable on an {mem['gpu']}: lower TRAIN_BATCH_TOKENS "
                   f"({plan['training']['row_tokens']:,} tokens a micro-step row now) or the model")
    return out


def assumptions(cal: Calibration) -> list[dict]:
    eff = ", ".join(f"{k} {v:.4f}" for k, v in cal.entropy_efficiency)
    return [
        dict(name="train MFU", value=cal.train_mfu, basis="fitted (least squares) to #1855's ~96 ms/step before "
             "looping and ~141 after, 8xH100 at 989 TFLOP/s; its mean 121 ms, 4,931 steps"),
        dict(name="activation bytes / token / layer application", value=cal.activation_bytes,
             basis="fitted to #1855's peak 41,700 MiB allocated at 98,304 tokens a row x 17 applications, "
             "after the states, logits and FA3 scratch below"),
        dict(name="reserved / allocated", value=cal.reserved_over_allocated, basis="#1855: 47,100 / 41,700 MiB"),
        dict(name="logit bytes kept a token", value=HEAD_BYTES_PER_LOGIT, basis="assumed: one fp32 logits row "
             "for the softcapped cross-entropy's backward (#1855's fused kernel kept less; absorbed by the fit)"),
        dict(name="global-SGD step overhead s", value=cal.sgd_step_overhead_s, basis="fitted to #1855 seed 1234: "
             "75 s for 636 steps, less their FLOPs at the train MFU"),
        dict(name="LoRA-TTT MFU", value=cal.ttt_mfu, basis="fitted so the busiest rank's scoring (dynamic claiming, "
             "the modelled documents) takes #1855 seed 1234's 470 - 75 = 395 s"),
        dict(name="TTT chunk-step overhead s", value=TTT_STEP_OVERHEAD_S, basis="assumed (launches and host work "
             "of a compiled chunk step); the MFU above absorbs any error in it"),
        dict(name="coded bits / nominal bits", value=eff, basis="docs/measurements.md export table (bits a "
             "large-matrix parameter on cpu_demo: 3.488 GPTQ+LQER+rANS, 3.520 no rANS, 5.548 GPTQ-lite, "
             "6.221 int8) over cpu_demo's "
             "nominal 6/7 (int8: 8) bits"),
        dict(name="document lengths", value=C4_LOG_SIGMA, basis="log-normal sigma fitted to C4 with the sp8192 "
             "tokenizer, mean set to FineWeb val's 957 (50,000 documents); training rows assumed alike"),
        dict(name="GPU", value=H100_BF16_FLOPS, basis="H100/H200 SXM dense bf16 FLOP/s; usable memory "
             f"{GPU_USABLE_GIB['h100']} / {GPU_USABLE_GIB['h200']} GiB; HBM 3.35 / 4.8 TB/s (zero-fill time only)"),
    ]


def calibrate() -> Calibration:
    """The constants from the record facts at the top of this file, with records/recipes/top.env as #1855."""
    top, lengths = hyperparameters(recipe_env("top")), modelled_lengths()
    model, unit = meta_model(top), Calibration(1.0, 0.0, 1.0, 0.0, 1.0, ())
    # the MFU each stage's logged step time implies; Sum(a^2)/Sum(a) minimizes the squared relative time errors
    implied = np.array([s["projected_ms_per_step"] / ms for s, ms in
                        zip(training_plan(top, model, lengths, 8, unit)["stages"], RECORD_STAGE_MS)])
    cal = Calibration(float((implied**2).sum() / implied.sum()), 0.0, RECORD_RESERVED_MIB / RECORD_ALLOCATED_MIB,
                      0.0, 1.0, ())
    bare = training_and_memory(top, model, lengths, 8, "h100", cal)["memory"]
    row = top.train_batch_tokens // 8
    activation = (RECORD_ALLOCATED_MIB * MIB - bare["projected_allocated"]) / (row * bare["max_applications"])
    steps, flops = batch_work(lengths, top, ttt_shapes(top, model))
    phases = global_sgd_plan(top, model, lengths, 8, cal)
    # FLOP seconds of an SGD step (~6 ms of the record's ~118; our documents, not the record's, set them)
    sgd_compute = sum(p["projected_seconds"] for p in phases) / max(1, sum(p["steps"] for p in phases))
    bounds = [p["after_batch"] for p in phases] + [len(steps)]
    target, lo, hi = RECORD_TTT_SECONDS - RECORD_SGD_SECONDS, math.log(0.005), math.log(1.0)
    for _ in range(50):  # scoring time falls as the MFU rises: bisect on its log
        mfu = math.exp((lo + hi) / 2)
        costs = steps * TTT_STEP_OVERHEAD_S + flops / (H100_BF16_FLOPS * mfu)
        seconds = sum(leg["dynamic"] for leg in scoring_legs(costs, bounds, 8))
        lo, hi = (math.log(mfu), hi) if seconds > target else (lo, math.log(mfu))
    return Calibration(cal.train_mfu, activation, cal.reserved_over_allocated,
                       RECORD_SGD_SECONDS / RECORD_SGD_STEPS - sgd_compute, math.exp((lo + hi) / 2),
                       entropy_efficiencies())


def entropy_efficiencies() -> tuple:
    """Measured bits a large-matrix parameter over the nominal bits of cpu_demo's large matrices."""
    demo = hyperparameters(recipe_env("cpu_demo"))
    out = []
    for key, bits in MEASURED_BITS_PER_MATRIX_PARAM.items():
        hp = replace(demo, quant_method=key.removesuffix("_norans"), rans_coding=key == "gptq")
        exported = [(t.numel(), tensor_export(n, t, hp)) for n, t in meta_model(hp).state_dict().items()
                    if tg.tensor_role(n) in ("embed", "attn", "mlp")]
        quantized = [(n, b) for n, (group, b) in exported if "matrices" in group]
        nominal = sum(n * b for n, b in quantized) / sum(n for n, _ in quantized)
        out.append((key, round(bits / nominal, 4)))
    return tuple(out)


# -----------------------------------------------------------------------------------------------
# Output
# -----------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_parameters(plan: dict) -> list[str]:
    p = plan["parameters"]
    rows = [["block matrices (CastedLinear in model.blocks)", f"{p['block_matrices']:,}"],
            ["embedding tables (tok_emb, value embeddings)", f"{p['embeddings']:,}"],
            ["LM head", f"{p['lm_head']:,}" if p["lm_head"] else "0 (tied to tok_emb)"],
            ["control tensors (gains, mixes, gates, skips, lambdas)", f"{p['controls']:,}"],
            ["**total**", f"**{p['total']:,}**"]]
    return ["## Parameters", ""] + table(["group", "parameters"], rows)


def render_training(plan: dict) -> list[str]:
    t = plan["training"]
    rows = [[s["stage"], s["plan"], s["span"], s["applications"], f"{s['mean_causal_context']:.0f}",
             f"{s['matmul_flops_per_step'] / 1e12:.1f}", f"{s['attention_flops_per_step'] / 1e12:.1f}",
             f"{s['flops_per_step'] / 1e12:.1f}", f"{s['share']:.1%}", f"{s['projected_ms_per_step']:.1f}",
             f"{s['projected_steps']:,.0f}"] for s in t["stages"]]
    head = ["stage", "plan", "span", "applications", "mean causal context", "matmul TFLOP/step",
            "attention TFLOP/step", "total TFLOP/step", f"share of training ({t['share_basis']})",
            "projected ms/step", "projected steps"]
    rows_note = f"{t['micro_steps']} micro-step{'s' if t['micro_steps'] > 1 else ''} of {t['row_tokens']:,} tokens"
    return [f"## Training: {t['tokens_per_step']:,} tokens a step, {t['tokens_per_gpu']:,} a GPU ({rows_note})", ""] + table(head, rows) + [
        "", f"projected: {t['projected_steps']:,.0f} steps in {t['projected_train_seconds']:.0f} s of training, "
        f"mean {t['projected_mean_ms_per_step']:.1f} ms/step" + (" (ITERATIONS stops it first)" if
                                                                 t["stopped_by_iterations"] else ""),
        f"record (#1855, 8xH100): ~{RECORD_STAGE_MS[0]:.0f} ms/step before looping, ~{RECORD_STAGE_MS[1]:.0f} after, "
        f"{RECORD_MEAN_MS:.0f} mean, {RECORD_STEPS:,} steps"]


def render_attention(plan: dict) -> list[str]:
    lines = []
    for a in plan["attention"]:
        rows = []
        for label, key in (("bucketed (segments + 1, to a multiple of 64)", "bucketed"),
                           ("old worst case: bsz*(1 + T//16 + T//span) + 1", "worst_case")):
            b = a[key]
            rows.append([label, f"{a[key + '_entries']:,}", f"{b['batch']:,}", f"{b['total_q_padded_rounded']:,}",
                         f"{b['softmax_d_and_lse_log2'] / MIB:.1f}", f"{b['dq_accum'] / MIB:.1f}",
                         f"{b['dk_dv_accum'] / MIB:.1f}", f"{b['dq_semaphore'] / MIB:.2f}",
                         f"{b['zero_filled'] / MIB:.1f}", f"{b['total'] / MIB:.1f}"])
        head = ["cu_seqlens sizing", "entries", "batch", "total_q_padded_rounded", "softmax_d + lse_log2 MiB",
                "dq_accum MiB", "dk + dv accum MiB", "dq_semaphore MiB", "zero-filled MiB", "total MiB"]
        lines += [f"## FlashAttention-3 varlen backward scratch, one call over one training row "
                  f"({a['row_tokens']:,} tokens, span {a['span']}; FA3's formulas, modelled segments)", ""] + table(head, rows) + [
            "", f"expected real segments in the row: {a['expected_segments']:.1f}; forward softmax_lse kept per "
            f"application: {a['forward_lse_bytes'] / MIB:.1f} MiB. Each layer application's backward zero-fills the "
            f"accumulators: projected {a['bucketed']['projected_zero_fill_ms_per_step']:.1f} ms/step bucketed, "
            f"{a['worst_case']['projected_zero_fill_ms_per_step']:.1f} ms/step old sizing, at HBM bandwidth", ""]
    return lines[:-1]


def render_memory(plan: dict) -> list[str]:
    m = plan["memory"]
    rows = [[k.replace("_", " "), f"{v / MIB:,.0f}"] for k, v in m["parts"].items()]
    rows += [["**projected allocated**", f"**{m['projected_allocated'] / MIB:,.0f}**"],
             ["**projected reserved**", f"**{m['projected_reserved'] / MIB:,.0f}**"],
             [f"usable on an {m['gpu']}", f"{m['usable_bytes'] / MIB:,.0f}"]]
    title = f"## Projected peak memory per GPU ({m['max_applications']} applications)"
    return [title, ""] + table(["item", "MiB"], rows)


def render_ttt(plan: dict) -> list[str]:
    t, n = plan["ttt"], plan["gpus"]
    if not t["enabled"]:
        return ["## TTT: off (TTT_ENABLED=0)"]
    rows = []
    for leg in t["legs"]:
        if leg["kind"] == "scoring":
            label = f"LoRA scoring, batches {leg['batches'][0]}-{leg['batches'][1] - 1}"
        else:
            label = (f"global SGD phase {leg['phase']}: {leg['docs']:,} docs, {leg['tokens'] / 1e6:.2f}M tokens, "
                     f"{leg['steps']} steps")
        rows.append([label, f"{leg['dynamic']:.1f}", f"{leg['static']:.1f}"])
    rows.append(["**projected TTT timer (busiest rank)**", f"**{t['projected_seconds_dynamic']:.0f}**",
                 f"**{t['projected_seconds_static']:.0f}**"])
    title = (f"## Projected TTT seconds on {n} ranks: {t['batches']} batches, {t['chunk_steps']:,} chunk steps "
             f"(longest batch {t['longest_batch_steps']:,}), {t['lora_flops'] / 1e15:.0f} PFLOP of LoRA TTT")
    return [title, ""] + table(["leg", "dynamic claiming s", f"static b mod {n} s"], rows) + [
        "", f"record (#1855, 8xH100, dynamic claiming): {RECORD_TTT_RANGE[0]}-{RECORD_TTT_RANGE[1]} s, global SGD "
        "75-84 s of it"]


def render_artifact(plan: dict) -> list[str]:
    a = plan["artifact"]
    rows = [[g, f"{v['params']:,}", f"{v['bytes']:,.0f}"] for g, v in a["groups"].items()]
    rows += [["code (train_gpt.py as counted)", "", f"{a['code_bytes']:,}"],
             ["**projected total**", "", f"**{a['projected_total']:,}**"],
             ["projected headroom under 16,000,000", "", f"{a['projected_headroom']:,}"]]
    return ["## Projected artifact", ""] + table(["part", "parameters", "bytes"], rows)


def render_assumptions(plan: dict) -> list[str]:
    lines = ["## Assumptions (calibration constants; every number above that says projected rests on them)", ""]
    for a in plan["assumptions"]:
        v = a["value"]
        value = v if isinstance(v, str) else f"{v:,.0f}" if 1_000 <= v < 1e9 else f"{v:.4g}"
        lines.append(f"- {a['name']} = {value}: {a['basis']}")
    return lines


def render(plan: dict, title: str) -> str:
    d = plan["documents"]
    head = [f"# gpu_plan: {title} on {plan['gpus']}x {GPU_NAMES[plan['gpu']]} (projected: no GPU ran any of this)",
            "", f"documents: {d['source']}: {d['count']:,} documents, {d['targets']:,} targets, "
            f"longest {d['longest']:,}"]
    parts = [head, render_parameters(plan), render_training(plan), render_attention(plan), render_memory(plan),
             render_ttt(plan), render_artifact(plan), render_assumptions(plan)]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", help="records/recipes/NAME.env, over the environment")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the run (divides 8; default 8)")
    parser.add_argument("--gpu", choices=sorted(GPU_NAMES), default="h100")
    parser.add_argument("--val-shards", help="glob of real fineweb_val_*.bin shards: their document lengths")
    parser.add_argument("--json", action="store_true", help="the same numbers as JSON")
    parser.add_argument("--calibrate", action="store_true", help="print the constants the record facts give")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: dict | None = None) -> int:
    """environ: the knobs (default os.environ), as train_gpt.py would see them."""
    args = parse_args(argv)
    try:
        if args.calibrate:
            print(json.dumps(asdict(calibrate()), indent=1))
            return 0
        if args.gpus < 1 or 8 % args.gpus:
            raise PlanError(f"--gpus {args.gpus} must divide 8 (train_gpt.py accumulates 8 / WORLD_SIZE micro-steps)")
        environ = os.environ if environ is None else environ
        hp = hyperparameters({**environ, **(recipe_env(args.recipe) if args.recipe else {})})
        lengths = shard_lengths(args.val_shards, hp) if args.val_shards else modelled_lengths()
        mean = FINEWEB_VAL_TARGETS / FINEWEB_VAL_DOCS
        source = args.val_shards or f"modelled (log-normal, sigma {C4_LOG_SIGMA}, mean {mean:.0f})"
        plan = build_plan(hp, lengths, args.gpus, args.gpu, source)
    except (PlanError, tg.DataError) as e:
        print(f"gpu_plan: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    title = f"recipe {args.recipe}" if args.recipe else "the knobs in the environment (defaults = #1855)"
    if args.json:
        print(json.dumps(plan, indent=1, default=lambda o: o.item()))  # numpy scalars as plain numbers
    else:
        print(render(plan, title), end="")
    if plan["refusals"]:
        print(f"gpu_plan: error: {'; '.join(plan['refusals'])}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
