"""
train_gpt.py: one-file training stack for OpenAI's Parameter Golf (artifact = code + weights <= 16,000,000 bytes).
    torchrun --standalone --nproc_per_node=8 train_gpt.py     # 8xH100, NCCL
    python train_gpt.py                                        # one process, CUDA or CPU
    torchrun --standalone --nproc_per_node=2 train_gpt.py     # CPU processes talk over gloo
Every knob is an environment variable (Hyperparameters, --help). Layout and design: docs/design.md.
"""

import contextlib
import copy
import datetime
import difflib
import fcntl
import functools
import glob
import hashlib
import importlib
import io
import itertools
import json
import lzma
import math
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
import weakref
import zlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from torch.nn.parallel import DistributedDataParallel as DDP

try:  # FlashAttention-3 (Hopper wheels; the records' kernel since #1530): ATTN_BACKEND=fa3, or auto on CUDA
    from flash_attn_interface import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None

# Run as a script this file is __main__; the long-run module's `from train_gpt import ...` must get this copy
sys.modules.setdefault("train_gpt", sys.modules[__name__])
ARTIFACT_CAP_BYTES = 16_000_000  # decimal bytes: code + compressed model (challenge rule)

# -------- HYPERPARAMETERS ----------------------------------------------------------------------
# Every knob is an env var, its field's name in upper case; defaults: the best 8xH100 recipe we know (#1855 without
# CaseOps), records/recipes/*.env the older ones. Bad values and misspelled names fail at startup, named.

def knob(default, bounds: str = "", model: bool = False, choices: tuple = ()):
    """One env-var knob: default, allowed interval ("[0, 1)"), model=True if in the artifact; its comment is --help."""
    return field(default=default, metadata={"bounds": bounds, "choices": choices, "model": model})

def choice(default: str, *others: str, model: bool = False):  # one of a few words, the first being the default
    return knob(default, model=model, choices=(default, *others))

@dataclass(frozen=True)
class Hyperparameters:
    # data and logging (empty paths: see derived_paths)
    data_dir: str = knob("./data")  # root of datasets/ and tokenizers/, for the paths left empty
    caseops_enabled: bool = knob(False)  # #1855's CaseOps dataset/tokenizer paths; val bytes from its sidecar
    data_path: str = knob("")  # fineweb_{train,val}_*.bin dir; empty = DATA_DIR/datasets/fineweb10B_sp{VOCAB_SIZE}
    tokenizer_path: str = knob("")  # SentencePiece model; empty = DATA_DIR/tokenizers/fineweb_{VOCAB_SIZE}_bpe.model
    val_bytes_path: str = knob("")  # glob of per-val-token byte sidecars (CaseOps: DATA_PATH/fineweb_val_bytes_*.bin)
    run_id: str = knob("")  # name of the log file logs/<RUN_ID>.txt; empty = random uuid
    artifact_dir: str = knob(".")  # where logs/ and final_model.* are written
    seed: int = knob(1337, "[0, 1e12]")  # seed for weights and any sampling
    val_batch_size: int = knob(524_288, "(0, inf)")  # val tokens per forward across all ranks and accumulation steps
    val_loss_every: int = knob(0)  # validate every N steps (0 = only at the end)
    train_log_every: int = knob(200)  # log the train loss every N steps (and the first 10)
    eval_rows_by_doc: bool = knob(False)  # diagnostic eval cuts rows only at BOS and every TRAIN_SEQ_LEN (#1855)
    # training
    iterations: int = knob(20_000, "[0, inf)")  # max optimizer steps
    warmup_steps: int = knob(20, "[0, inf)")  # compile warm-up steps per stage; then weights, optimizer, loader reset
    train_batch_tokens: int = knob(786_432, "(0, inf)")  # tokens per optimizer step across all ranks
    train_seq_len: int = knob(2048, "(0, inf)")  # longest attention segment (documents cut every N); eval row length
    max_wallclock_seconds: float = knob(600.0)  # training time cap, eval excluded (<= 0: no cap)
    gptq_reserve_seconds: float = knob(8.0, "[0, inf)")  # seconds cut from the cap for GPTQ calibration (#1868)
    export_minutes: str = knob("")  # export an artifact at these training minutes, e.g. 10,20 (#2008); clock paused
    export_eval: bool = knob(False)  # also score each export's weights before quantization (#2008 EXPORT_MODE=full)
    schedule_horizon_seconds: float = knob(0.0)  # schedules follow this horizon, the cap still stops (#2008; 0 = cap)
    resume_enabled: bool = knob(False)  # write resumable checkpoints at RESUME_SAVE_MINUTES/STEPS (#2008)
    resume_save_minutes: str = knob("")  # training minutes of the checkpoints, e.g. 30,60,90
    resume_save_steps: str = knob("")  # training steps of more checkpoints, e.g. 4000,8000
    resume_dir: str = knob("")  # where the checkpoints and resume_manifest.json go; empty = ARTIFACT_DIR/resume
    resume_keep_last: int = knob(3, "[1, inf)")  # checkpoints kept (older deleted once a newer one is complete)
    resume_from: str = knob("")  # continue the run saved in this RESUME_DIR (or its resume_manifest.json)
    warmdown_frac: float = knob(0.85, "[0, 1]")  # LR decays linearly over this last fraction of training (0: use ITERS)
    warmdown_iters: int = knob(0)  # baseline schedule: decay over the last N steps, wallclock-projected
    min_lr: float = knob(0.10, "[0, 1]")  # LR multiplier floor of the fractional warm-down (#1787)
    # model
    vocab_size: int = knob(8192, "(0, inf)", model=True)  # token vocabulary; must equal the tokenizer's
    num_layers: int = knob(11, "(0, inf)", model=True)  # physical transformer blocks
    model_dim: int = knob(512, "(0, inf)", model=True)  # residual width
    num_heads: int = knob(8, "(0, inf)", model=True)  # query heads
    num_kv_heads: int = knob(4, "(0, inf)", model=True)  # key/value heads (GQA)
    mlp_mult: float = knob(4.0, "(0, inf)", model=True)  # MLP hidden width = MLP_MULT * MODEL_DIM
    mlp_negative_slope: float = knob(0.5, model=True)  # MLP act = leaky_relu(x, slope)^2; 0 = the baseline relu^2
    tie_embeddings: bool = knob(True, model=True)  # share the input embedding with the output head
    rope_base: float = knob(10_000.0, "(0, inf)", model=True)  # RoPE base frequency
    rope_dims: int = knob(16, model=True)  # rotate only the first N dims of each head (0 = all)
    ln_scale: bool = knob(True, model=True)  # scale block inputs by 1/sqrt(layer+1)
    logit_softcap: float = knob(30.0, "(0, inf)", model=True)  # logits = c * tanh(z / c)
    asym_logit_rescale: bool = knob(False, model=True)  # learned positive/negative logit caps (#1923's, trained here)
    qk_gain_init: float = knob(5.0)  # initial per-head gain on RMS-normed queries
    tied_embed_init_std: float = knob(0.005, "[0, inf)")  # std of the tied embedding init
    ortho_init: bool = knob(True)  # orthogonal init of Q, K, V and MLP-up (else PyTorch's default)
    rope_bf16_freqs: bool = knob(False, model=True)  # RoPE frequencies rounded to bf16 (#1855)
    attn_backend: str = choice("auto", "sdpa", "flex", "fa3")  # auto: fa3 if importable on CUDA, else flex; sdpa on CPU
    doc_isolation: bool = knob(True, model=True)  # attention segments end at every BOS (else only every TRAIN_SEQ_LEN)
    xsa_last_n: int = knob(11, model=True)  # XSA on the last N blocks (#1855; under NUM_REPEATS: applications, #895)
    smear_gate_enabled: bool = knob(True, model=True)  # SmearGate: mix in the previous token's embedding (BOS-masked)
    gate_window: int = knob(12, "(0, inf)", model=True)  # input dims read by SmearGate and the sparse/out attn gates
    sparse_attn_gate_enabled: bool = knob(True, model=True)  # per-head gate sigmoid(k W x[:window]) (#1787)
    sparse_attn_gate_scale: float = knob(0.5, model=True)  # k of the sparse attention gate
    sparse_attn_gate_init_std: float = knob(0.0)  # init std of the sparse gate weights
    attn_out_gate_enabled: bool = knob(False, model=True)  # per-head gate 2 sigmoid(W src[:window]) (#1667)
    attn_out_gate_src: str = choice("proj", "q", model=True)  # AttnOutGate input: block input or raw q
    gated_attn_enabled: bool = knob(False, model=True)  # dense per-head gate sigmoid(W x) (#1736)
    gated_attn_init_std: float = knob(0.01)  # init std of the dense gate weights
    skip_gates_enabled: bool = knob(True, model=True)  # U-Net skips as a learned sigmoid lerp instead of a sum
    parallel_start_layer: int = knob(8, model=True)  # decoder layers >= N run attention and MLP in 2 lanes (<= 0: off)
    parallel_final_lane: str = choice("mean", "attn", "mlp", model=True)  # output of the lanes
    num_loops: int = knob(2, "[0, inf)", model=True)  # extra passes over layers LOOP_START..LOOP_END once looping is on
    loop_start: int = knob(3, model=True)  # first looped layer
    loop_end: int = knob(5, model=True)  # last looped layer (inclusive)
    enable_looping_at: float = knob(0.35, "[0, 1)")  # training fraction at which looping switches on
    num_repeats: int = knob(1, "(0, inf)", model=True)  # #895 shared-block recurrence: passes over all blocks (1 = off)
    prog_depth: str = knob("")  # #895 progressive depth 'frac:repeats,...', e.g. 0.4:2,0.65:3,1.0:4
    train_seq_schedule: str = knob("")  # context growth 'len@frac,...' (#2014), e.g. 1024@0.1,2048@0.7,3072@1.0
    num_value_embeds: int = knob(0, "[0, inf)", model=True)  # #895 value-embedding tables added to every layer's input
    # optimizer and weight averaging
    embed_lr: float = knob(0.6, "[0, inf)")  # Adam LR of an untied input embedding
    head_lr: float = knob(0.008, "[0, inf)")  # Adam LR of an untied output head
    tied_embed_lr: float = knob(0.03, "[0, inf)")  # Adam LR of the tied embedding (and value embeddings)
    matrix_lr: float = knob(0.026, "[0, inf)")  # Muon LR of the block matrices
    scalar_lr: float = knob(0.02, "[0, inf)")  # Adam LR of gains, mixes, gates and skip weights
    muon_momentum: float = knob(0.97, "[0, 1)")  # Muon momentum after warm-up
    muon_backend_steps: int = knob(5)  # Newton-Schulz iterations
    muon_polar_express: bool = knob(True)  # per-iteration Polar Express coefficients (#1344) instead of fixed
    muon_row_normalize: bool = knob(True)  # MuonEq-R: unit-norm rows before orthogonalizing (#1217)
    muon_wd: float = knob(0.095, "[0, inf)")  # decoupled weight decay of the Muon matrices
    muon_momentum_warmup_start: float = knob(0.92, "[0, 1)")  # Muon momentum at step 0
    muon_momentum_warmup_steps: int = knob(1500)  # steps of linear momentum warm-up
    beta1: float = knob(0.9, "[0, 1)")  # Adam beta1
    beta2: float = knob(0.99, "[0, 1)")  # Adam beta2
    adam_eps: float = knob(1e-8, "(0, inf)")  # Adam epsilon
    embed_wd: float = knob(0.085, "[0, inf)")  # AdamW weight decay of the embeddings
    adam_wd: float = knob(0.02, "[0, inf)")  # AdamW weight decay of the scalar/control tensors
    grad_clip_norm: float = knob(0.3, "[0, inf)")  # global grad-norm clip (0 = off)
    grad_clip_per_rank: bool = knob(False)  # clip each rank's gradient before averaging (#1855)
    muon_keep_warmup_momentum: bool = knob(False)  # Muon momentum keeps its compile warm-up value (#1855)
    ema_decay: float = knob(0.9965, "[0, 1)")  # EMA of the weights, loaded after training (0 = off)
    swa_enabled: bool = knob(False)  # #895 SWA: average checkpoints late in training instead of EMA
    swa_start_frac: float = knob(0.4, "(0, inf)")  # SWA collects once the LR multiplier drops below this
    swa_every: int = knob(50, "(0, inf)")  # SWA collects every N steps
    # quantization and artifact
    quant_method: str = choice("gptq", "gptq_lite", "int8")  # full-Hessian GPTQ, #895's clip search, or int8
    matrix_bits: int = knob(6, "[2, 8]")  # bits of the block matrices (gptq, gptq_lite)
    embed_bits: int = knob(7, "[2, 8]")  # bits of the embedding tables (gptq, gptq_lite; int7 of #1586)
    matrix_clip_sigmas: float = knob(12.85, "(0, inf)")  # row scale = k * row std / levels, for other matrices
    attn_clip_sigmas: float = knob(13.0, "(0, inf)")  # k of the attention matrices
    mlp_clip_sigmas: float = knob(11.5, "(0, inf)")  # k of the MLP matrices
    embed_clip_sigmas: float = knob(14.0, "(0, inf)")  # k of the embedding tables
    gptq_calibration_batches: int = knob(16, "(0, inf)")  # calibration micro-batches for the GPTQ Hessians
    gptq_calibration: str = choice("train", "self")  # calibration tokens: train shards or self-generated
    gated_attn_quant_gate: bool = knob(True)  # store attention-gate weights as int8 rows (#1736)
    keep_float_max_numel: int = knob(65_536)  # tensors this small are stored unquantized (fp16 under gptq)
    lqer_enabled: bool = knob(True)  # low-rank correction of the worst GPTQ errors (#1797)
    lqer_rank: int = knob(4, "(0, inf)")  # rank of the LQER correction
    lqer_top_k: int = knob(3, "[0, inf)")  # tensors that get one
    lqer_factor_bits: int = knob(4, "[2, 8]")  # bits of the symmetric LQER factors
    lqer_asym_enabled: bool = knob(True)  # LQER factors as int2 (A) and grouped int4 (B)
    lqer_asym_group: int = knob(64, "(0, inf)")  # group size of B's int4 scales
    compressor: str = choice("brotli", "zstd", "lzma", "zlib")  # artifact compressor (arrays byte-shuffled first)
    rans_coding: bool = knob(True)  # rANS-code the attention and MLP integer codes (ours) instead of compressing them
    scale_log_grid: bool = knob(True)  # row scales on a 2^(1/32) grid as int16 exponents (0: fp16, #1855)
    code_packing: str = choice("brotli", "raw")  # count (and write) the code as a minified exec stub, or raw
    # evaluation
    eval_only_path: str = knob("")  # skip training, score this artifact (1 = ARTIFACT_DIR's)
    eval_summary_json: str = knob("")  # write every eval stage's loss, bpb, tokens, bytes and seconds here (JSON)
    eval_budget_seconds: float = knob(600.0)  # warn when the TTT timer or the whole eval exceeds this
    sliding_window_enabled: bool = knob(False)  # also score with overlapping windows (#895, #1626; absent in #1855)
    eval_seq_len: int = knob(0, "[0, inf)")  # sliding-window length (0 = TRAIN_SEQ_LEN)
    eval_stride: int = knob(64, "(0, inf)")  # a new window every N targets; each scores its last N
    eval_batch_seqs: int = knob(32, "(0, inf)")  # sliding windows per forward
    use_hedge: bool = knob(False)  # #895's Hedge mixer over n-gram experts, inside the (sliding) window pass
    hedge_eta: float = knob(0.1, "[0, inf)")  # Hedge learning rate of the expert log-weights
    ngram_tilt_enabled: bool = knob(False)  # token-only n-gram tilt (#1514, #2135) on every stage's distribution
    ngram_tilt_order: int = knob(16, "(0, inf)")  # n-gram order of the hint: its context is the ORDER-1 tokens before
    ngram_tilt_threshold: float = knob(0.8)  # hint only where its continuation has this share of the context's
    ngram_tilt_beta: float = knob(2.625)  # logit boost of the hinted token before renormalizing
    ttt_enabled: bool = knob(True)  # score-first per-document LoRA test-time training (#1530, #1855)
    ttt_lora_rank: int = knob(80, "(0, inf)")  # rank of each adapter
    ttt_lora_alpha: float = knob(144.0)  # adapter scale alpha/rank (#1767)
    ttt_lora_lr: float = knob(1e-4, "[0, inf)")  # adapter learning rate
    ttt_optimizer: str = choice("adam", "sgd")  # adapter optimizer: AdamW, or SGD (momentum TTT_BETA1, L2 decay)
    ttt_beta1: float = knob(0.0, "[0, 1)")  # AdamW beta1 (SGD momentum) of the adapters
    ttt_beta2: float = knob(0.99, "[0, 1)")  # AdamW beta2 of the adapters
    ttt_weight_decay: float = knob(0.5, "[0, inf)")  # weight decay of the adapters
    ttt_grad_steps: int = knob(1, "(0, inf)")  # adapter steps per scored chunk
    ttt_chunk_size: int = knob(48, "(0, inf)")  # targets scored (then trained on) per step of a document
    ttt_short_doc_chunks: str = knob("")  # 'chunk@maxlen,...' (#2014): for a batch whose longest document is short
    ttt_eval_seq_len: int = knob(2048, "(0, inf)")  # context window of a TTT chunk (and of global-SGD sequences)
    ttt_batch_size: int = knob(64, "(0, inf)")  # documents per TTT batch (one adapter each)
    ttt_warm_start_a: bool = knob(True)  # keep the trained A of the previous batch of the same lane (#1767)
    ttt_q_lora: bool = knob(True)  # adapter on the queries
    ttt_k_lora: bool = knob(True)  # adapter on the keys
    ttt_v_lora: bool = knob(True)  # adapter on the values
    ttt_o_lora: bool = knob(True)  # adapter beside the attention output projection
    ttt_mlp_lora: bool = knob(True)  # adapter beside the MLP (the LM-head adapter is always on)
    ttt_eval_batches: str = knob("")  # dev only: score only these TTT batch indices, e.g. 0,5,9 (labelled _partial)
    phased_ttt_enabled: bool = knob(True)  # global SGD of the base weights on fully scored documents (#1626)
    phased_ttt_prefix_docs: int = knob(2500)  # documents global SGD uses by the last phase
    phased_ttt_num_phases: int = knob(3, "(0, inf)")  # phases; phase k trains on PREFIX_DOCS*k/PHASES scored documents
    global_ttt_lr: float = knob(0.001, "[0, inf)")  # global SGD learning rate (cosine decay over the chunks)
    global_ttt_momentum: float = knob(0.9, "[0, 1)")  # global SGD momentum
    global_ttt_epochs: int = knob(1, "(0, inf)")  # steps on each chunk, back to back
    global_ttt_chunk_tokens: int = knob(32_768, "(0, inf)")  # tokens per global SGD step (the last is never trained on)
    global_ttt_batch_seqs: int = knob(32, "(0, inf)")  # sequences per micro-batch of a rank
    global_ttt_grad_clip: float = knob(1.0, "[0, inf)")  # grad-norm clip of global SGD (0 = off)
    global_ttt_warmup_start_lr: float = knob(0.0, "[0, inf)")  # global SGD warm-up starting LR
    global_ttt_warmup_chunks: int = knob(0, "[0, inf)")  # chunks of linear global SGD warm-up (to GLOBAL_TTT_LR)
    global_ttt_stream: str = choice("queue", "record")  # SGD docs: the queue's first, or #1855's shortest scored
    # runtime
    compile: str = choice("auto", "0", "1")  # torch.compile the model: auto = on for CUDA
    autocast: str = choice("auto", "bf16", "off")  # bf16 autocast: auto = CUDA or a CPU with native bf16
    dist_timeout_seconds: float = knob(1800.0, "(0, inf)")  # collective timeout; keep well above the eval budget

    @classmethod
    def from_env(cls, environ=os.environ) -> "Hyperparameters":
        """Our knobs (the records' own names go through scripts/record_env.py)."""
        check_knob_spelling(environ)
        hp = cls(**{f.name: parse_knob(key, environ[key], type(f.default), f.metadata["choices"])
                    for f in fields(cls) if (key := f.name.upper()) in environ})
        return replace(hp, **derived_paths(hp))

    def __post_init__(self):  # every instance is checked: from the env, a test or replace()
        for f in fields(self):
            check_bounds(f.name.upper(), getattr(self, f.name), f.metadata["bounds"])
        for name in LIST_KNOBS:
            knob_list(self, name)
        for ok, msg in self.cross_checks():
            if not ok:
                raise HyperparameterError(msg)

    def cross_checks(self) -> tuple:
        head_dim, window = self.model_dim // self.num_heads, self.eval_seq_len or self.train_seq_len
        gates = self.sparse_attn_gate_enabled + self.attn_out_gate_enabled + self.gated_attn_enabled
        chunk = max([self.ttt_chunk_size] + [c for c, _ in knob_list(self, "ttt_short_doc_chunks")])
        return (
            (self.model_dim % self.num_heads == 0, "MODEL_DIM must be divisible by NUM_HEADS"),
            (self.num_heads % self.num_kv_heads == 0, "NUM_HEADS must be divisible by NUM_KV_HEADS"),
            (self.rope_dims % 2 == 0 and 0 <= self.rope_dims <= head_dim, "ROPE_DIMS must be even and <= head dim"),
            (head_dim % 2 == 0, "head dim (MODEL_DIM/NUM_HEADS) must be even for RoPE"),
            # 8 = ranks x accumulation steps at any world size: every micro-batch is one row of the same length
            (self.train_batch_tokens % 8 == 0, "TRAIN_BATCH_TOKENS must be a multiple of 8"),
            (gates <= 1, "at most one of SPARSE_ATTN_GATE_ENABLED, ATTN_OUT_GATE_ENABLED, GATED_ATTN_ENABLED"),
            (self.gate_window <= self.model_dim, "GATE_WINDOW must be <= MODEL_DIM"),
            (int(self.mlp_mult * self.model_dim) >= 1, "MLP_MULT * MODEL_DIM must be >= 1"),
            (self.num_loops <= 0 or 0 <= self.loop_start <= self.loop_end < self.num_layers,
             "need 0 <= LOOP_START <= LOOP_END < NUM_LAYERS"),
            (self.num_loops <= 0 or self.num_repeats == 1, "NUM_LOOPS and NUM_REPEATS: use one"),
            (self.num_loops <= 0 or not self.num_value_embeds, "NUM_VALUE_EMBEDS needs NUM_LOOPS=0"),  # #895's
            (not (self.swa_enabled and self.ema_decay > 0), "SWA_ENABLED needs EMA_DECAY=0"),
            (all(n <= self.train_seq_len for n, _ in knob_list(self, "train_seq_schedule")),
             "TRAIN_SEQ_SCHEDULE lengths must be <= TRAIN_SEQ_LEN"),
            (self.schedule_horizon_seconds <= 0 or self.schedule_horizon_seconds > self.gptq_reserve_seconds,
             "SCHEDULE_HORIZON_SECONDS must exceed GPTQ_RESERVE_SECONDS (or be 0)"),
            # the sliding pass would fail on a wider stride, after training
            (not (self.sliding_window_enabled or self.use_hedge) or self.eval_stride <= window,
             f"EVAL_STRIDE={self.eval_stride} must be <= the window, EVAL_SEQ_LEN or TRAIN_SEQ_LEN ({window})"),
            (not self.ttt_enabled or chunk <= self.ttt_eval_seq_len,  # a chunk's context window ends with it
             "TTT chunk sizes must be <= TTT_EVAL_SEQ_LEN"),
            (not self.resume_enabled or bool(self.resume_save_minutes + self.resume_save_steps),
             "RESUME_ENABLED=1 needs RESUME_SAVE_MINUTES or RESUME_SAVE_STEPS"),
            (not (self.resume_from and self.eval_only_path), "RESUME_FROM trains on; EVAL_ONLY_PATH only scores"),
            # one pass would leave the cross-repeat scales without gradients, which DDP rejects
            (all(2 <= r <= self.num_repeats for _, r in knob_list(self, "prog_depth")),
             "PROG_DEPTH repeats must be in 2..NUM_REPEATS"))

    def model_config(self) -> dict:
        """The knobs that define the function the weights compute: stored in the artifact, checked on load."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["model"]}

class HyperparameterError(ValueError):
    pass

def check_bounds(name: str, value, bounds: str) -> None:
    """nan or inf in a float knob would train or score garbage silently; bounds "[lo, hi)" as in math."""
    if isinstance(value, float) and not math.isfinite(value):
        raise HyperparameterError(f"{name}={value} must be a finite number")
    if bounds:
        lo, hi = (float(b) for b in bounds[1:-1].split(","))
        if not ((lo < value or bounds[0] == "[" and value == lo) and (value < hi or bounds[-1] == "]" and value == hi)):
            raise HyperparameterError(f"{name}={value} must be in {bounds}")

# List knobs: 'a@b,c@d' -> [(a, b), (c, d)] or 'a,b' -> [a, b], sorted, distinct, > 0 (TTT_EVAL_BATCHES: >= 0)
LIST_KNOBS = {"prog_depth": (float, int), "train_seq_schedule": (int, float), "ttt_short_doc_chunks": (int, int),
              "export_minutes": (float,), "resume_save_minutes": (float,), "resume_save_steps": (int,),
              "ttt_eval_batches": (int,)}

def knob_list(hp, name: str) -> list:
    spec, kinds, sep = getattr(hp, name), LIST_KNOBS[name], ":" if name == "prog_depth" else "@"
    try:
        items = sorted({tuple(k(v) for k, v in zip(kinds, item.split(sep), strict=True))
                        for item in spec.split(",") if item.strip()})
    except ValueError:
        items = [(-1,)]
    least = 0 if name == "ttt_eval_batches" else 1e-300
    if any(not least <= v < math.inf for item in items for v in item):
        form = sep.join(k.__name__ for k in kinds)
        raise HyperparameterError(f"{name.upper()}={spec!r}: expected a comma list of {form}, numbers > 0")
    return [item[0] if len(kinds) == 1 else item for item in items]

def seq_schedule(hp) -> list[tuple[float, int]]:  # TRAIN_SEQ_SCHEDULE as (training fraction, length), by fraction
    return sorted((f, n) for n, f in knob_list(hp, "train_seq_schedule"))

# Env vars of the launcher (torchrun's RANK, LOCAL_RANK, WORLD_SIZE, MASTER_PORT...) and the libraries: not knobs
PROCESS_ENV_PREFIXES = ("RANK", "LOCAL_", "WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_", "NCCL_", "CUDA_",
                        "CUDNN_", "CUBLAS", "TORCH", "PYTORCH_", "TRITON_", "PYTHON", "OMP_", "MKL_", "KMP_",
                        "NVIDIA_", "HF_", "LD_", "LC_", "XDG_", "SLURM_")

def parse_knob(name: str, raw: str, kind: type, choices: tuple):
    word = raw.strip()
    try:
        value = {"1": True, "true": True, "0": False, "false": False}[word.lower()] if kind is bool else kind(word)
    except (KeyError, ValueError):
        raise HyperparameterError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if choices and value not in choices:
        raise HyperparameterError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value

def derived_paths(hp: Hyperparameters) -> dict[str, str]:
    """Empty DATA_PATH, TOKENIZER_PATH, RESUME_DIR as #1775/#1855/#2008 derive them; CASEOPS_ENABLED: #1855's layout."""
    root, data, tokenizer = hp.data_dir, f"fineweb10B_sp{hp.vocab_size}", f"fineweb_{hp.vocab_size}_bpe"
    if hp.caseops_enabled:
        root = os.path.join(root, "datasets", f"{data}_caseops", "datasets")
        data, tokenizer = (f"{name}_lossless_caps_caseops_v1_reserved" for name in (data, tokenizer))
    data = hp.data_path or os.path.join(root, "datasets", data)
    sidecar = os.path.join(data, "fineweb_val_bytes_*.bin") if hp.caseops_enabled else ""
    return {"data_path": data, "val_bytes_path": hp.val_bytes_path or sidecar,
            "tokenizer_path": hp.tokenizer_path or os.path.join(root, "tokenizers", f"{tokenizer}.model"),
            "resume_dir": hp.resume_dir or os.path.join(hp.artifact_dir, "resume")}

def check_knob_spelling(environ) -> None:
    """Refuse unknown names: a typo (MODEL_DIMS) or a record's name (SMEAR_GATE) would silently use the default."""
    known = [f.name.upper() for f in fields(Hyperparameters)]
    words = {w for k in known for w in k.split("_")}
    for key in environ:
        if key in known or key.startswith(PROCESS_ENV_PREFIXES):
            continue
        if key.upper() in known:  # env names are case-sensitive: num_layers=3 would be ignored
            raise HyperparameterError(f"{key} is not read: knob names are upper case, set {key.upper()}")
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.88)
        if close or "_" in key and set(key.split("_")) <= words:
            hint = f"did you mean {close[0]}?" if close else "a record's name? see scripts/record_env.py"
            raise HyperparameterError(f"{key} is not a knob of train_gpt.py; {hint}")

def describe_hyperparameters(hp: Hyperparameters) -> list[str]:  # the resolved knobs, derived paths included
    return ["hyperparameters:"] + [f"  {f.name.upper()}={getattr(hp, f.name)}" for f in fields(hp)]

# -------- RUNTIME ------------------------------------------------------------------------------
# Distributed setup lives here (and GRAD_CLIP_PER_RANK's gradient average), in Muon's update all-reduce and in
# the metric reducer only. World size 1 is the plain path: no torchrun, no process group.

@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    autocast: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def grad_accum_steps(self) -> int:  # the baseline's global batch is defined for 8 ranks; fewer accumulate
        return 8 // self.world_size

def init_runtime(hp: Hyperparameters) -> Runtime:
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size < 1 or 8 % world_size != 0:
        raise HyperparameterError(f"WORLD_SIZE={world_size} must divide 8 (grad accumulation keeps the batch)")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None,
                                timeout=datetime.timedelta(seconds=hp.dist_timeout_seconds))
    autocast = hp.autocast == "bf16" or hp.autocast == "auto" and (cuda or torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return Runtime(rank, world_size, local_rank, device, autocast)

def all_reduce_(tensor: Tensor, rt: Runtime, op=dist.ReduceOp.SUM) -> Tensor:
    if rt.distributed:
        dist.all_reduce(tensor, op=op)
    return tensor

def average_gradients(params: list[Tensor], rt: Runtime) -> None:
    """The average DDP computes, done by hand after each rank clipped its own gradient (GRAD_CLIP_PER_RANK)."""
    grads = [p.grad for p in params if p.grad is not None]
    for dtype in dict.fromkeys(g.dtype for g in grads):  # one flat all-reduce per dtype, in the same order
        same = [g for g in grads if g.dtype == dtype]
        flat = all_reduce_(torch._utils._flatten_dense_tensors(same), rt) / rt.world_size
        torch._foreach_copy_(same, torch._utils._unflatten_dense_tensors(flat, same))

def autocast_context(rt: Runtime):
    return torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16, enabled=rt.autocast)

def compiles(hp: Hyperparameters, rt: Runtime) -> bool:
    return hp.compile == "1" or (hp.compile == "auto" and rt.device.type == "cuda")

def torch_compile(fn, **options):  # with our dynamo settings, set here: a run that never compiles skips its 2 s import
    # a graph per training stage and cu_seqlens bucket, plus the eval graphs: past 8, silently eager (#1855: 64)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    # equal dynamic sizes share a symbol: a TTT window as wide as a LoRA rank would pin it (a recompile in the eval)
    torch.fx.experimental._config.use_duck_shape = False
    return torch.compile(fn, **options)

def fp32_context(device: torch.device):  # statistics (Hessians, GPTQ, LQER) stay fp32 inside an autocast region
    return torch.autocast(device_type=device.type, enabled=False)

def synchronize(rt: Runtime) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()

class OutputError(RuntimeError):
    """A log or summary that cannot be written (a full disk): one line, exit 2."""

# Where the run is and what it has written, for the one line of an interrupted run (Ctrl-C)
RUN_STATE: dict = {"stage": "startup"}

class Logger:
    """Rank 0 prints and appends to logs/<RUN_ID>.txt; lines wait until open_file(): a refused run leaves no log."""

    def __init__(self, path: Path | None):
        self.path, self.pending = path, []

    def open_file(self) -> None:
        """An earlier run's log of the same RUN_ID is moved to <RUN_ID>.<k>.txt, never appended to."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                older = next(p for k in itertools.count(1) if not (p := self.path.with_suffix(f".{k}.txt")).exists())
                self.path.rename(older)
                self.pending.append(f"log: the earlier log of this RUN_ID is now {older}\n")
            self.write(self.pending, "w")
            self.pending = None

    def __call__(self, msg: str, console: bool = True) -> None:
        if self.path is None:
            return
        if console:  # one write per line, so other ranks' output cannot land inside it
            sys.stdout.write(msg + "\n")
            sys.stdout.flush()
        if self.pending is None:
            self.write([msg + "\n"], "a")
        else:
            self.pending.append(msg + "\n")

    def write(self, lines: list[str], mode: str) -> None:
        try:
            with open(self.path, mode, encoding="utf-8") as f:
                f.writelines(lines)
        except OSError as e:
            path, self.path = self.path, None  # no more lines: the error line goes to stderr
            raise OutputError(f"could not write the log {path} ({e.strerror}): the run stopped") from None

def atomic_write_files(files: dict[Path, bytes]) -> None:
    """Each file to a fsynced temp in its directory, then all renamed: readers never see a partial file or set.
    On an error the temps are removed; a killed writer's, by the next write of the same file."""
    temps = {}
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(path.parent, glob.escape(path.name))
            temps[path] = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(temps[path], "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise

def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_files({path: data})

def remove_stale_temps(directory: Path, name: str) -> None:
    """Temp files of the files matching name (a glob) left by a process that no longer runs (kill -9)."""
    for tmp in directory.glob(f".{name}.*.tmp"):
        pid = tmp.name[:-4].rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except PermissionError:
                pass  # alive, another user's

def write_on_all_ranks(write, rt: Runtime, elsewhere: str) -> str | None:
    """This rank's write (None: nothing here); every rank learns None if all succeeded, else why not (its OSError,
    else `elsewhere`). A failed write leaves the earlier files whole; the all-reduce is the barrier after it."""
    failed, why = torch.zeros((), device=rt.device), elsewhere
    try:
        if write is not None:
            write()
    except OSError as e:
        failed, why = failed + 1, str(e)
    return why if all_reduce_(failed, rt).item() else None

# -------- DATA ---------------------------------------------------------------------------------
# Official shard format: 256 little-endian int32 (magic 20240520, version 1, token count N), then N uint16
# tokens. Training streams shards in order and wraps; validation is the whole fineweb_val_* split, never trained on.

SHARD_MAGIC, SHARD_VERSION, SHARD_HEADER_BYTES = 20240520, 1, 256 * 4
BOS_ID = 1  # every document in a shard starts with this id (checked against the tokenizer)

class DataError(ValueError):
    pass

def read_shard(path: str | Path) -> Tensor:
    return torch.from_numpy(shard_array(path).astype(np.int32))

def shard_array(path: str | Path) -> np.ndarray:
    """The tokens of one shard, memory-mapped, once its header and size agree."""
    size = os.path.getsize(path)
    if size < SHARD_HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes is shorter than the {SHARD_HEADER_BYTES}-byte shard header")
    magic, version, num_tokens = np.fromfile(path, dtype="<i4", count=3).tolist()
    if (magic, version) != (SHARD_MAGIC, SHARD_VERSION):
        raise DataError(f"{path}: bad shard header (magic {magic}, version {version})")
    if size != SHARD_HEADER_BYTES + 2 * num_tokens:
        raise DataError(f"{path}: header says {num_tokens} tokens but has {size} bytes: truncated or corrupt shard")
    return np.memmap(path, dtype="<u2", mode="r", offset=SHARD_HEADER_BYTES, shape=(num_tokens,))

def shard_tokens(path: Path, vocab_size: int) -> np.ndarray:
    """shard_array, every id checked to lie in the vocabulary."""
    tokens = shard_array(path)
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise DataError(f"{path}: token id {int(tokens.max())} >= VOCAB_SIZE {vocab_size}")
    return tokens

GET_DATA_HINT = "get the official data (`data/cached_challenge_fineweb.py`) or build your own (`data/build_shards.py`)"

def shard_paths(pattern: str, skip_sidecars: bool = False) -> list[Path]:
    """Sorted files of a glob; skip_sidecars drops the CaseOps byte sidecars fineweb_val_*.bin also matches."""
    paths = sorted(Path(p) for p in glob.glob(pattern) if not (skip_sidecars and "_bytes_" in Path(p).name))
    if not paths:
        raise DataError(f"no files match {pattern}: {GET_DATA_HINT}")
    return paths

def check_train_shards(pattern: str, vocab_size: int) -> tuple[int, int]:
    """(shards, tokens), every shard checked before training: the loader opens one only minutes into the run."""
    paths = shard_paths(pattern)
    return len(paths), sum(shard_tokens(path, vocab_size).size for path in paths)

def train_pattern(hp: Hyperparameters) -> str:
    return os.path.join(hp.data_path, "fineweb_train_*.bin")

def first_bos(tokens: np.ndarray, path: Path) -> int:
    """Where a shard's first document starts, read a megatoken at a time (a memmap: the rest stays on disk)."""
    for lo in range(0, tokens.size, 1 << 20):
        hits = np.flatnonzero(tokens[lo : lo + (1 << 20)] == BOS_ID)
        if hits.size:
            return lo + int(hits[0])
    raise DataError(f"{path}: no BOS token ({BOS_ID})")

CU_SEQLENS_BUCKET = 64  # #1855: attention boundaries padded to a multiple of 64 entries, a few shapes to compile

def segment_starts(bos: np.ndarray, length: int, span: int) -> np.ndarray:
    """#1530/#1855's segments of a row of `length` tokens, BOS at `bos`: the row start, each BOS, every `span`."""
    docs = np.union1d([0], bos).astype(np.int64)
    counts = -(-(np.append(docs[1:], length) - docs) // span)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(docs, counts) + within * span

def bucketed_cu_seqlens(starts: np.ndarray, total: int, size: int | None = None) -> np.ndarray:
    """FA3's cu_seqlens (int32): the segment starts, then `total` repeated up to `size` entries (empty segments)."""
    size = size or -(-(starts.size + 1) // CU_SEQLENS_BUCKET) * CU_SEQLENS_BUCKET
    cu = np.full(size, total, dtype=np.int32)
    cu[: starts.size] = starts
    return cu

def rows_cu_seqlens(rows: np.ndarray, span: int, doc_isolation: bool) -> np.ndarray:
    """cu_seqlens of a [B, T] batch of token rows; DOC_ISOLATION=0 cuts only every `span` from a row's start."""
    b, t = rows.shape
    bos = [np.flatnonzero(r == BOS_ID) if doc_isolation else () for r in rows]
    return bucketed_cu_seqlens(np.concatenate([segment_starts(p, t, span) + i * t for i, p in enumerate(bos)]), b * t)

def cu_seqlens_input(cu: Tensor) -> Tensor:
    """int32 boundaries whose count a compiled graph keeps symbolic where it can (else one graph per bucket)."""
    cu = cu.int()
    if "torch._dynamo" in sys.modules:  # a run that compiles has imported it (torch_compile) before any batch
        torch._dynamo.maybe_mark_dynamic(cu, 0)
    return cu

def copy_to_device(t: Tensor, rt: Runtime) -> Tensor:
    """To the device without waiting for the GPU: non_blocking from pinned memory (pageable waits for the stream)."""
    if rt.device.type == "cuda" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(rt.device, non_blocking=True)

def to_device(arrays: dict[str, np.ndarray], rt: Runtime) -> dict[str, Tensor]:
    """Host arrays on the device as int64 views of one int32 copy (copy_to_device), in the arrays' shapes."""
    flat = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.int32).ravel() for a in arrays.values()]))
    parts = copy_to_device(flat, rt).long().split([np.size(a) for a in arrays.values()])
    return {name: part.view(np.shape(a)) for (name, a), part in zip(arrays.items(), parts)}

@dataclass(frozen=True)
class Batch:
    """A training micro-batch on the device: inputs and targets [1, T] and their segments' cu_seqlens."""

    x: Tensor
    y: Tensor
    cu_seqlens: Tensor

class TrainLoader:
    """#1530/#1855's document-packing loader: each batch is the next (local + 1) x world_size tokens of the shard
    (a span that does not fit skips to the next shard's first BOS), rank r taking slice r; a thread cuts ahead."""

    def __init__(self, pattern: str, rt: Runtime, global_tokens: int, doc_isolation: bool = True):
        self.paths, self.rt, self.doc_isolation = shard_paths(pattern), rt, doc_isolation
        self.span = global_tokens // (rt.world_size * rt.grad_accum_steps) + 1  # +1: targets are inputs shifted
        self.cursor = (0, first_bos(shard_array(self.paths[0]), self.paths[0]))
        self.producer: tuple | None = None  # (thread, queue, stop event) once batches are asked for
        self.stats = dict(opened=0, open_s=0.0, waits=0, wait_s=0.0, max_wait_s=0.0)

    def next_batch(self, span: int) -> Batch:
        """The next micro-batch, its segments cut every `span` tokens of a document (the stage's span)."""
        if self.producer is None:
            buffer, stop = queue.Queue(maxsize=2), threading.Event()  # two batches cut ahead
            job = (self.paths, self.span, self.rt.rank, self.rt.world_size, self.rt.device.type == "cuda", self.stats)
            thread = threading.Thread(target=produce_batches, args=(job, self.cursor, buffer, stop), daemon=True)
            thread.start()
            weakref.finalize(self, stop.set)  # a loader dropped without close() stops its thread too
            self.producer = thread, buffer, stop
        stats, start = self.stats, time.perf_counter()
        item = self.producer[1].get()
        waited = time.perf_counter() - start
        stats.update(waits=stats["waits"] + 1, wait_s=stats["wait_s"] + waited,
                     max_wait_s=max(stats["max_wait_s"], waited))
        if isinstance(item, Exception):
            raise item
        row, bos, self.cursor = item
        t = row.numel() - 1
        starts = segment_starts(bos if self.doc_isolation else (), t, span)
        cu = copy_to_device(torch.from_numpy(bucketed_cu_seqlens(starts, t)), self.rt)
        row = copy_to_device(row, self.rt).long()  # pinned by the thread already
        return Batch(row[:-1][None], row[1:][None], cu_seqlens_input(cu))

    def close(self) -> None:
        """Stops the thread (a batch it holds is dropped; the cursor stays at the last batch taken)."""
        if self.producer is not None:
            thread, _, stop = self.producer
            stop.set()
            thread.join()
            self.producer = None

    def state_dict(self) -> dict:
        return dict(shards=[p.name for p in self.paths], file_index=self.cursor[0], pos=self.cursor[1])

    def load_state_dict(self, state: dict) -> None:
        """Back to a saved position, on the saved shard list (RESUME_FROM checks it at startup)."""
        self.close()
        self.cursor = (state["file_index"], state["pos"])

def produce_batches(job: tuple, cursor: tuple[int, int], buffer: queue.Queue, stop: threading.Event) -> None:
    """TrainLoader's thread: each batch's row of this rank, its BOS positions and the cursor after it (or an error)."""
    (paths, span, rank, world, pin, stats), (file_index, pos), tokens = job, cursor, None
    try:
        while not stop.is_set():
            for _ in range(len(paths) + 1):
                if tokens is None:
                    start, tokens = time.perf_counter(), shard_array(paths[file_index])
                    pos = first_bos(tokens, paths[file_index]) if pos is None else pos
                    stats["opened"] += 1  # the first shard too: N opened, N - 1 switches
                    stats["open_s"] += time.perf_counter() - start
                if pos + span * world <= tokens.size:
                    break
                file_index, tokens, pos = (file_index + 1) % len(paths), None, None
            else:
                raise DataError(f"no train shard holds one micro-batch of {span * world} tokens: lower "
                                "TRAIN_BATCH_TOKENS")
            row = torch.empty(span, dtype=torch.int32, pin_memory=pin)
            row.numpy()[:] = tokens[pos + rank * span : pos + (rank + 1) * span]
            pos += span * world
            offer(buffer, (row, np.flatnonzero(row.numpy()[:-1] == BOS_ID), (file_index, pos)), stop)
    except Exception as e:  # noqa: BLE001 - raised on the main thread by next_batch
        offer(buffer, e, stop)

def offer(buffer: queue.Queue, item, stop: threading.Event) -> None:
    """Put into a bounded queue unless asked to stop meanwhile."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            return buffer.put(item, timeout=0.05)

def load_val_tokens(pattern: str, seq_len: int, vocab_size: int) -> Tensor:
    """The whole val stream: every token after the first is a target, the tail too (#2014; #1855 cut 1,823)."""
    paths = shard_paths(pattern, skip_sidecars=True)
    tokens = torch.cat([torch.from_numpy(shard_tokens(p, vocab_size).astype(np.int32)) for p in paths])
    if tokens.numel() <= seq_len:
        raise DataError(f"validation split {pattern} has {tokens.numel()} tokens, fewer than one sequence")
    return tokens

# -------- METRIC (exact BPB) -------------------------------------------------------------------
# Tokenizer-agnostic score: bits of the model's NLL per UTF-8 byte of the text. Bytes per target
# token come from SentencePiece LUTs (control/unknown/unused = 0 bytes and a boundary; byte-fallback
# = 1; a piece's leading "▁" adds one space byte only after a non-boundary token), or from a per-token
# sidecar for transformed tokenizers. Sums are float64 and all-reduced. Nothing else counts bytes.

@dataclass(frozen=True)
class ByteLUTs:
    base_bytes: Tensor  # int16 [vocab]: UTF-8 length of the piece without its leading "▁"
    has_leading_space: Tensor  # bool [vocab]
    is_boundary: Tensor  # bool [vocab]: control/unknown/unused ids (BOS), and ids past the tokenizer

def build_byte_luts(sp: spm.SentencePieceProcessor, vocab_size: int) -> ByteLUTs:
    base = np.zeros(vocab_size, dtype=np.int16)
    space = np.zeros(vocab_size, dtype=np.bool_)
    boundary = np.ones(vocab_size, dtype=np.bool_)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i], piece = False, sp.id_to_piece(i)
        if sp.is_byte(i):
            base[i] = 1  # "<0xE2>" stands for one raw byte, whatever its printed name
            continue
        space[i] = piece.startswith("\u2581")
        base[i] = len(piece.removeprefix("\u2581").encode("utf-8"))
    return ByteLUTs(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))

def load_tokenizer(path: str, vocab_size: int) -> spm.SentencePieceProcessor:
    if not Path(path).is_file():
        raise DataError(f"tokenizer {path} not found: {GET_DATA_HINT}")
    try:
        sp = spm.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError):  # an empty or garbage file: sentencepiece's own message is a C++ trace
        raise DataError(f"tokenizer {path} is not a SentencePiece model") from None
    if sp.vocab_size() != vocab_size:
        raise DataError(f"tokenizer {path} has {sp.vocab_size()} pieces but VOCAB_SIZE={vocab_size}")
    if sp.bos_id() != BOS_ID:
        raise DataError(f"tokenizer {path} has BOS id {sp.bos_id()}, not {BOS_ID}")
    if sp.piece_to_id("\u2581") == sp.unk_id():
        raise DataError(f"tokenizer {path} has no '\u2581' piece: a space would count 3 bytes (#897)")
    return sp

def build_info(data_path: str) -> dict:
    """DATA_PATH/build_info.json (data/build_shards.py, data/sample_val.py), {} without one."""
    info = Path(data_path) / "build_info.json"
    try:
        return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    except (OSError, ValueError) as e:
        raise DataError(f"{info} is unreadable ({type(e).__name__}): remove it or rebuild the shards") from None

def check_shards_tokenizer(info: dict, data_path: str, tokenizer_path: str) -> None:
    """Another tokenizer of the same size would count other bytes per token: a wrong val_bpb, silently."""
    built = info.get("tokenizer_sha256")
    if built and built != hashlib.sha256(Path(tokenizer_path).read_bytes()).hexdigest():
        raise DataError(f"tokenizer {tokenizer_path} is not the one the shards were built with ({data_path}/"
                        "build_info.json): set TOKENIZER_PATH to that one")

def token_bytes_from_luts(tokens: Tensor, luts: ByteLUTs) -> Tensor:
    """Bytes each token adds to the text when it is the target; position 0 follows nothing (a boundary)."""
    tokens = tokens.long()
    prev_is_boundary = torch.cat([torch.ones(1, dtype=torch.bool), luts.is_boundary[tokens[:-1]]])
    return luts.base_bytes[tokens] + (luts.has_leading_space[tokens] & ~prev_is_boundary).to(torch.int16)

def load_token_bytes_sidecar(pattern: str, num_tokens: int) -> Tensor:
    """Per-token original-byte counts written next to transformed val shards (same shard format)."""
    counts = torch.cat([read_shard(p) for p in shard_paths(pattern)])
    if counts.numel() < num_tokens:
        raise DataError(f"byte sidecar {pattern} has {counts.numel()} entries for {num_tokens} val tokens")
    return counts[:num_tokens].to(torch.int16)

@dataclass(frozen=True)
class ValidationData:
    tokens: Tensor  # int32 [N+1]: the val stream; tokens 1..N are the targets
    token_bytes: Tensor  # int16 [N+1]: bytes token i adds when it is a target
    partial: bool = False  # a sample (data/sample_val.py): no number from it is the score

def val_documents(tokens: Tensor) -> list[tuple[int, int]]:
    """(start, end) per document (#1855): a BOS up to the next, which it predicts; tokens before any BOS: one more."""
    n = tokens.numel() - 1
    starts = sorted({0, *(tokens[:n] == BOS_ID).nonzero().flatten().tolist()})
    return list(zip(starts, starts[1:] + [n]))

class BpbMeter:
    """Accumulates NLL (nats), scored tokens and bytes in float64 on the device; every eval path feeds one."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, bytes

    def add(self, token_nll: Tensor, target_bytes: Tensor, mask: Tensor | None = None) -> None:
        """mask: 1 where a slot holds a scored target (padded batches); None: every entry is one."""
        nll, nbytes = token_nll.double(), target_bytes.double()
        if mask is None:
            self.sums += torch.stack([nll.sum(), nll.new_full((), float(nll.numel())), nbytes.sum()])  # a fill, no copy
        else:
            mask = mask.double()
            self.sums += torch.stack([(nll * mask).sum(), mask.sum(), (nbytes * mask).sum()])

    def totals(self, rt: Runtime) -> list[float]:
        return all_reduce_(self.sums.clone(), rt).tolist()

    def result(self, rt: Runtime) -> tuple[float, float]:
        return loss_and_bpb(*self.totals(rt))

def loss_and_bpb(nll: float, tokens: float, nbytes: float) -> tuple[float, float]:
    """val_loss (nats per target) and val_bpb (bits per UTF-8 byte) from the summed totals."""
    return nll / tokens, nll / tokens / math.log(2.0) * tokens / nbytes

# -------- MODEL --------------------------------------------------------------------------------
# One GPT covers the baseline and the leaderboard stack: RMS-normed residual blocks (GQA attention with partial
# RoPE, q/k norm and gain, optional XSA and output gates; a leaky-relu^2 MLP) mixed with the first embedding x0.
# A LayerPlan per schedule stage says which block runs at each application (recurrence), which push and pop
# U-Net skips, use XSA or run in two lanes. One forward serves training, eval and test-time adapters.

def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))

class CastedLinear(nn.Linear):  # fp32 master weight, computed in the activation dtype (bf16 under autocast)
    def __init__(self, in_features: int, out_features: int, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=False)
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))

def rotary_tables(positions: Tensor, rope_dims: int, base: float, bf16_freqs: bool = False) -> tuple[Tensor, Tensor]:
    """cos/sin [B, 1, T, rope_dims/2] at each token's position inside its segment: the records' scores (they use
    row positions; only offsets matter) with small angles at any row length, the same whatever the packing."""
    inv_freq = 1.0 / base ** (torch.arange(0, rope_dims, 2, dtype=torch.float32, device=positions.device) / rope_dims)
    if bf16_freqs:  # #1855 casts the model to bf16, buffers too, and restores only parameters to fp32 (up to 0.4%)
        inv_freq = inv_freq.bfloat16().float()
    freqs = positions[:, None, :, None].float() * inv_freq
    return freqs.cos(), freqs.sin()

def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Half-split RoPE on the first 2*cos.size(-1) dims, pairs (j, j + half); the rest is position-free
    (partial RoPE, #1626 lineage)."""
    half = cos.size(-1)
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest), dim=-1)

def xsa_remove_self_value(y: Tensor, v: Tensor) -> Tensor:
    """Exclusive self-attention (XSA; #895, all layers since the 2026-03-25 record): drop from each head's
    output its component along the token's own value vector, GQA-aware. y [B, H, T, D], v [B, KV, T, D]."""
    b, h, t, d = y.shape
    y = y.view(b, v.size(1), h // v.size(1), t, d)
    v_hat = F.normalize(v, dim=-1).unsqueeze(2)
    return (y - (y * v_hat).sum(-1, keepdim=True) * v_hat).view(b, h, t, d)

def smear_previous_token(e: Tensor, ids: Tensor, gate_w: Tensor, lam: Tensor) -> Tensor:
    """SmearGate (#1667): e_t += lam * sigmoid(w . e_t[:window]) * e_{t-1}, except at BOS, so the last
    token of one document never leaks into the next (the BOS fix of #1851/#1855)."""
    prev = F.pad(e[:, :-1], (0, 0, 1, 0))
    gate = torch.sigmoid(e[..., : gate_w.numel()] @ gate_w.to(e.dtype)) * (ids != BOS_ID)
    return e + lam.to(e.dtype) * gate.unsqueeze(-1) * prev

def skip_merge(x: Tensor, skip: Tensor, weight: Tensor, gate: Tensor | None) -> Tensor:
    """U-Net skip: baseline x + w*skip; with skip gates a lerp (1 - s)*(w*skip) + s*x, s = sigmoid(g)."""
    skip = weight.to(x.dtype) * skip
    return x + skip if gate is None else torch.lerp(skip, x, torch.sigmoid(gate).to(x.dtype))

def attention_backend(hp: Hyperparameters, device: torch.device) -> str:
    """auto: FA3 varlen on CUDA when importable (the records' kernel), else FlexAttention on CUDA (block-
    sparse; SDPA's mask path does not scale to 98k-token rows there), else SDPA, the portable reference."""
    fa3_ok = flash_attn_varlen_func is not None and device.type == "cuda"
    if hp.attn_backend == "fa3" and not fa3_ok:
        raise HyperparameterError("ATTN_BACKEND=fa3 needs CUDA and FlashAttention-3 (import flash_attn_interface)")
    if hp.attn_backend == "auto":
        return "fa3" if fa3_ok else "flex" if device.type == "cuda" and hp.compile != "0" else "sdpa"
    return hp.attn_backend

@dataclass(frozen=True)
class AttentionContext:  # what every attention call of one forward shares; the last three: one per backend
    rope: tuple[Tensor, Tensor]
    span: int  # the longest segment (FA3's max_seqlen)
    segment_ids: Tensor | None = None  # SDPA's banded mask
    block_mask: object = None  # FlexAttention
    cu_seqlens: Tensor | None = None  # FA3 varlen

def attention_context(ids: Tensor, hp: Hyperparameters, span: int | None = None,
                      cu_seqlens: Tensor | None = None) -> AttentionContext:
    """cu_seqlens: the batch's segments as the host cut them (rows_cu_seqlens, the loader); without them the
    host cuts `ids` here, which on CUDA waits for the GPU: every timed loop passes them."""
    span = span or hp.train_seq_len  # a TRAIN_SEQ_SCHEDULE stage passes its own
    b, t = ids.shape
    if cu_seqlens is None:
        cu_seqlens = torch.from_numpy(rows_cu_seqlens(ids.cpu().numpy(), span, hp.doc_isolation)).to(ids.device)
    flat = torch.arange(b * t, dtype=torch.int32, device=ids.device)
    segment = torch.searchsorted(cu_seqlens, flat, right=True) - 1  # padding entries (= b * t) are never <= a token
    in_segment = (flat - cu_seqlens[segment]).view(b, t)
    rope = rotary_tables(in_segment, hp.rope_dims or hp.model_dim // hp.num_heads, hp.rope_base, hp.rope_bf16_freqs)
    span = min(span, t)
    backend = attention_backend(hp, ids.device)
    if backend == "fa3":
        return AttentionContext(rope, span, cu_seqlens=cu_seqlens)
    segment_ids = segment.view(b, t)
    if backend == "sdpa":
        return AttentionContext(rope, span, segment_ids=segment_ids)

    def same_segment_causal(b, h, q_idx, kv_idx):  # FlexAttention's mask_mod
        return (q_idx >= kv_idx) & (segment_ids[b, q_idx] == segment_ids[b, kv_idx])

    return AttentionContext(rope, span, block_mask=create_block_mask(same_segment_causal, b, None, t, t, ids.device))

def banded_sdpa(q: Tensor, k: Tensor, v: Tensor, segment_ids: Tensor, span: int) -> Tensor:
    """Same-segment causal SDPA in memory linear in T: a segment is at most `span` long, so a chunk of span/4
    queries needs only the `span` keys before it and its own; one batched call (~1.25x the scores of fixed rows)."""
    b, h, t, d = q.shape
    gqa = h != k.size(1)
    if t <= span:  # one chunk: the plain masked call
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        mask = (segment_ids[:, :, None] == segment_ids[:, None, :]) & causal
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=gqa)
    chunk = max(1, span // 4)
    c, pad = -(-t // chunk), -t % chunk
    width = span + chunk  # keys of a chunk's window: the span before it, then the chunk itself
    seg = F.pad(segment_ids, (0, pad), value=-2)  # padded queries see padded keys; the span in front (-1) is unseen
    seg_q, seg_k = seg.view(b, c, chunk), F.pad(seg, (span, 0), value=-1).unfold(1, width, chunk)
    causal = torch.ones(chunk, width, dtype=torch.bool, device=q.device).tril(span)
    mask = (seg_q[..., :, None] == seg_k[..., None, :]) & causal  # [B, c, chunk, width]

    def key_windows(x: Tensor) -> Tensor:  # [B, KV, T, D] -> [B * c, KV, width, D]
        x = F.pad(x, (0, 0, span, pad)).unfold(2, width, chunk)  # [B, KV, c, D, width]
        return x.permute(0, 2, 1, 4, 3).reshape(b * c, x.size(1), width, d)

    qc = F.pad(q, (0, 0, 0, pad)).view(b, h, c, chunk, d).transpose(1, 2).reshape(b * c, h, chunk, d)
    y = F.scaled_dot_product_attention(qc, key_windows(k), key_windows(v), attn_mask=mask.view(b * c, 1, chunk, width),
                                       enable_gqa=gqa)
    return y.view(b, c, h, chunk, d).transpose(1, 2).reshape(b, h, c * chunk, d)[:, :, :t]

def attend(q: Tensor, k: Tensor, v: Tensor, ctx: AttentionContext) -> Tensor:
    """Causal GQA attention inside the context's segments. SDPA (banded) is the portable reference;
    FlexAttention skips fully masked tiles (fast once compiled on GPU); FA3 varlen is the records' path."""
    if ctx.cu_seqlens is not None:
        b, h, t, d = q.shape
        flat = lambda x: x.transpose(1, 2).reshape(b * t, x.size(1), d).to(torch.bfloat16)
        y = flash_attn_varlen_func(flat(q), flat(k), flat(v), ctx.cu_seqlens, ctx.cu_seqlens, ctx.span, ctx.span,
                                   causal=True)
        y = y[0] if isinstance(y, tuple) else y  # some FA3 builds also return the softmax LSE
        return y.reshape(b, t, h, d).transpose(1, 2).to(q.dtype)
    if ctx.block_mask is not None:
        return flex_attention(q, k, v, block_mask=ctx.block_mask, enable_gqa=q.size(1) != k.size(1))
    return banded_sdpa(q, k, v, ctx.segment_ids, ctx.span)

class CausalSelfAttention(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        dim, self.num_heads, self.num_kv_heads = hp.model_dim, hp.num_heads, hp.num_kv_heads
        self.head_dim = dim // hp.num_heads
        heads = (hp.num_heads, hp.num_kv_heads, hp.num_kv_heads)
        self.c_q, self.c_k, self.c_v = (CastedLinear(dim, n * self.head_dim) for n in heads)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((hp.num_heads,), hp.qk_gain_init, dtype=torch.float32))
        # per-head output gate: sparse (#1787), out (#1667) or dense (#1736, reading all of x)
        self.gate_kind = ("sparse" if hp.sparse_attn_gate_enabled else "out" if hp.attn_out_gate_enabled
                          else "dense" if hp.gated_attn_enabled else None)
        self.gate_scale, self.gate_src = hp.sparse_attn_gate_scale, hp.attn_out_gate_src
        if self.gate_kind is not None:
            width = dim if self.gate_kind == "dense" else hp.gate_window
            std = {"sparse": hp.sparse_attn_gate_init_std, "dense": hp.gated_attn_init_std, "out": 0.0}[self.gate_kind]
            self.attn_gate_w = nn.Parameter(torch.randn(hp.num_heads, width) * std)

    def forward(self, x: Tensor, ctx: AttentionContext, xsa: bool, lora=None) -> Tensor:
        bsz, seqlen, dim = x.shape
        q_raw = with_lora(self.c_q(x), lora, "q", x)
        heads = lambda t: t.reshape(bsz, seqlen, -1, self.head_dim).transpose(1, 2)
        k, v = heads(with_lora(self.c_k(x), lora, "k", x)), heads(with_lora(self.c_v(x), lora, "v", x))
        q, k = apply_rotary(rms_norm(heads(q_raw)), *ctx.rope), apply_rotary(rms_norm(k), *ctx.rope)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = attend(q, k.to(q.dtype), v.to(q.dtype), ctx)  # [B, H, T, D]
        if xsa:
            y = xsa_remove_self_value(y, v.to(y.dtype))
        if self.gate_kind is not None:
            src = q_raw if self.gate_src == "q" and self.gate_kind == "out" else x
            w = self.attn_gate_w.to(x.dtype)
            logits = F.linear(src[..., : w.size(1)], w)  # [B, T, H]
            gate = torch.sigmoid(self.gate_scale * logits) if self.gate_kind == "sparse" else torch.sigmoid(logits)
            gate = 2 * gate if self.gate_kind == "out" else gate
            y = y * gate.transpose(1, 2).unsqueeze(-1).to(y.dtype)
        return with_lora(self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim)), lora, "o", x)

def with_lora(y: Tensor, lora, target: str, x: Tensor) -> Tensor:
    """y plus a test-time adapter's delta of x where one is attached to this target (BatchedLoRA)."""
    delta = None if lora is None else lora(target, x)
    return y if delta is None else y + delta.to(y.dtype)

class MLP(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        hidden = int(hp.mlp_mult * hp.model_dim)
        self.fc = CastedLinear(hp.model_dim, hidden)
        self.proj = CastedLinear(hidden, hp.model_dim, zero_init=True)
        self.negative_slope = hp.mlp_negative_slope  # 0.5: LeakyReLU(0.5)^2 of #493; 0: relu^2

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.fc(x), self.negative_slope).square())

class Block(nn.Module):
    def __init__(self, hp: Hyperparameters, layer_idx: int):
        super().__init__()
        dim = hp.model_dim
        self.attn, self.mlp = CausalSelfAttention(hp), MLP(hp)
        self.attn_scale, self.mlp_scale = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))  # (stream, x0) weights
        self.ln_scale = 1.0 / math.sqrt(layer_idx + 1) if hp.ln_scale else 1.0

    def forward(self, x: Tensor, x0: Tensor, ctx: AttentionContext, xsa: bool, lane_m: Tensor | None,
                lambdas: tuple[Tensor, Tensor] | None, lora):
        """Returns (x, lane_m). With lane_m, #1626/#1855's two lanes: attention reads mixed lane A (carried unmixed),
        the MLP lane M, and both lanes mix both outputs. lora: this application's TTT adapters."""
        mix = self.resid_mix.to(x.dtype)
        x_in = mix[0] * x + mix[1] * x0
        attn_out = self.attn_scale.to(x.dtype) * self.attn(rms_norm(x_in) * self.ln_scale, ctx, xsa, lora)
        mlp = lambda h: with_lora(self.mlp(h), lora, "mlp", h)
        if lane_m is None:
            x = x_in + attn_out
            return x + self.mlp_scale.to(x.dtype) * mlp(rms_norm(x) * self.ln_scale), None
        mlp_out = self.mlp_scale.to(x.dtype) * mlp(rms_norm(lane_m) * self.ln_scale)
        resid, post = (t.to(x.dtype) for t in lambdas)  # [2], [2 (attn, mlp), 2 (lane A, lane M)]
        lane_a = resid[0] * x + post[0, 0] * attn_out + post[1, 0] * mlp_out
        return lane_a, resid[1] * lane_m + post[0, 1] * attn_out + post[1, 1] * mlp_out

@dataclass(frozen=True)
class LayerPlan:  # one schedule stage's route through the blocks; computed once, never mutated
    order: tuple[int, ...]  # physical block of each application
    repeat: tuple[int, ...]  # pass over the shared blocks (#895 recurrence), else 0
    num_encoder: int  # the first applications push U-Net skips, later ones pop them (0: no skips)
    xsa: tuple[bool, ...]
    parallel: tuple[bool, ...]  # two-lane mode from the first decoder application >= PARALLEL_START_LAYER

def make_plan(order: list[int], hp: Hyperparameters) -> LayerPlan:
    """The U-Net route (#895's recurrence has its own, train_gpt_reference.recurrent_plans)."""
    n, start = len(order), hp.parallel_start_layer  # start <= 0: no lanes, as in the records' code
    first_parallel = next((i for i in range(n // 2, n) if 0 < start <= order[i]), n)
    xsa = [b >= hp.num_layers - hp.xsa_last_n for b in order]  # #1855: every application of the last N blocks
    return LayerPlan(tuple(order), (0,) * n, n // 2, tuple(xsa), tuple(i >= first_parallel for i in range(n)))

def layer_plans(hp: Hyperparameters) -> tuple[LayerPlan, ...]:
    """Every stage's plan in schedule order (the last: eval and export). Looping (#1626): LOOP_START..LOOP_END run
    1 + NUM_LOOPS times once switched on. Recurrence (#895): all blocks NUM_REPEATS times, a stage per PROG_DEPTH."""
    layers = list(range(hp.num_layers))
    if hp.num_repeats > 1:
        return optional_module("train_gpt_reference", hp).recurrent_plans(hp)
    if hp.num_loops == 0:
        return (make_plan(layers, hp),)
    loop = list(range(hp.loop_start, hp.loop_end + 1))
    looped = layers[: hp.loop_start] + loop * (1 + hp.num_loops) + layers[hp.loop_end + 1 :]
    return make_plan(layers, hp), make_plan(looped, hp)

def plan_index_at(frac: float, hp: Hyperparameters) -> int:
    """Which plan trains at this fraction of training; every rank passes the same all-reduced frac."""
    if hp.num_repeats > 1 and hp.prog_depth:
        return optional_module("train_gpt_reference", hp).depth_plan_index(frac, hp)
    return int(hp.num_loops > 0 and frac >= hp.enable_looping_at)

@dataclass(frozen=True)
class Stage:  # what trains at one point of the schedule; the batch is one flat row whatever the span
    plan: int  # index into GPT.plans
    span: int  # the longest attention segment: a new one changes the masks only, never a tensor shape

def stage_at(frac: float, hp: Hyperparameters) -> Stage:
    """TRAIN_SEQ_SCHEDULE: the len of the first entry whose fraction is above frac; past all: TRAIN_SEQ_LEN."""
    span = next((n for f, n in seq_schedule(hp) if frac < f), hp.train_seq_len)
    return Stage(plan_index_at(frac, hp), span)

def schedule_stages(hp: Hyperparameters) -> list[Stage]:
    """Every stage a run trains under, in order: what the compile warm-up must build before the clock."""
    points = [f for f, _ in knob_list(hp, "prog_depth") + seq_schedule(hp)]
    points += [hp.enable_looping_at] if hp.num_loops > 0 else []
    return list(dict.fromkeys(stage_at(f, hp) for f in sorted([0.0, *points])))

class GPT(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.hp, self.plans = hp, layer_plans(hp)
        dim = hp.model_dim
        self.tok_emb = nn.Embedding(hp.vocab_size, dim)
        self.value_embeds, self.recurrence = nn.ModuleList(), None  # #895's tables (routed with tok_emb) and hook
        if hp.num_repeats > 1 or hp.num_value_embeds:  # before the blocks, as #895 draws its tables: the same init
            self.recurrence = optional_module("train_gpt_reference", hp).add_recurrence(self, hp)
        self.blocks = nn.ModuleList(Block(hp, i) for i in range(hp.num_layers))
        num_skips = max(min(p.num_encoder, len(p.order) - p.num_encoder) for p in self.plans)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, dim)) if num_skips else None
        self.skip_gates = nn.Parameter(torch.zeros(num_skips, dim)) if num_skips and hp.skip_gates_enabled else None
        if any(any(p.parallel) for p in self.plans):
            self.parallel_resid_lambdas = nn.Parameter(torch.full((hp.num_layers, 2), 1.1))
            self.parallel_post_lambdas = nn.Parameter(torch.ones(hp.num_layers, 2, 2))
        if hp.smear_gate_enabled:
            self.smear_gate, self.smear_lambda = nn.Parameter(torch.zeros(hp.gate_window)), nn.Parameter(torch.zeros(1))
        if hp.asym_logit_rescale:  # AsymLogit's caps for positive and negative logits
            self.softcap_pos, self.softcap_neg = (nn.Parameter(torch.tensor(hp.logit_softcap)) for _ in "+-")
        self.lm_head = None if hp.tie_embeddings else CastedLinear(dim, hp.vocab_size, zero_init=True)
        if hp.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, std=hp.tied_embed_init_std)
        if hp.ortho_init:  # #1626 lineage: orthogonal Q, K, V and MLP-up; output projections stay zero
            for block in self.blocks:
                for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.fc):
                    nn.init.orthogonal_(lin.weight)

    def hidden(self, ids: Tensor, plan_index: int = -1, span: int | None = None, lora=None,
               cu_seqlens: Tensor | None = None) -> Tensor:
        plan = self.plans[plan_index]
        x = self.tok_emb(ids)
        if not torch.is_autocast_enabled(x.device.type):
            x = x.float()  # the table is bf16; without autocast the stream stays fp32
        if self.hp.smear_gate_enabled:
            x = smear_previous_token(x, ids, self.smear_gate, self.smear_lambda)
        x = x0 = rms_norm(x)
        ctx = attention_context(ids, self.hp, span, cu_seqlens)
        add_inputs = None if self.recurrence is None else self.recurrence(self, ids, x, plan)
        skips, lane_m = [], None
        for i, b in enumerate(plan.order):
            if add_inputs is not None:  # #895: loop embedding, previous repeat's output, value embeddings
                x = add_inputs(x, i)
            if plan.parallel[i] and lane_m is None:
                lane_m = x  # the stream splits into lane A (x) and lane M before this skip merges (#1855)
            if plan.num_encoder <= i and skips:  # skips merge into lane A only
                j = i - plan.num_encoder
                gate = None if self.skip_gates is None else self.skip_gates[j]
                x = skip_merge(x, skips.pop(), self.skip_weights[j], gate)
            lambdas = (self.parallel_resid_lambdas[b], self.parallel_post_lambdas[b]) if lane_m is not None else None
            slot = None if lora is None else functools.partial(lora, i)  # adapters of application i
            x, lane_m = self.blocks[b](x, x0, ctx, plan.xsa[i], lane_m, lambdas, slot)
            if i < plan.num_encoder:
                skips.append(x)
        if lane_m is not None and self.hp.parallel_final_lane != "attn":
            x = lane_m if self.hp.parallel_final_lane == "mlp" else (x + lane_m) / 2
        return rms_norm(x)

    def logits(self, h: Tensor, lora=None) -> Tensor:
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        head = None if lora is None else functools.partial(lora, -1)  # the head's adapter
        z = with_lora(F.linear(h, weight.to(h.dtype)), head, "head", h).float()
        if self.hp.asym_logit_rescale:  # AsymLogit: monotone in z, so the softmax stays a full distribution
            cap = torch.where(z > 0, self.softcap_pos, self.softcap_neg)
            return cap * torch.tanh(z / cap)
        return self.hp.logit_softcap * torch.tanh(z / self.hp.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor, reduction: str = "mean", plan_index: int = -1,
                span: int | None = None, lora=None, cu_seqlens: Tensor | None = None) -> Tensor:
        """Cross-entropy of the targets; reduction="none" gives per-token NLL for exact eval sums."""
        logits = self.logits(self.hidden(input_ids, plan_index, span, lora, cu_seqlens), lora)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction=reduction)

def build_model(hp: Hyperparameters, device: torch.device) -> GPT:
    """fp32 masters everywhere except the embedding tables, which stay bf16 as in the records."""
    torch.manual_seed(hp.seed)
    model = GPT(hp).to(device)
    model.tok_emb.to(torch.bfloat16)
    return model

# -------- OPTIMIZER ----------------------------------------------------------------------------
# Muon (Keller Jordan, modded-nanogpt) orthogonalizes each block matrix's momentum by Newton-Schulz; the
# leaderboard adds Polar Express, MuonEq-R row normalization and decoupled weight decay. Ranks split the matrices
# round-robin and share updates in one all-reduce (any world size, same step). Other tensors use AdamW.

CLASSIC_NS_COEFFS = (3.4445, -4.7750, 2.0315)  # modded-nanogpt's fixed quintic
# Polar Express (Amsel et al. 2025, via #1344/#1787): per-iteration minimax coefficients. Five steps take condition
# numbers up to ~30 to singular values in [0.85, 1.15]; the classic tuple leaves [0.65, 1.2] (tests/test_optimizer.py).
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

def newton_schulz(grad: Tensor, steps: int, polar_express: bool = False, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximate U V^T of grad = U S V^T (bf16 on GPU). Polar Express runs at most its 5 tuples."""
    coeffs = POLAR_EXPRESS_COEFFS[:steps] if polar_express else (CLASSIC_NS_COEFFS,) * steps
    x = grad.to(dtype)
    x = x / (x.norm() + 1e-7)
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T
    for a, b, c in coeffs:
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T

class Muon(torch.optim.Optimizer):
    def __init__(self, params, hp: Hyperparameters, rt: Runtime):
        super().__init__(params, dict(lr=hp.matrix_lr, base_lr=hp.matrix_lr, momentum=hp.muon_momentum,
                                      weight_decay=hp.muon_wd))
        self.hp, self.rt = hp, rt
        self.dtype = torch.bfloat16 if rt.autocast else torch.float32  # CPUs without bf16 units: fp32 is faster
        # compiled as the model is (as #1855): ~800 small kernels a step become a few per shape, built in the warm-up
        self.orthogonalize = torch_compile(newton_schulz, dynamic=False) if compiles(hp, rt) else newton_schulz

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = group["params"]
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=self.dtype)
            updates = flat.split([p.numel() for p in params])  # views: the all-reduce fills them in place
            for i, (p, update) in enumerate(zip(params, updates)):
                if i % self.rt.world_size == self.rt.rank and p.grad is not None:
                    update.copy_(self.orthogonal_update(p, group["momentum"]).reshape(-1))
            all_reduce_(flat, self.rt)  # each matrix was computed by exactly one rank
            for p, update in zip(params, updates):
                p.mul_(1 - group["lr"] * group["weight_decay"])  # decoupled: every rank decays every matrix
                p.add_(update.view_as(p).to(p.dtype), alpha=-group["lr"])

    def orthogonal_update(self, p: Tensor, momentum: float) -> Tensor:
        buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
        buf.mul_(momentum).add_(p.grad)
        g = p.grad.add(buf, alpha=momentum)  # Nesterov
        if self.hp.muon_row_normalize:  # MuonEq-R
            g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-7)
        g = self.orthogonalize(g, self.hp.muon_backend_steps, self.hp.muon_polar_express, self.dtype)
        return g * max(1.0, g.size(0) / g.size(1)) ** 0.5

def build_optimizers(model: GPT, hp: Hyperparameters, rt: Runtime) -> list[torch.optim.Optimizer]:
    """Routing by explicit membership: block matrices -> Muon; embeddings, head, control tensors -> AdamW groups."""
    matrices = [m.weight for block in model.blocks for m in block.modules() if isinstance(m, CastedLinear)]
    embeddings = [model.tok_emb.weight, *model.value_embeds.parameters()]
    head = [] if model.lm_head is None else [model.lm_head.weight]
    routed = {id(p) for p in matrices + embeddings + head}
    controls = [p for p in model.parameters() if id(p) not in routed]
    table = [  # (params, lr, weight decay)
        (embeddings, hp.tied_embed_lr if hp.tie_embeddings else hp.embed_lr, hp.embed_wd),
        (head, hp.head_lr, 0.0),
        (controls, hp.scalar_lr, hp.adam_wd),
    ]
    adam = dict(betas=(hp.beta1, hp.beta2), eps=hp.adam_eps, fused=True)  # fused: no host read of the step count
    optimizers = [torch.optim.AdamW([{"params": ps, "lr": lr, "base_lr": lr}], weight_decay=wd, **adam)
                  for ps, lr, wd in table if ps]
    return optimizers + [Muon(matrices, hp, rt)]

def muon_momentum_at(step: int, hp: Hyperparameters) -> float:
    frac = min(step / hp.muon_momentum_warmup_steps, 1.0) if hp.muon_momentum_warmup_steps > 0 else 1.0
    return (1 - frac) * hp.muon_momentum_warmup_start + frac * hp.muon_momentum

def training_cap_ms(hp: Hyperparameters) -> float:
    """The training clock's cap: MAX_WALLCLOCK_SECONDS minus the post-training calibration reserve."""
    return 1000 * (hp.max_wallclock_seconds - hp.gptq_reserve_seconds) if hp.max_wallclock_seconds > 0 else math.inf

def training_frac(step: int, elapsed_ms: float, hp: Hyperparameters) -> float:
    """Schedule progress: the clock over the cap or over SCHEDULE_HORIZON_SECONDS, else steps over ITERATIONS."""
    if hp.schedule_horizon_seconds > 0:
        return elapsed_ms / (1000 * (hp.schedule_horizon_seconds - hp.gptq_reserve_seconds))
    cap_ms = training_cap_ms(hp)
    return elapsed_ms / cap_ms if cap_ms < math.inf else step / max(hp.iterations, 1)

def lr_scale_at(step: int, elapsed_ms: float, hp: Hyperparameters) -> float:
    """Linear warm-down over the last WARMDOWN_FRAC to MIN_LR (#1560/#1787), else over WARMDOWN_ITERS (baseline)."""
    if hp.warmdown_frac > 0:
        return min(1.0, max((1 - training_frac(step, elapsed_ms, hp)) / hp.warmdown_frac, hp.min_lr))
    if hp.warmdown_iters <= 0:
        return 1.0
    cap_ms = training_cap_ms(hp)
    if cap_ms == math.inf:
        return min(1.0, max((hp.iterations - step) / hp.warmdown_iters, 0.0))
    warmdown_ms = hp.warmdown_iters * elapsed_ms / max(step, 1)
    return min(1.0, max(cap_ms - elapsed_ms, 0.0) / max(warmdown_ms, 1e-9))

# -------- TRAINING -----------------------------------------------------------------------------
# The clock counts optimizer steps only: compile warm-up happens before it starts (and is then undone),
# and validation pauses it. Each step the elapsed time is MAX-reduced, so every rank takes the same
# decisions on the same step: stop at the cap, switch the layer plan (looping, progressive depth).
# Weight averages (EMA, or #895's SWA) are loaded after training.

@dataclass(frozen=True)
class Models:
    """Three views of one set of weights: raw (state dicts), eval (compiled), train (compiled + DDP)."""

    raw: GPT
    eval: nn.Module
    train: nn.Module

def train_step(model: nn.Module, optimizers: list, loader: TrainLoader, hp: Hyperparameters, rt: Runtime,
               step: int, lr_scale: float, stage: Stage) -> Tensor:
    """One optimizer step over grad_accum_steps micro-batches; returns the mean train loss (on the device)."""
    total, per_rank = torch.zeros((), device=rt.device), hp.grad_clip_per_rank and rt.distributed
    for micro in range(rt.grad_accum_steps):
        if isinstance(model, DDP):  # all-reduce gradients on the last micro-batch only (after clipping: per rank)
            model.require_backward_grad_sync = micro == rt.grad_accum_steps - 1 and not per_rank
        batch = loader.next_batch(stage.span)
        with autocast_context(rt):
            loss = model(batch.x, batch.y, plan_index=stage.plan, span=stage.span, cu_seqlens=batch.cu_seqlens)
        total += loss.detach()
        (loss / rt.grad_accum_steps).backward()
    if hp.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip_norm)
    if per_rank:
        average_gradients(list(model.parameters()), rt)
    for opt in optimizers:  # disjoint parameters: each steps and clears its own
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
            if isinstance(opt, Muon):
                group["momentum"] = muon_momentum_at(step, hp)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return total / rt.grad_accum_steps

def warmup_buckets(rows: int, tokens: int, span: int) -> list[int]:
    """The 4 cu_seqlens sizes compiled before the clock, from the fewest segments rows can have (#1855: 64..256)."""
    fewest, most = rows * -(-tokens // span) + 1, rows * tokens + 1
    first = -(-fewest // CU_SEQLENS_BUCKET) * CU_SEQLENS_BUCKET
    return [size for size in range(first, first + 4 * CU_SEQLENS_BUCKET, CU_SEQLENS_BUCKET)
            if size - CU_SEQLENS_BUCKET < most]

def bucket_stand_in(rows: int, tokens: int, span: int, size: int, device: torch.device) -> Tensor:
    """A cu_seqlens of `size` entries for warm-up: every row cut every span, padded with empty segments."""
    starts = np.concatenate([np.arange(0, tokens, span) + r * tokens for r in range(rows)])
    return cu_seqlens_input(torch.from_numpy(bucketed_cu_seqlens(starts, rows * tokens, size)).to(device))

def compile_warmup_and_restore(models: Models, optimizers, hp, rt, log) -> None:
    """Every graph built before the clock, then the initial state restored (baseline rule: no cheating)."""
    if hp.warmup_steps == 0:
        return
    opt_states = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
    with weights_kept(models.raw):
        warm_up_training(models, optimizers, hp, rt, log)
        warm_up_eval(models, hp, rt)
    for opt, state in zip(optimizers, opt_states):
        # #1855's sharded Muon keeps its momentum outside the optimizer state, so its restore leaves the warm-up's
        kept = {p: s["momentum_buffer"] for p, s in opt.state.items()
                if hp.muon_keep_warmup_momentum and isinstance(opt, Muon) and "momentum_buffer" in s}
        opt.load_state_dict(state)
        for p, buf in kept.items():
            opt.state[p]["momentum_buffer"] = buf
        opt.zero_grad(set_to_none=True)

@contextlib.contextmanager
def weights_kept(model: nn.Module):
    """The model's weights as they are now come back when the block ends (the warm-up, a periodic export)."""
    kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        yield
    finally:
        model.load_state_dict(kept, strict=True)

def train_loader(hp: Hyperparameters, rt: Runtime) -> contextlib.closing:
    """A TrainLoader of the train shards, closed when the block ends (its thread stops)."""
    return contextlib.closing(TrainLoader(train_pattern(hp), rt, hp.train_batch_tokens, hp.doc_isolation))

def warm_up_training(models: Models, optimizers, hp: Hyperparameters, rt: Runtime, log) -> None:
    """Per stage (layer plan and segment span): a forward and backward per cu_seqlens bucket, WARMUP_STEPS steps."""
    with train_loader(hp, rt) as loader:
        for stage in schedule_stages(hp):
            batch = loader.next_batch(stage.span)
            t = batch.x.size(1)
            buckets = warmup_buckets(1, t, stage.span)
            for size in buckets:
                cu = bucket_stand_in(1, t, stage.span, size, rt.device)
                with autocast_context(rt):
                    loss = models.train(batch.x, batch.y, plan_index=stage.plan, span=stage.span, cu_seqlens=cu)
                loss.backward()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            log(f"warmup_buckets:{','.join(map(str, buckets))} plan:{stage.plan} span:{stage.span}")
            for i in range(hp.warmup_steps):  # step i: #1855's momentum ramp, kept under MUON_KEEP_WARMUP_MOMENTUM
                train_step(models.train, optimizers, loader, hp, rt, step=i, lr_scale=1.0, stage=stage)
                if hp.warmup_steps <= 20 or (i + 1) % 10 == 0 or i + 1 == hp.warmup_steps:
                    log(f"warmup_step:{i + 1}/{hp.warmup_steps} plan:{stage.plan} span:{stage.span}")

def warm_up_eval(models: Models, hp: Hyperparameters, rt: Runtime) -> None:
    """The eval graph on random tokens (never val data), per cu_seqlens bucket."""
    rows, t = eval_batch_seqs(hp, rt), hp.train_seq_len
    x, y = torch.randint(0, hp.vocab_size, (2, rows, t), device=rt.device)
    if hp.eval_rows_by_doc:  # eval_val's one flat row
        x, y = x.reshape(1, -1), y.reshape(1, -1)
    for size in warmup_buckets(rows, t, t):
        with torch.no_grad(), autocast_context(rt):
            models.eval(x, y, reduction="none", cu_seqlens=bucket_stand_in(rows, t, t, size, rt.device))

class WeightAverage:
    """EMA of the weights (fp32 shadow, one fused update a step); #895's SWA (train_gpt_reference.py) alike."""

    def __init__(self, model: nn.Module, hp: Hyperparameters, log):
        self.hp, self.log, self.count = hp, log, 0
        self.sum = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, lr_scale: float, full_depth: bool) -> None:
        torch._foreach_lerp_(list(self.sum.values()), [v.float() for v in model.state_dict().values()],
                             1 - self.hp.ema_decay)  # one fused update over all tensors

    @torch.no_grad()
    def average(self, model: nn.Module) -> dict[str, Tensor]:
        state = model.state_dict()
        self.log("ema:applying EMA weights")
        return {k: v.to(state[k].dtype) for k, v in self.sum.items()}

def log_stage_switch(old: Stage, new: Stage, plans: tuple, step: int, frac: float, hp: Hyperparameters, log) -> None:
    if new.span != old.span:
        log(f"seq_len:switched to {new.span} step:{step} frac:{frac:.3f}")
    if new.plan == old.plan:
        return
    plan = plans[new.plan]
    if hp.num_repeats > 1:
        log(f"prog_depth: switched to {max(plan.repeat) + 1} repeats at step:{step} frac:{frac:.2f}")
    else:
        enc, dec = list(plan.order[: plan.num_encoder]), list(plan.order[plan.num_encoder :])
        log(f"layer_loop:enabled step:{step} frac:{frac:.3f} encoder:{enc} decoder:{dec}")

@dataclass
class LoopState:
    """What the training loop carries from step to step; a checkpoint holds it."""

    stage: Stage
    step: int = 0
    train_ms: float = 0.0  # the training clock at the last step (all-reduced) or validation
    switches: list[int] = field(default_factory=list)  # steps after which a new stage took over
    exported: list[float] = field(default_factory=list)  # EXPORT_MINUTES done
    saved: list[float] = field(default_factory=list)  # RESUME_SAVE_MINUTES done

# Off-by-default features live in modules beside this file (or inside the packed stub), imported only when a
# knob asks for them: module -> (is it used?, the knobs that use it)
OPTIONAL_MODULES = {
    "train_gpt_longrun": (lambda hp: hp.resume_enabled or any((hp.resume_from, hp.export_minutes, hp.eval_only_path)),
                          "RESUME_*, EXPORT_MINUTES and EVAL_ONLY_PATH"),  # #2008's checkpoints, exports, eval-only
    "train_gpt_mixers": (lambda hp: hp.sliding_window_enabled or hp.use_hedge or hp.ngram_tilt_enabled,
                         "SLIDING_WINDOW_ENABLED, USE_HEDGE and NGRAM_TILT_ENABLED"),  # sliding window, Hedge, hints
    "train_gpt_reference": (lambda hp: hp.quant_method != "gptq" or hp.swa_enabled or hp.gptq_calibration == "self"
                            or hp.num_repeats > 1 or hp.num_value_embeds > 0,  # the baseline, #895
                            ("QUANT_METHOD=int8/gptq_lite, SWA_ENABLED, GPTQ_CALIBRATION=self, NUM_REPEATS>1, "
                             "NUM_VALUE_EMBEDS")),
}

def optional_module(name: str, hp: Hyperparameters):
    """The module if this run's knobs use it, else None; a missing one is one line."""
    used, knobs = OPTIONAL_MODULES[name]
    if not used(hp):
        return None
    try:
        return importlib.import_module(name)
    except ImportError as e:  # its file missing, or a stub packed without it renamed what it imports
        if e.name not in (name, __name__):
            raise
        raise HyperparameterError(f"{knobs} need {name}.py beside this file (or a stub packed with them)") from None

def long_run(hp: Hyperparameters):
    return optional_module("train_gpt_longrun", hp)

class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss); reported as one line, exit 2."""

def train(models: Models, optimizers, val: ValidationData, hp, rt, log, checkpoint: dict | None = None) -> LoopState:
    """Runs until ITERATIONS or the cap, from step 0 or a checkpoint (RESUME_FROM); loads the weight average."""
    average = WeightAverage(models.raw, hp, log) if hp.ema_decay > 0 else None
    if hp.swa_enabled:
        average = optional_module("train_gpt_reference", hp).SWA(models.raw, hp, log)
    loop = LoopState(stage_at(0.0, hp))
    with train_loader(hp, rt) as loader:
        if checkpoint is not None:
            loop = long_run(hp).restore_checkpoint(checkpoint, models, optimizers, average, loader, rt, log)
        RUN_STATE.update(stage="training", loop=loop)
        train_loop(models, optimizers, average, loader, loop, val, checkpoint is not None, hp, rt, log)
    stats = loader.stats
    log(f"train_loader: shards_opened:{stats['opened']} open_ms:{1000 * stats['open_s']:.1f} (its thread) "
        f"main_thread_wait_ms:{1000 * stats['wait_s']:.1f} max_wait_ms:{1000 * stats['max_wait_s']:.1f} "
        f"batches:{stats['waits']}")
    if average is not None and (state := average.average(models.raw)) is not None:
        models.raw.load_state_dict(state, strict=True)
        val_loss, val_bpb = eval_val(models.eval, val, hp, rt)
        log(f"diagnostic pre-quantization post-average val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return loop

def train_loop(models: Models, optimizers, average, loader: TrainLoader, loop: LoopState, val: ValidationData,
               resumed: bool, hp: Hyperparameters, rt: Runtime, log) -> None:
    """The timed loop, advancing `loop`. Each step waits for the GPU once: the clock, the divergence flag and the
    loss come back in one copy after the MAX all-reduce that gives every rank the same clock."""
    cap_ms, last_plan, longrun = training_cap_ms(hp), len(models.raw.plans) - 1, long_run(hp)
    milestones = longrun.milestones(hp) if longrun else None
    stop_at = loop.step if resumed and loop.train_ms >= cap_ms else None  # resumed past the cap
    stage_start = (loop.step, loop.train_ms)  # where the current stage's steps began: its own step_avg
    clock = TrainClock(loop.train_ms, rt)
    while True:
        last = loop.step >= hp.iterations or loop.step == stop_at
        if last or (hp.val_loss_every > 0 and loop.step % hp.val_loss_every == 0):
            with clock.paused() as loop.train_ms:
                val_loss, val_bpb = eval_val(models.eval, val, hp, rt)
                log(f"step:{loop.step}/{hp.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                    f"train_time:{loop.train_ms:.0f}ms step_avg:{loop.train_ms / max(loop.step, 1):.2f}ms")
        if last:
            break
        lr_scale = lr_scale_at(loop.step, clock.ms(), hp)
        loss = train_step(models.train, optimizers, loader, hp, rt, loop.step, lr_scale, loop.stage)
        loop.step += 1
        if average is not None:
            average.update(models.raw, loop.step, lr_scale, loop.stage.plan == last_plan)
        loop.train_ms, diverged, loss = step_clock(loss, clock.ms(), rt)
        if diverged:  # one clock and one verdict for all ranks
            raise TrainingError(f"train loss is not finite at step {loop.step}: nothing exported; lower the LRs")
        if hp.train_log_every > 0 and (loop.step <= 10 or loop.step % hp.train_log_every == 0):
            log(f"step:{loop.step}/{hp.iterations} train_loss:{loss:.4f} train_time:{loop.train_ms:.0f}ms "
                f"step_avg:{loop.train_ms / loop.step:.2f}ms")
        frac = training_frac(loop.step, loop.train_ms, hp)
        if (new_stage := stage_at(frac, hp)) != loop.stage:
            log_stage_avg(loop.stage, stage_start, loop.step, loop.train_ms, log)
            log_stage_switch(loop.stage, new_stage, models.raw.plans, loop.step, frac, hp, log)
            loop.stage, stage_start = new_stage, (loop.step, loop.train_ms)
            loop.switches.append(loop.step)
        if longrun:
            longrun.run_milestones(models, optimizers, average, loader, val, loop, milestones, clock, hp, rt, log)
        if stop_at is None and loop.train_ms >= cap_ms:
            stop_at = loop.step
    log_stage_avg(loop.stage, stage_start, loop.step, loop.train_ms, log)
    if stop_at is not None and loop.step < hp.iterations:
        log(f"stopping_early: wallclock_cap train_time:{loop.train_ms:.0f}ms step:{loop.step}/{hp.iterations}")

def log_stage_avg(stage: Stage, start: tuple[int, float], step: int, train_ms: float, log) -> None:
    """A stage's own mean step time (looping makes the later steps ~1.5x the earlier ones)."""
    if step > start[0]:
        log(f"stage_avg: plan:{stage.plan} span:{stage.span} steps:{step - start[0]} "
            f"step_avg:{(train_ms - start[1]) / (step - start[0]):.2f}ms")

def step_clock(loss: Tensor, elapsed_ms: float, rt: Runtime) -> tuple[float, float, float]:
    """(clock, diverged, this rank's loss): clock and non-finite flag MAX-reduced, one copy back (the only sync)."""
    clock = copy_to_device(torch.tensor([elapsed_ms], dtype=torch.float64), rt)
    shared = all_reduce_(torch.cat([clock, (~torch.isfinite(loss)).double()[None]]), rt, dist.ReduceOp.MAX)
    return tuple(torch.cat([shared, loss.double()[None]]).tolist())

class TrainClock:
    """The training clock in ms: wall time since training began (or the resumed checkpoint's), less pauses."""

    def __init__(self, start_ms: float, rt: Runtime):
        self.rt = rt
        synchronize(rt)
        self.origin = time.perf_counter() - start_ms / 1000

    def ms(self) -> float:
        return 1000 * (time.perf_counter() - self.origin)

    @contextlib.contextmanager
    def paused(self):
        """Yields the clock once the device is idle; the time spent inside does not count."""
        synchronize(self.rt)
        start = time.perf_counter()
        yield 1000 * (start - self.origin)
        synchronize(self.rt)
        self.origin += time.perf_counter() - start

# -------- QUANTIZATION AND ARTIFACT ------------------------------------------------------------
# The score is taken after export, so the artifact is the model. Default (#1394 -> #1855): full-Hessian GPTQ of
# every large matrix, Hessians from training tokens inside the GPTQ reserve; LQER corrects the worst tensors. Our
# container (docs/artifact.md) is parsed as bytes (no pickle), CRC-checked, with rANS streams of the codes.

ARTIFACT_MAGIC, ARTIFACT_VERSION = b"PGLF", 4
COMPRESSORS = {0: "zlib", 1: "brotli", 2: "zstd", 3: "lzma"}
SCALE_STEPS_PER_OCTAVE = 32  # SDClip row scales sit on a 2^(1/32) grid: 2.2% apart, stored as int16 exponents
RANS_ROLES = ("attn", "mlp")  # near-Gaussian codes with little context: order-0 rANS beats brotli on them
RANS_PROB_BITS, RANS_LOW = 14, 1 << 16  # frequencies sum to 2^14; lane states live in [2^16, 2^32)

class ArtifactError(ValueError):
    pass

def tensor_role(name: str) -> str:
    """Which clip and bit settings a tensor gets; also the groups of the byte budget."""
    if name == "tok_emb.weight" or name.startswith("value_embeds."):
        return "embed"
    if ".attn.c_" in name or name.endswith(".attn.proj.weight"):
        return "attn"
    if ".mlp." in name:
        return "mlp"
    return "gate" if name.endswith("attn_gate_w") else "other"

# Small tensors are stored fp16, except these control tensors under the baseline's int8 and #895's gptq_lite
BASELINE_FP32_TENSORS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")

def kept_dtype(name: str, t: Tensor, hp: Hyperparameters) -> torch.dtype:  # a small tensor's, stored unquantized
    fp32 = hp.quant_method != "gptq" and any(p in name for p in BASELINE_FP32_TENSORS)
    return torch.float16 if t.is_floating_point() and not fp32 else t.dtype

def is_int8_gate(name: str, t: Tensor, hp: Hyperparameters) -> bool:
    """GATED_ATTN_QUANT_GATE (#1736) with #1855's bounds: the sparse and dense gates; #1667's out gate stays fp16."""
    return hp.gated_attn_quant_gate and tensor_role(name) == "gate" and not hp.attn_out_gate_enabled \
        and 32 <= t.numel() <= 8192

def sdclip_row_scales(w: Tensor, clip_sigmas: float, qmax: int, log_grid: bool = True) -> dict[str, Tensor]:
    """SDClip (#1394): scale = k * row std / qmax, fp16 as #1855 stores it, or ours (SCALE_LOG_GRID) snapped to a
    log grid, stored as its int16 exponent: ~5 compressed bits a row instead of ~11; the codes use the snapped value."""
    scale = (clip_sigmas * w.float().std(dim=1) / qmax).clamp_min(1e-8)
    if not log_grid:
        return {"scale": scale.to(torch.float16)}
    return {"scale_exp": torch.round(SCALE_STEPS_PER_OCTAVE * torch.log2(scale)).to(torch.int16)}

def row_scale(arrays: dict[str, Tensor]) -> Tensor:
    """The float scale of each row: stored fp16 (SCALE_LOG_GRID=0, int8, GPTQ-lite) or as a log-grid exponent."""
    if "scale" in arrays:
        return arrays["scale"].float()
    return torch.exp2(arrays["scale_exp"].double() / SCALE_STEPS_PER_OCTAVE).float()

def quantize_rows(w: Tensor, scale: Tensor, qmax: int) -> Tensor:
    return torch.clamp(torch.round(w.float() / scale.float()[:, None]), -qmax, qmax).to(torch.int8)

GPTQ_DAMPING = (0.01, 0.1, 1.0)  # fractions of mean(diag H) added to the diagonal: 1% (GPTQ), raised on failure

def inverse_hessian_factor(h: Tensor, name: str) -> Tensor:
    """Upper Cholesky factor of the damped H^-1; one not positive definite (too few tokens) is damped harder."""
    eye = torch.eye(h.size(0), device=h.device) * torch.diag(h).mean()
    for damping in GPTQ_DAMPING:
        lower, info = torch.linalg.cholesky_ex(h + damping * eye)
        if info == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if info == 0:
                return upper
    raise ArtifactError(f"GPTQ: the Hessian of {name} is not positive definite even damped (non-finite weights?)")

def gptq_quantize(w: Tensor, hessian: Tensor, bits: int, clip_sigmas: float, name: str = "a matrix",
                  log_grid: bool = True, block: int = 128) -> dict[str, Tensor]:
    """Full-Hessian GPTQ (Frantar et al. 2022): act-order columns, errors pushed on through H^-1's Cholesky factor."""
    qmax = 2 ** (bits - 1) - 1
    scales = sdclip_row_scales(w, clip_sigmas, qmax, log_grid)
    w, h = w.float().clone(), hessian.float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead], w[:, dead] = 1.0, 0.0
    perm = torch.argsort(torch.diag(h), descending=True)
    w, h = w[:, perm], h[perm][:, perm]
    u = inverse_hessian_factor(h, name)
    q, s = torch.zeros_like(w), row_scale(scales)
    for start in range(0, w.size(1), block):
        end = min(start + block, w.size(1))
        err = torch.zeros(w.size(0), end - start, device=w.device)
        for j in range(start, end):
            q[:, j] = torch.clamp(torch.round(w[:, j] / s), -qmax, qmax)
            err[:, j - start] = (w[:, j] - q[:, j] * s) / u[j, j]
            w[:, j:end] -= err[:, j - start, None] * u[j, j:end]
        w[:, end:] -= err @ u[start:end, end:]
    return {"q": q[:, torch.argsort(perm)].to(torch.int8), **scales}

def quantize_groups(x: Tensor, num_groups: int, low: int, high: int, divisor: float) -> dict[str, Tensor]:
    """Signed codes in [low, high] with one fp16 scale (group max / divisor) per row-major group."""
    groups = x.float().reshape(num_groups, -1)
    scale = (groups.abs().amax(1) / divisor).clamp_min(1e-12).to(torch.float16)
    q = torch.clamp(torch.round(groups / scale.float()[:, None]), low, high).to(torch.int8)
    return {"q": q.reshape(x.shape), "scale": scale}

def dequantize_groups(q: Tensor, scale: Tensor) -> Tensor:
    return (q.float().reshape(scale.numel(), -1) * scale.float()[:, None]).reshape(q.shape)

def lqer_factors(error: Tensor, hp: Hyperparameters) -> dict[str, Tensor]:
    """LQER (#1797): rank-r SVD of the quant error, E ~ A B; A in [-2, 1], B grouped [-8, 7], or LQER_FACTOR_BITS."""
    u, s, vh = torch.linalg.svd(error.float(), full_matrices=False)
    a, b = u[:, : hp.lqer_rank] * s[: hp.lqer_rank], vh[: hp.lqer_rank]
    if hp.lqer_asym_enabled and b.numel() % hp.lqer_asym_group == 0:
        qa = quantize_groups(a, 1, -2, 1, 1.5)
        qb = quantize_groups(b, b.numel() // hp.lqer_asym_group, -8, 7, 7.5)
    else:
        qmax = 2 ** (hp.lqer_factor_bits - 1) - 1
        qa, qb = quantize_groups(a, a.size(0), -qmax, qmax, qmax), quantize_groups(b, b.size(0), -qmax, qmax, qmax)
    return {"lqer_a": qa["q"], "lqer_a_scale": qa["scale"], "lqer_b": qb["q"], "lqer_b_scale": qb["scale"]}

def lqer_correction(arrays: dict[str, Tensor]) -> Tensor:
    a = dequantize_groups(arrays["lqer_a"], arrays["lqer_a_scale"])
    return a @ dequantize_groups(arrays["lqer_b"], arrays["lqer_b_scale"])

def role_bits_and_sigmas(role: str, hp: Hyperparameters) -> tuple[int, float]:
    sigmas = {"embed": hp.embed_clip_sigmas, "attn": hp.attn_clip_sigmas, "mlp": hp.mlp_clip_sigmas}
    return hp.embed_bits if role == "embed" else hp.matrix_bits, sigmas.get(role, hp.matrix_clip_sigmas)

def quantize_matrix(name: str, w: Tensor, hp: Hyperparameters, hessians: dict[str, Tensor]) -> dict[str, Tensor]:
    """One large matrix by QUANT_METHOD; one without a Hessian (value embeddings): SDClip rounding, GPTQ with H=I."""
    bits, sigmas = role_bits_and_sigmas(tensor_role(name), hp)
    qmax = 2 ** (bits - 1) - 1
    if hp.quant_method != "gptq":
        return optional_module("train_gpt_reference", hp).quantize_reference(w, qmax, hp)
    if name in hessians:
        return gptq_quantize(w, hessians[name].to(w.device), bits, sigmas, name, hp.scale_log_grid)
    scales = sdclip_row_scales(w, sigmas, qmax, hp.scale_log_grid)
    return {"q": quantize_rows(w, row_scale(scales), qmax), **scales}

def quantize_state_dict(state: dict[str, Tensor], hp: Hyperparameters,
                        hessians: dict[str, Tensor] | None = None) -> dict[str, tuple[str, str, dict[str, Tensor]]]:
    """name -> (scheme, dtype, arrays): raw, or rows (codes, a scale per row, LQER on the LQER_TOP_K worst)."""
    out, hessians = {}, hessians or {}
    with fp32_context(next(iter(state.values())).device):
        for name, t in state.items():
            dtype, t = str(t.dtype).removeprefix("torch."), t.detach()  # quantized on its own device (GPU: fast)
            if is_int8_gate(name, t, hp):
                scheme, arrays = "rows", quantize_groups(t, t.size(0), -127, 127, 127.0)
            elif not t.is_floating_point() or t.ndim != 2 or t.numel() <= hp.keep_float_max_numel:
                scheme, arrays = "raw", {"value": t.to(kept_dtype(name, t, hp))}
            else:
                scheme, arrays = "rows", quantize_matrix(name, t, hp, hessians)
            out[name] = (scheme, dtype, {k: v.cpu().contiguous() for k, v in arrays.items()})
        if hp.lqer_enabled and hp.quant_method == "gptq":
            add_lqer(out, state, hp)
    return out

def add_lqer(quantized: dict, state: dict[str, Tensor], hp: Hyperparameters) -> None:
    errors = {name: state[name].float().cpu() - dequantize_groups(arrays["q"], row_scale(arrays))
              for name, (scheme, _, arrays) in quantized.items() if scheme == "rows" and tensor_role(name) != "gate"}
    worst = sorted(errors, key=lambda n: float(errors[n].norm()), reverse=True)[: hp.lqer_top_k]
    for name in worst:
        quantized[name][2].update(lqer_factors(errors[name], hp))

def dequantize_state_dict(quantized: dict[str, tuple[str, str, dict[str, Tensor]]]) -> dict[str, Tensor]:
    out = {}
    for name, (scheme, dtype, arrays) in quantized.items():
        if scheme not in ("raw", "rows"):
            raise ArtifactError(f"tensor {name}: unknown quantization scheme {scheme!r}")
        w = arrays["value"] if scheme == "raw" else dequantize_groups(arrays["q"], row_scale(arrays))
        if "lqer_a" in arrays:
            w = w + lqer_correction(arrays)
        out[name] = w.to(getattr(torch, dtype))
    return out

@torch.no_grad()
def collect_hessians(model: GPT, batches: list[Tensor], rt: Runtime) -> dict[str, Tensor]:
    """Mean X^T X of each matrix's input by forward hooks, in fp32: a bf16 X^T X is not even positive definite."""
    hessians: dict[str, Tensor] = {}

    def accumulate(key: str, x: Tensor) -> None:
        with fp32_context(x.device):  # else x^T x would be a bf16 matmul under autocast
            x = x.reshape(-1, x.size(-1)).float()
            hessians[key] = hessians.get(key, 0) + x.T @ x

    hooks = [module.register_forward_hook(lambda m, inp, out, key=f"{name}.weight": accumulate(key, inp[0]))
             for name, module in model.named_modules() if isinstance(module, CastedLinear)]
    try:
        for x in batches:
            with autocast_context(rt):
                h = model.hidden(x)
            if model.lm_head is None:
                accumulate("tok_emb.weight", h)
    finally:
        for hook in hooks:
            hook.remove()
    tokens = sum(x.numel() for x in batches)
    return {k: v / tokens for k, v in hessians.items()}

def calibration_batches(model: GPT, hp: Hyperparameters, rt: Runtime) -> list[Tensor]:
    if hp.gptq_calibration == "self":
        return optional_module("train_gpt_reference", hp).self_generated_batches(model, hp, rt)
    with train_loader(hp, rt) as loader:  # training tokens only; the segments are cut on the host again (untimed)
        return [loader.next_batch(hp.train_seq_len).x for _ in range(hp.gptq_calibration_batches)]

# rANS (Duda 2013): a role's codes share one static order-0 table, near their entropy (brotli's Huffman loses
# 0.02-0.04 bit a code). Symbol i goes to lane i % L so numpy runs all L lanes at once.
def rans_frequencies(symbols: np.ndarray, num_symbols: int) -> np.ndarray:
    counts = np.bincount(symbols, minlength=num_symbols)
    freq = np.where(counts > 0, np.maximum(1, counts * ((1 << RANS_PROB_BITS) - num_symbols) // counts.sum()), 0)
    freq[np.argmax(freq)] += (1 << RANS_PROB_BITS) - freq.sum()
    return freq

def rans_lanes(count: int) -> int:
    return 1 << int(np.clip(np.log2(max(1, count // 16384)), 0, 12))  # >= 16k codes a lane: states stay cheap

def rans_encode(symbols: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the lanes' final states (uint32) and the 16-bit words in the order the decoder reads them."""
    lanes = rans_lanes(symbols.size)
    steps = -(-symbols.size // lanes)
    grid = np.concatenate([symbols, np.full(steps * lanes - symbols.size, -1)]).reshape(steps, lanes)
    f, start = freq.astype(np.uint64), (np.cumsum(freq) - freq).astype(np.uint64)
    x = np.full(lanes, RANS_LOW, dtype=np.uint64)
    words, emitted = np.zeros((steps, lanes), dtype=np.uint16), np.zeros((steps, lanes), dtype=bool)
    for t in range(steps - 1, -1, -1):  # rANS codes backwards so that decoding runs forwards
        valid = grid[t] >= 0
        sym = np.where(valid, grid[t], np.argmax(freq))  # padding lanes: any symbol with a frequency, unused
        emit = valid & (x >= np.uint64(1 << (32 - RANS_PROB_BITS)) * f[sym])  # keeps the new state below 2^32
        words[t], emitted[t] = x.astype(np.uint16), emit
        x = np.where(emit, x >> np.uint64(16), x)
        x = np.where(valid, (x // f[sym] << np.uint64(RANS_PROB_BITS)) + x % f[sym] + start[sym], x)
    return x.astype(np.uint32), words[emitted]

def rans_decode(states: np.ndarray, words: np.ndarray, freq: np.ndarray, count: int) -> np.ndarray:
    lanes, (f, start) = states.size, (freq.astype(np.int64), np.cumsum(freq) - freq)
    slot_symbol = np.repeat(np.arange(freq.size), freq)
    x, w, pos = states.astype(np.int64), words.astype(np.int64), 0
    out = np.zeros(-(-count // lanes) * lanes, dtype=np.int64)
    for t in range(out.size // lanes):
        k = min(lanes, count - t * lanes)
        slot = x[:k] & ((1 << RANS_PROB_BITS) - 1)
        sym = slot_symbol[slot]
        xs = f[sym] * (x[:k] >> RANS_PROB_BITS) + slot - start[sym]
        refill = xs < RANS_LOW
        n = int(refill.sum())
        if pos + n > w.size:
            raise ArtifactError("rANS stream is truncated")
        xs[refill] = (xs[refill] << 16) | w[pos : pos + n]
        x[:k], out[t * lanes : t * lanes + k], pos = xs, sym, pos + n
    return out[:count]

@dataclass
class RansGroup:
    """All integer codes of one role, concatenated in artifact order and rANS-coded together."""

    names: list[str]
    freq: np.ndarray
    states: np.ndarray
    words: np.ndarray

def rans_groups(quantized: dict, enabled: bool) -> dict[str, RansGroup]:
    groups = {}
    for role in RANS_ROLES if enabled else ():
        names = [n for n, (scheme, _, _) in quantized.items() if scheme == "rows" and tensor_role(n) == role]
        if names:
            symbols = np.concatenate([quantized[n][2]["q"].numpy().ravel() for n in names]).astype(np.int64) + 128
            freq = rans_frequencies(symbols, 256)
            groups[role] = RansGroup(names, freq, *rans_encode(symbols, freq))
    return groups

def codec(compressor: str) -> tuple:
    """(compress, decompress) of a COMPRESSORS name, at its strongest setting."""
    if compressor == "zlib":
        return functools.partial(zlib.compress, level=9), zlib.decompress
    if compressor == "lzma":
        return functools.partial(lzma.compress, preset=9 | lzma.PRESET_EXTREME), lzma.decompress
    if compressor == "brotli":
        brotli = require_module("brotli")
        return functools.partial(brotli.compress, quality=11, lgwin=24), brotli.decompress
    zstd = require_module("zstandard")
    return zstd.ZstdCompressor(level=22).compress, zstd.ZstdDecompressor().decompress

def compress(data: bytes, compressor: str) -> bytes:
    return codec(compressor)[0](data)

def require_module(name: str):
    """brotli, zstandard or python_minifier (requirements.txt), missing: one line (before training: startup_checks)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ArtifactError(f"the {name} package is missing: {sys.executable} -m pip install -r "
                            "requirements.txt") from None

def byte_shuffle(t: Tensor) -> bytes:
    """All first bytes of the elements, then all second bytes...: fp16 exponents end up together."""
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy()
    return raw.reshape(-1, t.element_size()).T.tobytes()

def byte_unshuffle(data: bytes, dtype: torch.dtype, shape: list[int]) -> Tensor:
    raw = np.frombuffer(data, dtype=np.uint8).reshape(dtype.itemsize, -1).T.copy()
    return torch.from_numpy(raw).reshape(-1).view(dtype).reshape(shape)

def pack_artifact(quantized: dict, model_config: dict, compressor: str, groups: dict | None = None) -> bytes:
    """Body = u32 length + compressed(u32 length + JSON header + byte-shuffled arrays) + the rANS streams (at their
    entropy). Specs: "arrays" give a stored array's offset and length, "coded" a rANS-coded one's role, first code."""
    groups, entries, blobs, offset, coded_at = groups or {}, [], [], 0, {}
    for role, g in groups.items():
        firsts = itertools.accumulate((quantized[name][2]["q"].numel() for name in g.names), initial=0)
        coded_at.update({name: (role, first) for name, first in zip(g.names, firsts)})
    for name, (scheme, dtype, arrays) in quantized.items():
        entry = {"name": name, "scheme": scheme, "dtype": dtype, "arrays": {}, "coded": {}}
        for key, t in arrays.items():
            spec = [str(t.dtype).removeprefix("torch."), list(t.shape)]
            if key == "q" and name in coded_at:
                entry["coded"][key] = spec + list(coded_at[name])
                continue
            data = byte_shuffle(t)
            entry["arrays"][key] = spec + [offset, len(data)]
            blobs.append(data)
            offset += len(data)
        entries.append(entry)
    streams = {role: {"freq": g.freq.tolist(), "lanes": int(g.states.size), "words": int(g.words.size)}
               for role, g in groups.items()}
    header = json.dumps({"config": model_config, "tensors": entries, "rans": streams}).encode()
    packed = compress(struct.pack("<I", len(header)) + header + b"".join(blobs), compressor)
    tail = b"".join(g.states.astype("<u4").tobytes() + g.words.astype("<u2").tobytes() for g in groups.values())
    body = struct.pack("<I", len(packed)) + packed + tail
    compressor_id = list(COMPRESSORS.values()).index(compressor)  # the keys are 0, 1, 2...
    return ARTIFACT_MAGIC + struct.pack("<BBI", ARTIFACT_VERSION, compressor_id, zlib.crc32(body)) + body

def unpack_rans_streams(header: dict, tail: memoryview) -> dict[str, np.ndarray]:
    """Each role's decoded codes (int64) from the raw tail, in the order pack_artifact wrote them."""
    decoded, offset = {}, 0
    for role, g in header["rans"].items():
        states = np.frombuffer(tail, dtype="<u4", count=g["lanes"], offset=offset)
        words = np.frombuffer(tail, dtype="<u2", count=g["words"], offset=offset + 4 * g["lanes"])
        offset += 4 * g["lanes"] + 2 * g["words"]
        count = sum(math.prod(spec[1]) for e in header["tensors"] for spec in e["coded"].values() if spec[2] == role)
        decoded[role] = rans_decode(states, words, np.array(g["freq"]), count) - 128
    return decoded

def artifact_parts(blob: bytes) -> tuple[dict, memoryview, memoryview]:
    """(JSON header, stored arrays, rANS tail) of a checked artifact; every malformation raises ArtifactError."""
    if len(blob) < 10 or blob[:4] != ARTIFACT_MAGIC:
        raise ArtifactError("not a train_gpt.py artifact (bad magic or too short)")
    version, compressor_id, crc = struct.unpack("<BBI", blob[4:10])
    if version != ARTIFACT_VERSION or compressor_id not in COMPRESSORS:
        raise ArtifactError(f"unsupported artifact version {version} / compressor id {compressor_id}")
    body = blob[10:]
    if zlib.crc32(body) != crc:
        raise ArtifactError("artifact checksum mismatch: the file is truncated or corrupt")
    try:
        (packed_len,) = struct.unpack("<I", body[:4])
        payload = codec(COMPRESSORS[compressor_id])[1](body[4 : 4 + packed_len])
        (header_len,) = struct.unpack("<I", payload[:4])
        return json.loads(payload[4 : 4 + header_len]), memoryview(payload)[4 + header_len :], \
            memoryview(body)[4 + packed_len :]
    except Exception as e:  # any parse failure of a file that passed the CRC is still a bad artifact
        raise ArtifactError(f"artifact is malformed: {e}") from None

def unpack_artifact(blob: bytes) -> tuple[dict, dict]:
    """Returns (quantized tensors, model config)."""
    header, data, tail = artifact_parts(blob)
    try:
        decoded, quantized = unpack_rans_streams(header, tail), {}
        for e in header["tensors"]:
            arrays = {key: byte_unshuffle(data[at : at + n], getattr(torch, dt), shape)
                      for key, (dt, shape, at, n) in e["arrays"].items()}
            for key, (dt, shape, role, first) in e["coded"].items():
                codes = decoded[role][first : first + math.prod(shape)]
                arrays[key] = torch.from_numpy(codes).to(getattr(torch, dt)).reshape(shape)
            quantized[e["name"]] = (e["scheme"], e["dtype"], arrays)
        return quantized, header["config"]
    except Exception as e:
        raise ArtifactError(f"artifact is malformed: {e}") from None

def check_artifact_config(stored: dict, hp: Hyperparameters) -> None:
    diffs = [f"{k.upper()}={stored.get(k)!r} (run has {v!r})" for k, v in hp.model_config().items()
             if stored.get(k) != v]
    if diffs:
        raise ArtifactError("artifact was built for another model config: " + ", ".join(diffs))

PACKED_STUB_PREFIX = "import brotli,functools\n"  # the first line of a packed stub (train_gpt_tools.packed_code)

def source_tools():
    """train_gpt_tools.py: the packer and --help's table, which a run from the source needs and a packed stub never."""
    try:
        return importlib.import_module("train_gpt_tools")
    except ImportError as e:  # its file missing, or a stub (--help) whose shortened names it cannot import
        if e.name not in ("train_gpt_tools", __name__):
            raise
        raise ArtifactError("--help and packing need train_gpt_tools.py beside the source train_gpt.py (not a "
                            "stub), or CODE_PACKING=raw") from None

# -------- EVALUATION ---------------------------------------------------------------------------
# Every mode scores each val target once into BpbMeters, from a full softmax that depends on the artifact and
# earlier tokens only (#1017's C1-C4, tests/test_eval_legality.py): plain rows (#1855's diagnostic), sliding
# windows (#895/#1626), score-first LoRA TTT with phased global SGD (#1530/#1626/#1855); mixers: #895's Hedge
# (window pass) and the token-only n-gram tilt (#1514/#2135, any mode).

def eval_batch_seqs(hp: Hyperparameters, rt: Runtime) -> int:
    return max(1, hp.val_batch_size // (rt.world_size * rt.grad_accum_steps * hp.train_seq_len))

def rank_share(n: int, rt: Runtime) -> slice:  # this rank's contiguous share of n items, in rank order
    return slice(n * rt.rank // rt.world_size, n * (rt.rank + 1) // rt.world_size)

@contextlib.contextmanager
def timed(timers: dict[str, float], key: str):  # adds the block's host-clock seconds to timers[key]
    start = time.perf_counter()
    yield
    timers[key] = timers.get(key, 0.0) + time.perf_counter() - start

@torch.no_grad()
def eval_val(model: nn.Module, val: ValidationData, hp: Hyperparameters, rt: Runtime) -> tuple[float, float]:
    seq_len, n, tokens = hp.train_seq_len, val.tokens.numel() - 1, val.tokens.numpy()
    total_seqs = -(-n // seq_len)  # the last, shorter row holds the tail
    share, batch_seqs = rank_share(total_seqs, rt), eval_batch_seqs(hp, rt)
    meter, was_training = BpbMeter(rt.device), model.training
    model.eval()
    for s in range(share.start, share.stop, batch_seqs):
        a = s * seq_len
        window = tokens[a : min((s + batch_seqs) * seq_len, share.stop * seq_len, n) + 1]
        real = window.size - 1
        # rows of TRAIN_SEQ_LEN scored alone (documents also cut at BOS; EVAL_ROWS_BY_DOC: #1855's one flat row), so
        # no score depends on batch or world size; a short last batch is padded at the end, which no real token sees
        shape = (1, -1) if hp.eval_rows_by_doc else (batch_seqs, seq_len)
        x, y = (np.pad(w, (0, batch_seqs * seq_len - real)).reshape(shape) for w in (window[:-1], window[1:]))
        dev = to_device(dict(x=x, y=y, cu=rows_cu_seqlens(x, seq_len, hp.doc_isolation),
                             nbytes=val.token_bytes.numpy()[a + 1 : a + 1 + real]), rt)
        with autocast_context(rt):
            nll = model(dev["x"], dev["y"], reduction="none", cu_seqlens=cu_seqlens_input(dev["cu"]))[:real]
        meter.add(nll, dev["nbytes"])
    model.train(was_training)
    return meter.result(rt)

class StageMeters:
    """One eval stage's meters by label (train_gpt_mixers.TiltedMeters adds the n-gram tilt's)."""

    def __init__(self, labels: list[str], val: ValidationData, rt: Runtime):
        self.val, self.labels = val, labels
        self.meters = {label: BpbMeter(rt.device) for label in labels}  # every rank reduces the same set

    def add(self, label: str, logp: Tensor, dev: dict[str, Tensor]) -> None:
        """logp [..., V], fixed before any update, for the targets in dev (target_arrays, in logp's leading shape)."""
        self.meters[label].add(-logp.gather(-1, dev["targets"][..., None]).squeeze(-1), dev["nbytes"], dev["mask"])

    def target_arrays(self, positions: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Host arrays of the targets at stream positions (any shape): ids, bytes of the real ones."""
        return dict(targets=self.val.tokens.numpy()[positions], nbytes=self.val.token_bytes.numpy()[positions] * mask,
                    mask=mask)

WINDOW_WIDTH_BUCKET, SCORED_BUCKET = 16, 8  # padded row widths and scored slots: compiled shapes never 1, few kinds

def window_arrays(windows: list[tuple[int, int, int]], meters: StageMeters, span: int,
                  hp: Hyperparameters) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One forward's host arrays for windows (a, s, e): rows, `index` of positions predicting s+1..e, targets."""
    tokens, b = meters.val.tokens.numpy(), len(windows)
    width = -(-max(e - a for a, _, e in windows) // WINDOW_WIDTH_BUCKET) * WINDOW_WIDTH_BUCKET
    count = -(-max(e - s for _, s, e in windows) // SCORED_BUCKET) * SCORED_BUCKET
    x, index = np.zeros((b, width), np.int32), np.zeros((b, count), np.int64)
    positions, mask = np.zeros((b, count), np.int64), np.zeros((b, count), np.int32)
    for i, (a, s, e) in enumerate(windows):
        x[i, : e - a] = tokens[a:e]
        slots = np.minimum(np.arange(count), e - s - 1)
        index[i], positions[i], mask[i, : e - s] = s - a + slots, s + 1 + slots, 1
    arrays = dict(x=x, index=index, cu=rows_cu_seqlens(x, span, hp.doc_isolation),
                  **meters.target_arrays(positions, mask))
    return arrays, positions

def scored_logp(model: GPT, dev: dict[str, Tensor], span: int, lora=None) -> Tensor:
    """log-probabilities [B, C, V] of a window batch's scored slots: one forward, the LM head only where scored."""
    h = model.hidden(dev["x"], span=span, lora=lora, cu_seqlens=dev["cu"].int())
    h = h.gather(1, dev["index"][..., None].expand(-1, -1, h.size(-1)))
    return torch.log_softmax(model.logits(h, lora).float(), -1)

class BatchedLoRA(nn.Module):
    """Score-first TTT adapters (#1530; alpha/rank #1767; targets of #1855): per document and layer application a
    delta (x A^T) B^T alpha/r on Q, K, V, beside attention out and MLP, and on the LM head; B = 0: a no-op at first."""

    def __init__(self, model: GPT, hp: Hyperparameters, batch: int, seed: int):
        super().__init__()
        d, kv, r = hp.model_dim, hp.num_kv_heads * (hp.model_dim // hp.num_heads), hp.ttt_lora_rank
        apps, device = len(model.plans[-1].order), model.tok_emb.weight.device
        shapes = {"q": (apps, d, d), "k": (apps, d, kv), "v": (apps, d, kv), "o": (apps, d, d), "mlp": (apps, d, d),
                  "head": (1, d, hp.vocab_size)}
        gen = torch.Generator(device).manual_seed(seed)
        self.scale, self.a, self.b = hp.ttt_lora_alpha / r, nn.ParameterDict(), nn.ParameterDict()
        for name, (n, fan_in, fan_out) in shapes.items():  # document first: a batch's first rows are contiguous
            if getattr(hp, f"ttt_{name}_lora", True):  # TTT_Q_LORA...; the head has no knob: always on
                bound = 1 / math.sqrt(fan_in)  # A ~ U(+-1/sqrt(in))
                a = torch.rand(batch, n, r, fan_in, generator=gen, device=device) * 2 * bound - bound
                self.a[name] = nn.Parameter(a)
                self.b[name] = nn.Parameter(torch.zeros(batch, n, fan_out, r, device=device))

    def delta(self, rows: int | None = None):
        """The first `rows` documents' adapters (views) as the forward takes them: lora(application, target, x)."""
        return functools.partial(lora_delta, {n: (self.a[n][:rows], self.b[n][:rows]) for n in self.a}, self.scale)

def lora_delta(adapters: dict[str, tuple[Tensor, Tensor]], scale: float, app: int, target: str,
               x: Tensor) -> Tensor | None:
    if target not in adapters:
        return None
    a, b = (w[:, 0 if target == "head" else app].to(x.dtype) for w in adapters[target])
    return torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2)) * scale

def ttt_optimizer(lora: BatchedLoRA, hp: Hyperparameters) -> torch.optim.Optimizer:
    if hp.ttt_optimizer == "sgd":
        return torch.optim.SGD(lora.parameters(), lr=hp.ttt_lora_lr, momentum=hp.ttt_beta1,
                               weight_decay=hp.ttt_weight_decay)  # the records' (#1855): L2, not decoupled
    return torch.optim.AdamW(lora.parameters(), lr=hp.ttt_lora_lr, betas=(hp.ttt_beta1, hp.ttt_beta2), eps=1e-10,
                             weight_decay=hp.ttt_weight_decay, fused=True)  # fused: no host read of the step

def chunk_size_of(docs: list[tuple[int, int]], hp: Hyperparameters) -> int:
    """TTT_CHUNK_SIZE, or a smaller one of TTT_SHORT_DOC_CHUNKS (#2014): one size a batch, by its longest document,
    whose length there counts its BOS too (one more than its targets)."""
    longest, limits = max(end - start for start, end in docs) + 1, knob_list(hp, "ttt_short_doc_chunks")
    return next((c for n, c in sorted((n, c) for c, n in limits) if longest <= n), hp.ttt_chunk_size)

def chunk_count(doc: tuple[int, int], c: int) -> int:
    return -(-(doc[1] - doc[0]) // c)

def chunk_windows(docs: list[tuple[int, int]], step: int, c: int, hp: Hyperparameters) -> list[tuple[int, int, int]]:
    """Per document, step's chunk of c as (context start, score start, end): up to TTT_EVAL_SEQ_LEN of context."""
    out = []
    for start, end in docs:
        hi = min(start + (step + 1) * c, end)
        out.append((max(start, hi - hp.ttt_eval_seq_len), start + step * c, hi))
    return out

@functools.cache
def compiled_scorer():
    """scored_logp compiled once with dynamic shapes (TTT chunks change rows, widths, scored slots; B = 1: its own)."""
    return torch_compile(scored_logp, dynamic=True)

TTT_PROGRESS_SECONDS = 30.0  # a long batch (a 25k-token document: 90 min on a CPU) logs its chunk steps this often

def ttt_batch(model: GPT, docs: list, lora: BatchedLoRA, hp: Hyperparameters, rt: Runtime, meters: StageMeters,
              label: str, log=None) -> None:
    """Score-first LoRA TTT of a batch (most chunks first): each chunk scored, then trained on, but the last."""
    optimizer, size = ttt_optimizer(lora, hp), chunk_size_of(docs, hp)
    chunks = [chunk_count(d, size) for d in docs]
    start = shown = time.perf_counter()  # host clock: the progress line waits for nothing
    for step in range(chunks[0]):
        rows = sum(c > step for c in chunks)  # the documents still scoring: the first `rows`
        host, _ = window_arrays(chunk_windows(docs[:rows], step, size, hp), meters, hp.ttt_eval_seq_len, hp)
        host["train"] = np.array([c > step + 1 for c in chunks[:rows]], np.int32)  # those with a later chunk
        ttt_step(model, lora.delta(rows), optimizer, host, meters, label, hp, rt)
        if log is not None and time.perf_counter() - shown >= TTT_PROGRESS_SECONDS:
            shown = time.perf_counter()
            log(f"ttc: chunk:{step + 1}/{chunks[0]} docs:{rows} t:{shown - start:.1f}s")

def ttt_step(model: GPT, adapters, optimizer, host: dict[str, np.ndarray], meters: StageMeters, label: str,
             hp: Hyperparameters, rt: Runtime) -> None:
    """One chunk step: host arrays reach the device in one copy, scores are committed before the adapters step."""
    dev, span = to_device(host, rt), hp.ttt_eval_seq_len
    score = compiled_scorer() if compiles(hp, rt) else scored_logp
    with autocast_context(rt):
        logp = score(model, dev, span, adapters)
    meters.add(label, logp.detach(), dev)
    if not host["train"].any():
        return
    weights = dev["mask"] * dev["train"][:, None] / dev["mask"].sum(1, keepdim=True)  # a document's mean
    for k in range(hp.ttt_grad_steps):
        if k > 0:
            with autocast_context(rt):
                logp = score(model, dev, span, adapters)
        optimizer.zero_grad(set_to_none=True)
        (-logp.gather(-1, dev["targets"][..., None]).squeeze(-1) * weights).sum().backward()
        optimizer.step()

def by_length(doc: tuple[int, int]) -> tuple[int, int]:
    return doc[1] - doc[0], doc[0]  # shortest first, ties in stream order

def most_chunks_first(batch: list[tuple[int, int]], hp: Hyperparameters) -> list[tuple[int, int]]:
    c = chunk_size_of(batch, hp)
    return sorted(batch, key=lambda d: -chunk_count(d, c))  # stable: ties stay shortest first

def ttt_queue(val: ValidationData, hp: Hyperparameters) -> list[tuple[int, list[tuple[int, int]]]]:
    """(batch index, documents) as #1855 queues them: batches cut from the shortest, run longest first."""
    docs = sorted(val_documents(val.tokens), key=by_length)
    batches = [most_chunks_first(docs[i : i + hp.ttt_batch_size], hp)
               for i in range(0, len(docs), hp.ttt_batch_size)][::-1]
    chosen = knob_list(hp, "ttt_eval_batches")
    return [(b, batches[b]) for b in chosen] if chosen else list(enumerate(batches))

def phase_plan(sizes: list[int], hp: Hyperparameters, world_size: int) -> list[tuple[int, int]]:
    """(batches scored before, documents trained on) per global-SGD phase k: PREFIX_DOCS*k/PHASES, once scored."""
    if not hp.phased_ttt_enabled:
        return []
    # GLOBAL_TTT_STREAM=record: #1855's ranks finish the batches they hold when its pause flag goes up, so its
    # pool has world_size - 1 more (its logs, 8 ranks: pd:1296 documents, 21 batches, where 833 need 14)
    plan, held, late = [], np.cumsum(sizes), world_size - 1 if hp.global_ttt_stream == "record" else 0
    for k in range(1, hp.phased_ttt_num_phases + 1):
        docs = hp.phased_ttt_prefix_docs * k // hp.phased_ttt_num_phases
        bound = int(np.searchsorted(held, docs)) + 1 + late  # the first batches holding `docs` documents
        if 0 < docs and bound < len(sizes):
            plan.append((bound, docs))
    return plan

def phase_docs(queue: list, bound: int, count: int, hp: Hyperparameters) -> list[tuple[int, int]]:
    """A phase's documents: the first `count` queued, or (GLOBAL_TTT_STREAM=record, #1855) the shortest."""
    scored = [d for _, docs in queue[:bound] for d in docs]
    if hp.global_ttt_stream == "record":
        scored = sorted(scored, key=by_length)
    return scored[:count]

def sgd_positions(docs: list[tuple[int, int]], hp: Hyperparameters) -> np.ndarray:
    """Global SGD's stream: documents back to back + the last's closing BOS, or (record) each with its own."""
    close = int(hp.global_ttt_stream == "record")
    return np.concatenate([np.arange(s, e + close) for s, e in docs] + ([] if close else [[docs[-1][1]]]))

def new_lora(model: GPT, hp: Hyperparameters, index: int, size: int, lanes: dict) -> BatchedLoRA:
    """Fresh adapters seeded by the batch index; TTT_WARM_START_A takes A from this rank's previous batch of as many
    documents (#1767, as #1855: the chain is a rank's, so only TTT_WARM_START_A=0 scores alike on any world size)."""
    lora = BatchedLoRA(model, hp, size, seed=hp.seed * 1_000_003 + index)  # int64: SEED is bounded
    if hp.ttt_warm_start_a and size in lanes:
        with torch.no_grad():
            for n, a in lora.a.items():
                a.copy_(lanes[size][n])
    return lora

def global_ttt_lr_at(chunk: int, steps: int, hp: Hyperparameters) -> float:
    # the records' schedule (#1626 on): a linear warm-up that reaches GLOBAL_TTT_LR at its last chunk, then a cosine
    # over the chunks after it
    warm, lr, start = min(hp.global_ttt_warmup_chunks, steps), hp.global_ttt_lr, hp.global_ttt_warmup_start_lr
    if chunk < warm:
        return start + (lr - start) * chunk / max(1, warm - 1)
    return lr * 0.5 * (1 + math.cos(math.pi * (chunk - warm) / max(1, steps - warm)))

def global_sgd(model: GPT, val: ValidationData, docs: list[tuple[int, int]], hp: Hyperparameters, rt: Runtime,
               log) -> None:
    """#1626's phased TTT: momentum SGD on every base weight over scored documents, cosine LR, last chunk untrained."""
    stream = sgd_positions(docs, hp)
    chunk, params = hp.global_ttt_chunk_tokens, list(model.parameters())
    steps = -(-(stream.size - 1) // chunk) - 1
    optimizer = torch.optim.SGD(params, lr=hp.global_ttt_lr, momentum=hp.global_ttt_momentum)
    for p in params:
        p.grad = torch.zeros_like(p)  # never None: a rank with no rows still joins the all-reduce
    model.requires_grad_(True)
    model.train()
    t0 = time.perf_counter()
    for c in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = global_ttt_lr_at(c, steps, hp)
        for _ in range(hp.global_ttt_epochs):
            optimizer.zero_grad(set_to_none=False)
            global_sgd_backward(model, val, stream[c * chunk : (c + 1) * chunk + 1], hp, rt)
            average_gradients(params, rt)
            if hp.global_ttt_grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, hp.global_ttt_grad_clip)
            optimizer.step()
    log(f"tttg: docs:{len(docs)} tokens:{stream.size - 1} steps:{steps} t:{time.perf_counter() - t0:.1f}s")
    model.requires_grad_(False)
    model.eval()

def global_sgd_backward(model: GPT, val: ValidationData, positions: np.ndarray, hp: Hyperparameters,
                        rt: Runtime) -> None:
    """Gradients of a chunk's mean loss from this rank's rows (TTT_EVAL_SEQ_LEN each, alone: any split sums alike), by
    GLOBAL_TTT_BATCH_SEQS; reads only the chunk's stream positions (tests/test_eval_legality.py)."""
    seq_len, n, tokens = hp.ttt_eval_seq_len, positions.size - 1, val.tokens.numpy()[positions]
    share = rank_share(-(-n // seq_len), rt)
    for i in range(share.start, share.stop, hp.global_ttt_batch_seqs):
        window = tokens[i * seq_len : min(min(i + hp.global_ttt_batch_seqs, share.stop) * seq_len, n) + 1]
        full = (window.size - 1) // seq_len * seq_len  # whole rows, then a shorter last one
        for x, y in ((window[:full], window[1 : full + 1]), (window[full:-1], window[full + 1 :])):
            if x.size:
                x, y = x.reshape(-1, min(seq_len, x.size)), y.reshape(-1, min(seq_len, y.size))
                dev = to_device(dict(x=x, y=y, cu=rows_cu_seqlens(x, seq_len, hp.doc_isolation)), rt)
                with autocast_context(rt):
                    loss = model(dev["x"], dev["y"], reduction="sum", span=seq_len,
                                 cu_seqlens=cu_seqlens_input(dev["cu"]))
                (loss * rt.world_size / n).backward()  # averaged over ranks: the chunk's mean

class BatchClaims:
    """The batch a free rank scores next: a counter in torch.distributed's store (#1855's lock file needs one host)."""

    evals = itertools.count()  # every rank runs the same evals in the same order: one fresh key each

    def __init__(self, rt: Runtime):
        self.store = dist.distributed_c10d._get_default_store() if rt.distributed else None
        self.key, self.local = f"ttt_batch_claims_{next(BatchClaims.evals)}", itertools.count(0)

    def next(self) -> int:
        return next(self.local) if self.store is None else self.store.add(self.key, 1) - 1

def eval_ttt(model: GPT, val: ValidationData, hp: Hyperparameters, rt: Runtime, new_meters,
             log) -> tuple[StageMeters, dict[str, float]]:
    """Score-first LoRA TTT into new_meters(labels, val, rt), ranks claiming batches, with phased global SGD once
    every batch before a phase's bound is scored (a claim past it waits). Returns the meters and seconds per leg."""
    queue = ttt_queue(val, hp)
    phases = phase_plan([len(docs) for _, docs in queue], hp, rt.world_size)
    label = "ttt_phased" if phases else "ttt_lora"  # no phase to run (PREFIX_DOCS past the queue): LoRA TTT alone
    meters = new_meters([label], val, rt)
    log(f"ttt: docs:{sum(len(d) for _, d in queue)} batches:{len(queue)} world_size:{rt.world_size} "
        f"phase_docs:{[d for _, d in phases]}")
    claims, lanes, legs, t0 = BatchClaims(rt), {}, {}, time.perf_counter()
    model.requires_grad_(False)
    model.eval()
    b = claims.next()
    for k, (bound, prefix) in enumerate(phases + [(len(queue), 0)]):
        with timed(legs, f"ttt_scoring_{k + 1}"):
            while b < bound:
                index, docs = queue[b]
                lora = new_lora(model, hp, index, len(docs), lanes)
                ttt_batch(model, docs, lora, hp, rt, meters, label, log)
                lanes[len(docs)] = {n: a.detach() for n, a in lora.a.items()}
                nll, tokens, nbytes = meters.meters[label].sums.tolist()  # this rank's running totals, once a batch
                loss, bpb = loss_and_bpb(nll, max(tokens, 1), max(nbytes, 1))
                log(f"ttp: b{b}/{len(queue)} docs:{len(docs)} dl:{docs[-1][1] - docs[-1][0]}-"
                    f"{docs[0][1] - docs[0][0]} rl:{loss:.4f} rb:{bpb:.4f} t:{time.perf_counter() - t0:.1f}s")
                b = claims.next()
        if prefix:
            with timed(legs, f"ttt_global_sgd_{k + 1}"):
                global_sgd(model, val, phase_docs(queue, bound, prefix, hp), hp, rt, log)
            lanes.clear()  # adapters start from scratch after a phase (#1626)
            log(f"ttpp: phase:{k + 1}/{len(phases)} docs:{prefix} t:{time.perf_counter() - t0:.1f}s")
    model.requires_grad_(True)
    return meters, legs

def eval_warmup(model: GPT, hp: Hyperparameters, rt: Runtime, mixers) -> None:
    """Every TTT and window graph built on random tokens before the eval timers (#1530 used val tokens: flagged)."""
    gen, c, half = torch.Generator().manual_seed(hp.seed), hp.ttt_chunk_size, hp.ttt_batch_size // 2
    lengths = [hp.ttt_eval_seq_len + c] + [3 * c] * (half - 1) + [2 * c] * (hp.ttt_batch_size - half)
    lengths = lengths[: hp.ttt_batch_size]
    starts = np.cumsum([0] + lengths)
    fake_tokens = torch.randint(2, hp.vocab_size, (max(int(starts[-1]), 2 * hp.ttt_eval_seq_len) + 1,), generator=gen)
    fake_tokens[starts[:-1]] = BOS_ID
    fake = ValidationData(fake_tokens.to(torch.int32), torch.ones_like(fake_tokens, dtype=torch.int16))
    if hp.ttt_enabled:
        docs = [(int(s), int(e)) for s, e in zip(starts, starts[1:])]
        model.requires_grad_(False)
        ttt_batch(model, docs, new_lora(model, hp, 0, len(docs), {}), replace(hp, ttt_short_doc_chunks=""), rt,
                  StageMeters(["warmup"], fake, rt), "warmup")
        model.requires_grad_(True)
    if mixers:
        mixers.warm_sliding(model, fake, hp, rt)

def report_stage(meters: StageMeters, seconds: float, partial: bool, rt: Runtime, log) -> list[dict]:
    """The records' lines per label: '{label} val_loss val_bpb eval_time' and '{label}_exact'."""
    totals = {name: meters.meters[name].totals(rt) for name in meters.labels}  # nll, tokens, bytes
    return [stage_row(f"quantized_{name}{'_partial' if partial else ''}", *loss_and_bpb(*t), *t[1:], seconds, log)
            for name, t in totals.items()]

def stage_row(label: str, val_loss: float, val_bpb: float, tokens: float, nbytes: float, seconds: float, log) -> dict:
    log(f"{label} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{1000 * seconds:.0f}ms")
    log(f"{label}_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return dict(label=label, val_loss=val_loss, val_bpb=val_bpb, tokens=int(tokens), bytes=int(nbytes), seconds=seconds)

def sdpa_view(model: GPT) -> GPT:
    """The same parameters (shared) attending with SDPA: FlexAttention is fast only compiled, the stages run eager."""
    with torch.device("meta"):
        view = GPT(replace(model.hp, attn_backend="sdpa"))
    view.load_state_dict(model.state_dict(keep_vars=True), assign=True)
    return view

def eval_stages(model: GPT, val: ValidationData, hp: Hyperparameters, rt: Runtime,
                log) -> tuple[list[dict], dict[str, float]]:
    """The stages after the round trip in the records' order (TTT, which changes the weights, last): rows, timers."""
    rows, timers = [], {}
    if attention_backend(model.hp, rt.device) == "flex":
        model = sdpa_view(model)
        log("eval_stages: attention on SDPA")
    mixers = optional_module("train_gpt_mixers", hp)
    with timed(timers, "ngram_hints"):  # NGRAM_TILT's hints, once: every stage's meters then also score the tilt
        new_meters = mixers.stage_meters(val, hp) if mixers else StageMeters
    with timed(timers, "eval_warmup"):
        eval_warmup(model, hp, rt, mixers)
    if mixers:  # the sliding-window stage first (SLIDING_WINDOW_ENABLED, USE_HEDGE)
        rows += mixers.sliding_stage(model, val, hp, rt, new_meters, timers, log)
    if hp.ttt_enabled:
        synchronize(rt)
        log("beginning TTT eval timer")
        with timed(timers, "ttt"):
            meters, legs = eval_ttt(model, val, hp, rt, new_meters, log)
            timers.update(legs)
        rows += report_stage(meters, timers["ttt"], val.partial or bool(knob_list(hp, "ttt_eval_batches")), rt, log)
        if timers["ttt"] > hp.eval_budget_seconds:
            log(f"warning: ttt:{timers['ttt']:.1f}s > EVAL_BUDGET_SECONDS={hp.eval_budget_seconds:g}")
    return rows, timers

# -------- MAIN ---------------------------------------------------------------------------------
# setup -> data -> model -> warm-up -> train -> export -> reload the artifact -> score it.

def log_header(hp: Hyperparameters, rt: Runtime, log: Logger) -> None:
    log(Path(__file__).read_text(encoding="utf-8"), console=False)
    log("=" * 100, console=False)
    log(f"Running Python {sys.version.split()[0]} PyTorch {torch.__version__} device:{rt.device.type}")
    if rt.device.type == "cuda":
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False).stdout, console=False)
    for line in describe_hyperparameters(hp):
        log(line)
    log(f"attention_backend:{attention_backend(hp, rt.device)}")
    log(f"world_size:{rt.world_size} grad_accum_steps:{rt.grad_accum_steps} autocast_bf16:{int(rt.autocast)}")
    log(f"seed:{hp.seed}")

def load_validation(hp: Hyperparameters, rt: Runtime, log: Logger) -> ValidationData:
    sp, info = load_tokenizer(hp.tokenizer_path, hp.vocab_size), build_info(hp.data_path)
    check_shards_tokenizer(info, hp.data_path, hp.tokenizer_path)
    log(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={hp.tokenizer_path}")
    pattern = os.path.join(hp.data_path, "fineweb_val_*.bin")
    tokens = load_val_tokens(pattern, hp.train_seq_len, hp.vocab_size)
    if hp.val_bytes_path:
        token_bytes = load_token_bytes_sidecar(hp.val_bytes_path, tokens.numel())
        log(f"val_bytes:sidecar pattern={hp.val_bytes_path}")
    else:
        token_bytes = token_bytes_from_luts(tokens, build_byte_luts(sp, hp.vocab_size))
    sample, docs = info.get("val_sample"), len(val_documents(tokens))
    log(f"val_loader:shards pattern={pattern} tokens:{tokens.numel()} documents:{docs}")
    batches = -(-docs // hp.ttt_batch_size)  # a dev subset past them would score nothing, after training
    if hp.ttt_enabled and knob_list(hp, "ttt_eval_batches")[-1:] > [batches - 1]:
        raise HyperparameterError(f"TTT_EVAL_BATCHES: the val split has {batches} TTT batches")
    log(f"val_tokens: {tokens.numel() - 1}")  # every target the split holds; reviewers compare it across runs
    if sample:
        log(f"val_sample: {sample}: every score below is partial")
    log(f"target_tokens: {tokens.numel() - 1}")  # the targets every eval mode scores, the tail included
    return ValidationData(tokens, token_bytes, partial=bool(sample))

def export_label(hp: Hyperparameters) -> str:
    """int8_zlib for the baseline export (its log lines keep the official names), e.g. int6_brotli now."""
    return f"int{8 if hp.quant_method == 'int8' else hp.matrix_bits}_{hp.compressor}"

def shipped_code(hp: Hyperparameters, log: Logger) -> tuple[int, bytes | None]:
    """The size of the code the run uses (this file and the optional modules it imports) and the one counted, the
    shipped form (CODE_PACKING): its bytes and the packed stub to write (None when the raw sources ship)."""
    # a module served from a packed stub has no file of its own: the stub, this run's __file__, holds it
    files = {"train_gpt": __file__} | {name: getattr(optional_module(name, hp), "__file__", None)
                                       for name in OPTIONAL_MODULES}
    modules = {name: Path(file).read_text(encoding="utf-8") for name, file in files.items() if file}
    raw = sum(len(source.encode()) for source in modules.values())
    log(f"Code size (uncompressed): {raw} bytes")
    if hp.code_packing == "raw":
        return raw, None
    source = modules.pop("train_gpt")  # a stub ships as it is; a source is packed by train_gpt_tools.py
    packed = (source if source.startswith(PACKED_STUB_PREFIX) else source_tools().packed_code(source, modules)).encode()
    log(f"Code size (compressed): {len(packed)} bytes")
    return len(packed), packed

def quantize_for_export(model: GPT, hp: Hyperparameters, rt: Runtime, log: Logger) -> dict:
    """GPTQ reads training tokens, so its Hessian pass must fit in GPTQ_RESERVE_SECONDS (#677, #1868)."""
    hessians, t0 = {}, time.perf_counter()
    if hp.quant_method == "gptq":
        hessians = collect_hessians(model, calibration_batches(model, hp, rt), rt)
        seconds = time.perf_counter() - t0
        log(f"GPTQ:collected {len(hessians)} Hessians in {seconds:.1f}s")
        if hp.gptq_calibration == "train" and hp.max_wallclock_seconds > 0 and seconds > hp.gptq_reserve_seconds:
            log(f"warning: the Hessian pass took {seconds:.1f}s > GPTQ_RESERVE_SECONDS={hp.gptq_reserve_seconds:g}: "
                "it read training data past the budget; raise the reserve")
    t1 = time.perf_counter()
    quantized = quantize_state_dict(model.state_dict(), hp, hessians)
    log(f"quantize_wallclock:{time.perf_counter() - t1:.1f}s")
    return quantized

# `sha256sum -c` format, renamed after the set's files: a kill -9 between renames leaves the previous listing,
# which the replaced files no longer match (EVAL_ONLY_PATH, train_gpt_longrun.check_output_set, and records/tool.py
# check refuse such a mixed set).
OUTPUT_SUMS = "outputs.sha256"

def output_sums(outputs: dict[Path, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {p.name}\n" for p, data in outputs.items()).encode()

def artifact_path(hp: Hyperparameters) -> Path:
    return Path(hp.artifact_dir) / f"final_model.{export_label(hp).split('_')[0]}.ptz"

def export_outputs(model: GPT, hp: Hyperparameters, rt: Runtime, log: Logger) -> tuple[dict[Path, bytes], int]:
    """Rank 0's export files (checkpoint, artifact, packed code, sha256 listing last) and the bytes under the cap."""
    out_dir, label, state = Path(hp.artifact_dir), export_label(hp).replace("_", "+"), model.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    log(f"Serialized model: {buf.tell()} bytes")
    quantized, t0 = quantize_for_export(model, hp, rt, log), time.perf_counter()
    blob = pack_artifact(quantized, hp.model_config(), hp.compressor, rans_groups(quantized, hp.rans_coding))
    log(f"serialize_wallclock:{time.perf_counter() - t0:.1f}s")
    code_bytes, packed = shipped_code(hp, log)
    outputs = {out_dir / "final_model.pt": buf.getvalue(), artifact_path(hp): blob}
    if packed is not None:
        outputs[out_dir / "train_gpt_packed.py"] = packed
    outputs[out_dir / OUTPUT_SUMS] = output_sums(outputs)  # renamed last: see OUTPUT_SUMS
    raw_bytes, total = sum(t.numel() * t.element_size() for t in state.values()), len(blob) + code_bytes
    log(f"Code size: {code_bytes} bytes")
    log(f"Serialized model {label}: {len(blob)} bytes (raw:{raw_bytes} ratio:{raw_bytes / len(blob):.2f}x)")
    log(f"Total submission size {label}: {total} bytes")
    log(f"budget:total code:{code_bytes} model:{len(blob)} total:{total} cap:{ARTIFACT_CAP_BYTES} "
        f"headroom:{ARTIFACT_CAP_BYTES - total}")  # per tensor group: scripts/budget.py
    return outputs, total

def export_artifact(model: GPT, hp: Hyperparameters, rt: Runtime, log: Logger) -> Path:
    """Finite weights and the cap checked on every rank; rank 0's outputs then replace the previous ones together."""
    start, path = time.perf_counter(), artifact_path(hp)
    bad = [name for name, t in model.state_dict().items() if not bool(torch.isfinite(t).all())]
    if bad:  # every rank holds the same weights: all refuse together
        raise ArtifactError(f"non-finite weights in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}: "
                            "nothing exported")
    outputs, total = export_outputs(model, hp, rt, log) if rt.is_main else ({}, 0)
    total = int(all_reduce_(torch.tensor(float(total), dtype=torch.float64, device=rt.device), rt).item())
    if total > ARTIFACT_CAP_BYTES:
        msg = f"artifact is {total} bytes, over the {ARTIFACT_CAP_BYTES}-byte cap by {total - ARTIFACT_CAP_BYTES}: " \
              "nothing written"
        log(f"error: {msg}")
        raise ArtifactError(msg)
    why = write_on_all_ranks(functools.partial(atomic_write_files, outputs) if rt.is_main else None, rt, "on rank 0")
    if why is not None:
        raise ArtifactError(f"could not write the outputs to {hp.artifact_dir} ({why}); the previous ones are "
                            "untouched")
    RUN_STATE["artifact"] = path
    log(f"artifact_production_wallclock:{time.perf_counter() - start:.1f}s")
    return path

def load_artifact_into(model: GPT, path: Path, hp: Hyperparameters) -> None:
    quantized, config = unpack_artifact(Path(path).read_bytes())
    check_artifact_config(config, hp)
    model.load_state_dict(dequantize_state_dict(quantized), strict=True)

def weights_crc32(model: nn.Module) -> int:
    crc = 0
    for t in model.state_dict().values():
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return crc

def prepare_models(hp: Hyperparameters, rt: Runtime) -> Models:
    raw_model = build_model(hp, rt.device)
    compiled = torch_compile(raw_model, dynamic=False, fullgraph=True) if compiles(hp, rt) else raw_model
    cuda_rank = [rt.local_rank] if rt.device.type == "cuda" else None
    return Models(raw_model, compiled, DDP(compiled, device_ids=cuda_rank) if rt.distributed else compiled)

def startup_checks(hp: Hyperparameters, rt: Runtime, model: nn.Module) -> tuple[int, int]:
    """What would fail minutes in: modules, packages, outputs, train shards (whole, in the vocabulary)."""
    for name in OPTIONAL_MODULES:  # the modules the knobs ask for are at hand (a packed stub may lack them)
        optional_module(name, hp)
    if rt.is_main:
        check_output_dir(Path(hp.artifact_dir), model)
        lock_output_dir(Path(hp.artifact_dir))
        if hp.eval_summary_json:  # written after the whole eval: a bad path must fail now
            summary = Path(hp.eval_summary_json)
            if summary.is_dir():
                raise DataError(f"EVAL_SUMMARY_JSON={summary} is a directory")
            check_writable(summary.parent, f"EVAL_SUMMARY_JSON={summary}: its folder")
    if hp.eval_only_path:
        return 0, 0
    if hp.attn_backend == "flex" and rt.device.type != "cuda":  # no FlexAttention backward: the warm-up would fail
        raise HyperparameterError("ATTN_BACKEND=flex trains on CUDA only; on a CPU use auto or sdpa")
    codec(hp.compressor)  # the export's packages import now, not after training
    if hp.code_packing == "brotli" and not Path(__file__).read_text(encoding="utf-8").startswith(PACKED_STUB_PREFIX):
        codec("brotli")  # the code packer's (a stub ships as it is)
        source_tools()
        require_module("python_minifier")
    return check_train_shards(train_pattern(hp), hp.vocab_size)

def check_output_dir(out: Path, model: nn.Module) -> None:
    """Before training: ARTIFACT_DIR takes files and has room for the checkpoint, the artifact and their temps."""
    check_writable(out, f"ARTIFACT_DIR={out}")
    need = 2 * sum(t.numel() * t.element_size() for t in model.state_dict().values()) + 2 * ARTIFACT_CAP_BYTES
    free = shutil.disk_usage(out).free
    if free < need:
        raise DataError(f"ARTIFACT_DIR={out} has {free >> 20} MiB free; the outputs need about {need >> 20} MiB")

def check_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_probe.{os.getpid()}.tmp"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as e:
        raise DataError(f"{what} is not writable ({e.strerror})") from None

OUTPUT_LOCKS: dict[str, int] = {}  # ARTIFACT_DIRs this process holds: the lock lives as long as the process

def lock_output_dir(out: Path) -> None:
    """Flock ARTIFACT_DIR so two live runs cannot mix logs or outputs; the kernel drops it when the run dies."""
    key = os.path.realpath(out)
    if key in OUTPUT_LOCKS:
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataError(f"ARTIFACT_DIR={out} is in use by another live run: give this run its own "
                        "ARTIFACT_DIR") from None
    OUTPUT_LOCKS[key] = fd

def compiled_graphs() -> int:
    """Graphs torch.compile has built so far: a rise during the timed loop is a recompile (pitfall a5)."""
    dynamo = sys.modules.get("torch._dynamo")  # not imported: nothing compiled
    return int(dynamo.utils.counters["stats"]["unique_graphs"]) if dynamo else 0

def score_artifact(models: Models, path: Path, val: ValidationData, hp: Hyperparameters, rt: Runtime, log) -> float:
    """What a grader runs: the artifact from disk, the round trip, every eval stage (the last _exact line counts)."""
    start, timers = time.perf_counter(), {}
    RUN_STATE["stage"] = f"the eval of {path} (round trip)"
    with timed(timers, "decompress"):
        load_artifact_into(models.raw, path, hp)
        synchronize(rt)
    with timed(timers, "roundtrip"):
        val_loss, val_bpb = eval_val(models.eval, val, hp, rt)
    first = stage_row(f"final_{export_label(hp)}_roundtrip{'_partial' if val.partial else ''}", val_loss, val_bpb,
                      val.tokens.numel() - 1, val.token_bytes[1:].sum(), timers["roundtrip"], log)
    RUN_STATE["stage"] = f"the eval stages of {path}"
    rows, stage_timers = eval_stages(models.raw, val, hp, rt, log)
    timers.update(stage_timers, total=time.perf_counter() - start)
    log("eval_timers: " + " ".join(f"{k}:{v:.1f}s" for k, v in timers.items()))
    log(f"total_eval_time:{timers['total']:.1f}s")
    if timers["total"] > hp.eval_budget_seconds:
        log(f"warning: total_eval_time > EVAL_BUDGET_SECONDS={hp.eval_budget_seconds:g} (records count ttt only)")
    if hp.eval_summary_json and rt.is_main:
        summary = dict(artifact=str(path), world_size=rt.world_size, stages=[first] + rows, timers=timers,
                       hyperparameters={f.name: getattr(hp, f.name) for f in fields(hp)})
        try:
            atomic_write_bytes(Path(hp.eval_summary_json), json.dumps(summary, indent=1).encode())
        except OSError as e:
            raise OutputError(f"could not write EVAL_SUMMARY_JSON={hp.eval_summary_json} ({e.strerror}); "
                              "the log has every stage") from None
    return ([first] + rows)[-1]["val_bpb"]

def main() -> None:
    RUN_STATE.clear()
    RUN_STATE["stage"] = "startup"
    hp = Hyperparameters.from_env()
    if hp.eval_only_path:  # a separate kind of run: train_gpt_longrun reads the model knobs from the artifact
        hp = long_run(hp).eval_only_hyperparameters(hp, os.environ)
    rt = init_runtime(hp)
    run_id = hp.run_id or str(uuid.uuid4())
    log = Logger(Path(hp.artifact_dir) / "logs" / f"{run_id}.txt" if rt.is_main else None)
    log_header(hp, rt, log)
    val = load_validation(hp, rt, log)
    models = prepare_models(hp, rt)
    num_shards, train_tokens = startup_checks(hp, rt, models.raw)
    log.open_file()  # the startup checks (knobs, data, tokenizer, model, outputs) passed
    log(f"model_params:{sum(p.numel() for p in models.raw.parameters())}")
    if hp.eval_only_path:
        log(f"eval_only: {hp.eval_only_path} (model knobs from its header)")
        score_artifact(models, Path(hp.eval_only_path), val, hp, rt, log)
        return
    log(f"train_loader:dataset:{Path(hp.data_path).name} train_shards:{num_shards} tokens:{train_tokens}")
    log(f"train_shards: {num_shards}")  # the records' fingerprint line (#2127 audit: 80 for the official export)
    if hp.max_wallclock_seconds > 0:
        log(f"gptq:reserving {hp.gptq_reserve_seconds:g}s, effective={training_cap_ms(hp):.0f}ms")
    checkpoint = long_run(hp).read_checkpoint(hp, rt) if hp.resume_from else None
    optimizers = build_optimizers(models.raw, hp, rt)
    RUN_STATE["stage"] = "the compile warm-up"
    compile_warmup_and_restore(models, optimizers, hp, rt, log)
    graphs = compiled_graphs()
    loop = train(models, optimizers, val, hp, rt, log, checkpoint)
    log(f"compile:graphs_before_training:{graphs} graphs_built_while_training:{compiled_graphs() - graphs}")
    trained_crc = weights_crc32(models.raw)
    if rt.device.type == "cuda":
        log(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
            f"reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")
    RUN_STATE["stage"] = "the export"
    val_bpb = score_artifact(models, export_artifact(models.raw, hp, rt, log), val, hp, rt, log)
    # Every rank reports, so a desynchronized replica or stop step is visible, not averaged away.
    switches = ",".join(map(str, loop.switches)) or "-"
    sys.stdout.write(f"rank_summary rank:{rt.rank}/{rt.world_size} stop_step:{loop.step} plan_switches:{switches} "
                     f"val_bpb:{val_bpb:.8f} trained_weights_crc32:{trained_crc:08x}\n")  # one write: no interleaving
    sys.stdout.flush()

USAGE = "usage: [ENV=value ...] python train_gpt.py (or torchrun --nproc_per_node=N train_gpt.py); knobs (env vars):\n"

def run_cli() -> int:
    """Clear one-line errors for bad input (exit 2), not tracebacks."""
    if sys.argv[1:] and not {"-h", "--help"} & set(sys.argv[1:]):
        print(f"error: train_gpt.py takes no arguments ({' '.join(sys.argv[1:])}): knobs are env vars, see --help",
              file=sys.stderr)
        return 2
    try:
        if sys.argv[1:]:  # -h or --help: anything else was refused above
            print(USAGE + source_tools().knob_table(Path(__file__).read_text(encoding="utf-8")))
            return 0
        main()
        if dist.is_initialized():
            dist.barrier()  # no rank tears down gloo's sockets while another still uses them (SIGABRT at exit)
            dist.destroy_process_group()
    except (HyperparameterError, DataError, ArtifactError, TrainingError, OutputError) as e:
        report_error(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        report_error(f"error: {interrupted()}")
        return 130
    except OSError as e:  # a fault no check foresaw (a full disk): still one line
        report_error(f"error: {e}")
        return 1
    return 0

def interrupted() -> str:
    """Where Ctrl-C stopped the run and what it leaves (files are only ever replaced whole)."""
    where = RUN_STATE["stage"]
    if where == "training":
        where = f"training at step {RUN_STATE['loop'].step}"
    kept = [f"{k} {RUN_STATE[k]}" for k in ("checkpoint", "artifact") if k in RUN_STATE]
    return (f"interrupted (Ctrl-C) during {where}; kept: {', '.join(kept) or 'no new output'} (earlier outputs "
            "are whole)")

def report_error(line: str) -> None:
    """Rank 0 prints the line; under torchrun each rank also writes its elastic error file for torchrun's summary."""
    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0:
        print(line, file=sys.stderr, flush=True)
    if error_file := os.environ.get("TORCHELASTIC_ERROR_FILE"):
        record = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
        Path(error_file).write_text(json.dumps(record))
        if not rank0:  # torchrun stops all ranks once one exits: rank 0, a moment behind on one check, prints first
            time.sleep(5)

if __name__ == "__main__":
    code = run_cli()
    sys.stdout.flush()
    sys.stderr.flush()
    # no interpreter teardown: under torchrun a torch thread taking the GIL there aborts the rank ~1 run in 30
    os._exit(code)
