"""
train_gpt.py: one-file training stack for OpenAI's Parameter Golf.

Trains a GPT whose artifact (this file's bytes + the compressed weights) must fit in 16,000,000 bytes,
within 600 s on 8xH100, and scores it in bits per byte (val_bpb) on the FineWeb validation split,
exactly as the official baseline defines it. The same code runs on 8 GPUs, one GPU or a laptop CPU:
    torchrun --standalone --nproc_per_node=8 train_gpt.py     # 8xH100, NCCL
    python train_gpt.py                                        # one process, CUDA or CPU
    torchrun --standalone --nproc_per_node=2 train_gpt.py     # CPU processes talk over gloo
Every knob is an environment variable (see Hyperparameters); all resolved values are logged.

Artifact: final_model.int8.ptz = our own container (magic, version, compressor id, CRC32) around a
JSON header and raw arrays, so loading never unpickles and a corrupt file fails loudly.

Sections, in data-flow order: hyperparameters, runtime, data, metric (exact BPB), model, optimizer,
training, quantization and artifact, evaluation, main. Budget: about 2,500 readable lines.
"""

import copy
import difflib
import glob
import io
import json
import math
import os
import struct
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

ARTIFACT_CAP_BYTES = 16_000_000  # decimal bytes: code + compressed model (challenge rule)

# -----------------------------------------------------------------------------------------------
# HYPERPARAMETERS
# Every knob is an env var named like its field in upper case. Defaults are the official baseline
# (9x512, sp1024, 600 s on 8xH100); small runs override by env. Malformed values, unknown choices
# and near-miss spellings of knob names fail at startup with the variable's name.
# -----------------------------------------------------------------------------------------------


def knob(default, doc: str, choices: tuple = (), model: bool = False):
    """One env-var knob: default, one-line meaning, allowed values; model=True if it shapes weights."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "model": model})


@dataclass(frozen=True)
class Hyperparameters:
    # data
    data_path: str = knob("./data/datasets/fineweb10B_sp1024", "dir with fineweb_{train,val}_*.bin shards")
    tokenizer_path: str = knob("./data/tokenizers/fineweb_1024_bpe.model", "SentencePiece model for byte LUTs")
    val_bytes_path: str = knob("", "glob of per-val-token byte sidecar shards (transformed tokenizers)")
    run_id: str = knob("", "name of the log file logs/<RUN_ID>.txt; empty = random uuid")
    artifact_dir: str = knob(".", "where logs/ and final_model.* are written")
    seed: int = knob(1337, "seed for weights and any sampling")
    # validation cadence
    val_batch_size: int = knob(524_288, "val tokens per forward across all ranks and accumulation steps")
    val_loss_every: int = knob(1000, "validate every N steps (0 = only at the end)")
    train_log_every: int = knob(200, "log the train loss every N steps (and the first 10)")
    # training length
    iterations: int = knob(20_000, "max optimizer steps")
    warmdown_iters: int = knob(1200, "linear LR decay over the last N steps (wallclock-projected)")
    warmup_steps: int = knob(20, "compile warm-up steps, after which weights/optimizer/loader are reset")
    train_batch_tokens: int = knob(524_288, "tokens per optimizer step across all ranks")
    train_seq_len: int = knob(1024, "training and eval sequence length")
    max_wallclock_seconds: float = knob(600.0, "training time cap, eval excluded (<= 0: no cap)")
    # model shape
    vocab_size: int = knob(1024, "token vocabulary; must equal the tokenizer's", model=True)
    num_layers: int = knob(9, "transformer blocks", model=True)
    model_dim: int = knob(512, "residual width", model=True)
    num_heads: int = knob(8, "query heads", model=True)
    num_kv_heads: int = knob(4, "key/value heads (GQA)", model=True)
    mlp_mult: float = knob(2.0, "MLP hidden width = MLP_MULT * MODEL_DIM", model=True)
    tie_embeddings: bool = knob(True, "share the input embedding with the output head", model=True)
    rope_base: float = knob(10_000.0, "RoPE base frequency", model=True)
    logit_softcap: float = knob(30.0, "logits = c * tanh(z / c)", model=True)
    qk_gain_init: float = knob(1.5, "initial per-head gain on RMS-normed queries")
    tied_embed_init_std: float = knob(0.005, "std of the tied embedding init")
    # optimizer
    embed_lr: float = knob(0.6, "Adam LR of an untied input embedding")
    head_lr: float = knob(0.008, "Adam LR of an untied output head")
    tied_embed_lr: float = knob(0.05, "Adam LR of the tied embedding")
    matrix_lr: float = knob(0.04, "Muon LR of the block matrices")
    scalar_lr: float = knob(0.04, "Adam LR of gains, mixes and skip weights")
    muon_momentum: float = knob(0.95, "Muon momentum after warm-up")
    muon_backend_steps: int = knob(5, "Newton-Schulz iterations")
    muon_momentum_warmup_start: float = knob(0.85, "Muon momentum at step 0")
    muon_momentum_warmup_steps: int = knob(500, "steps of linear momentum warm-up")
    beta1: float = knob(0.9, "Adam beta1")
    beta2: float = knob(0.95, "Adam beta2")
    adam_eps: float = knob(1e-8, "Adam epsilon")
    grad_clip_norm: float = knob(0.0, "global grad-norm clip (0 = off)")
    # runtime
    compile: str = knob("auto", "torch.compile the model: auto = on for CUDA", choices=("auto", "0", "1"))
    autocast: str = knob("auto", "bf16 autocast: auto = CUDA or a CPU with native bf16", choices=("auto", "bf16", "off"))

    @classmethod
    def from_env(cls, environ=None) -> "Hyperparameters":
        environ = os.environ if environ is None else environ
        check_knob_spelling(environ)
        values = {}
        for f in fields(cls):
            raw = environ.get(f.name.upper())
            if raw is not None:
                values[f.name] = parse_knob(f.name.upper(), raw, type(f.default), f.metadata["choices"])
        hp = cls(**values)
        hp.validate()
        return hp

    def validate(self) -> None:
        def require(ok: bool, msg: str):
            if not ok:
                raise HyperparameterError(msg)

        require(self.model_dim % self.num_heads == 0, "MODEL_DIM must be divisible by NUM_HEADS")
        require(self.num_heads % self.num_kv_heads == 0, "NUM_HEADS must be divisible by NUM_KV_HEADS")
        require((self.model_dim // self.num_heads) % 2 == 0, "head dim (MODEL_DIM/NUM_HEADS) must be even for RoPE")
        for name in ("vocab_size", "num_layers", "train_seq_len", "train_batch_tokens", "val_batch_size"):
            require(getattr(self, name) > 0, f"{name.upper()} must be positive")
        require(self.iterations >= 0 and self.warmup_steps >= 0, "ITERATIONS and WARMUP_STEPS must be >= 0")
        # 8 = ranks x accumulation steps at any world size, and every micro-batch holds whole sequences.
        require(self.train_batch_tokens % (8 * self.train_seq_len) == 0,
                "TRAIN_BATCH_TOKENS must be a multiple of 8 * TRAIN_SEQ_LEN")

    def model_config(self) -> dict:
        """The knobs that shape the weights: stored in the artifact and checked on load."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["model"]}


class HyperparameterError(ValueError):
    pass


# Env vars that belong to the launcher, not to us, even if they resemble a knob name.
LAUNCHER_ENV = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "OMP_NUM_THREADS"}


def parse_knob(name: str, raw: str, kind: type, choices: tuple):
    try:
        if kind is bool:
            value = {"1": True, "true": True, "0": False, "false": False}[raw.strip().lower()]
        else:
            value = kind(raw.strip())
    except (KeyError, ValueError):
        raise HyperparameterError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if choices and value not in choices:
        raise HyperparameterError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


def check_knob_spelling(environ) -> None:
    """A typo like MODEL_DIMS would otherwise be ignored silently and the run would use the default."""
    knobs = [f.name.upper() for f in fields(Hyperparameters)]
    for key in environ:
        if key in knobs or key in LAUNCHER_ENV:
            continue
        close = difflib.get_close_matches(key, knobs, n=1, cutoff=0.88)
        if close:
            raise HyperparameterError(f"{key} is not a knob of train_gpt.py; did you mean {close[0]}?")


def describe_hyperparameters(hp: Hyperparameters) -> list[str]:
    return ["hyperparameters:"] + [f"  {f.name.upper()}={getattr(hp, f.name)}" for f in fields(hp)]


# -----------------------------------------------------------------------------------------------
# RUNTIME
# Distributed setup lives here and in two other places only: Muon's update all-reduce and the
# metric reducer. World size 1 is the plain path: no torchrun, no process group.
# -----------------------------------------------------------------------------------------------


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
    def grad_accum_steps(self) -> int:
        # The baseline's global batch is defined for 8 ranks; fewer ranks accumulate to match it.
        return 8 // self.world_size


def init_runtime(hp: Hyperparameters) -> Runtime:
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if 8 % world_size != 0:
        raise HyperparameterError(f"WORLD_SIZE={world_size} must divide 8 (grad accumulation keeps the batch)")
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    native_bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    autocast = hp.autocast == "bf16" or (hp.autocast == "auto" and native_bf16)
    return Runtime(rank, world_size, local_rank, device, autocast)


def all_reduce_(tensor: Tensor, rt: Runtime, op=dist.ReduceOp.SUM) -> Tensor:
    if rt.distributed:
        dist.all_reduce(tensor, op=op)
    return tensor


def autocast_context(rt: Runtime):
    return torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16, enabled=rt.autocast)


def synchronize(rt: Runtime) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()


class Logger:
    """Rank 0 prints and appends to logs/<RUN_ID>.txt; other ranks stay silent."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str, console: bool = True) -> None:
        if self.path is None:
            return
        if console:
            print(msg, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -----------------------------------------------------------------------------------------------
# DATA
# Official shard format: 256 little-endian int32 (magic 20240520, version 1, token count N), then N
# uint16 tokens. Training streams shards in order and wraps; each rank reads a disjoint span of
# every global batch. Validation is the whole fineweb_val_* split, never touched during training.
# -----------------------------------------------------------------------------------------------

SHARD_MAGIC, SHARD_VERSION, SHARD_HEADER_BYTES = 20240520, 1, 256 * 4


class DataError(ValueError):
    pass


def read_shard(path: str | Path) -> Tensor:
    """Tokens of one shard as a uint16 tensor; any disagreement with the header is an error."""
    path = Path(path)
    size = path.stat().st_size
    if size < SHARD_HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes is shorter than the {SHARD_HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=256)
    if header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise DataError(f"{path}: bad shard header (magic {header[0]}, version {header[1]}; "
                        f"expected {SHARD_MAGIC}, {SHARD_VERSION})")
    num_tokens = int(header[2])
    expected = SHARD_HEADER_BYTES + 2 * num_tokens
    if size != expected:
        raise DataError(f"{path}: header says {num_tokens} tokens ({expected} bytes) but the file has "
                        f"{size} bytes: truncated or corrupt shard")
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=SHARD_HEADER_BYTES)
    return torch.from_numpy(tokens.astype(np.int32))


def shard_paths(pattern: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise DataError(f"no files match {pattern}")
    return paths


class TokenStream:
    """Endless sequential read over the shards; take(n) returns the next n tokens."""

    def __init__(self, pattern: str):
        self.paths = shard_paths(pattern)
        self.file_index = 0
        self.tokens = read_shard(self.paths[0])
        self.pos = 0

    def _next_file(self) -> None:
        self.file_index = (self.file_index + 1) % len(self.paths)
        self.tokens = read_shard(self.paths[self.file_index])
        self.pos = 0

    def take(self, n: int) -> Tensor:
        chunks = []
        while n > 0:
            if self.pos >= self.tokens.numel():
                self._next_file()
            k = min(n, self.tokens.numel() - self.pos)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            n -= k
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


class TrainLoader:
    """Each call consumes one micro-batch of the global stream; rank r gets the r-th disjoint span."""

    def __init__(self, pattern: str, rt: Runtime):
        self.stream = TokenStream(pattern)
        self.rt = rt

    def next_batch(self, global_tokens: int, seq_len: int) -> tuple[Tensor, Tensor]:
        local_tokens = global_tokens // (self.rt.world_size * self.rt.grad_accum_steps)
        span = local_tokens + 1  # +1: targets are the inputs shifted by one
        chunk = self.stream.take(span * self.rt.world_size)
        local = chunk[self.rt.rank * span : (self.rt.rank + 1) * span].to(torch.int64)
        x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
        return x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True)


def load_val_tokens(pattern: str, seq_len: int, vocab_size: int) -> tuple[Tensor, int]:
    """All val tokens, trimmed to whole sequences (+1 for the last target) as the baseline does.

    Returns the trimmed stream and the full length, so the log can say how many were left out."""
    tokens = torch.cat([read_shard(p) for p in shard_paths(pattern)])
    if tokens.numel() <= seq_len:
        raise DataError(f"validation split {pattern} has {tokens.numel()} tokens, fewer than one sequence")
    max_id = int(tokens.max())
    if max_id >= vocab_size:
        raise DataError(f"validation token id {max_id} >= VOCAB_SIZE {vocab_size}: shards and vocab disagree")
    usable = (tokens.numel() - 1) // seq_len * seq_len
    return tokens[: usable + 1], tokens.numel()


# -----------------------------------------------------------------------------------------------
# METRIC (exact BPB)
# Tokenizer-agnostic score: bits of the model's NLL per UTF-8 byte of the text. Bytes per target
# token come from SentencePiece LUTs (control/unknown/unused = 0 bytes and a boundary; byte-fallback
# = 1; a piece's leading "▁" adds one space byte only after a non-boundary token), or from a per-token
# sidecar for transformed tokenizers. Sums are float64 and all-reduced. Nothing else counts bytes.
# -----------------------------------------------------------------------------------------------


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
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1  # "<0xE2>" stands for one raw byte, whatever its printed name
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i], piece = True, piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteLUTs(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def load_tokenizer(path: str, vocab_size: int) -> spm.SentencePieceProcessor:
    if not Path(path).is_file():
        raise DataError(f"tokenizer {path} not found")
    sp = spm.SentencePieceProcessor(model_file=path)
    if sp.vocab_size() != vocab_size:
        raise DataError(f"tokenizer {path} has {sp.vocab_size()} pieces but VOCAB_SIZE={vocab_size}")
    if sp.piece_to_id("\u2581") == sp.unk_id():
        raise DataError(f"tokenizer {path} has no standalone '\u2581' piece: spaces would be counted as 3 "
                        "byte-fallback bytes (pg #897)")
    return sp


def token_bytes_from_luts(tokens: Tensor, luts: ByteLUTs) -> Tensor:
    """Bytes each token adds to the text when it is the target; position 0 follows nothing (a boundary)."""
    tokens = tokens.long()
    prev_is_boundary = torch.ones_like(tokens, dtype=torch.bool)
    prev_is_boundary[1:] = luts.is_boundary[tokens[:-1]]
    return luts.base_bytes[tokens] + (luts.has_leading_space[tokens] & ~prev_is_boundary).to(torch.int16)


def load_token_bytes_sidecar(pattern: str, num_tokens: int) -> Tensor:
    """Per-token original-byte counts written next to transformed val shards (same shard format)."""
    counts = torch.cat([read_shard(p) for p in shard_paths(pattern)])
    if counts.numel() < num_tokens:
        raise DataError(f"byte sidecar {pattern} has {counts.numel()} entries for {num_tokens} val tokens")
    return counts[:num_tokens].to(torch.int16)


@dataclass(frozen=True)
class ValidationData:
    tokens: Tensor  # int32 [N+1]: whole sequences of the val stream plus one final target
    token_bytes: Tensor  # int16 [N+1]: bytes token i adds when it is a target
    total_tokens: int  # length of the untrimmed split


class BpbMeter:
    """Accumulates NLL (nats), scored tokens and bytes in float64; every eval path feeds one."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, bytes

    def add(self, token_nll: Tensor, target_bytes: Tensor) -> None:
        self.sums[0] += token_nll.double().sum()
        self.sums[1] += token_nll.numel()
        self.sums[2] += target_bytes.double().sum()

    def result(self, rt: Runtime) -> tuple[float, float]:
        nll, tokens, nbytes = all_reduce_(self.sums.clone(), rt).tolist()
        val_loss = nll / tokens
        return val_loss, val_loss / math.log(2.0) * tokens / nbytes


# -----------------------------------------------------------------------------------------------
# MODEL
# The baseline GPT: RMS-normed residual blocks with GQA attention (RoPE, RMS-normed q/k, learned
# per-head q gain), relu^2 MLP, a learned mix of the stream with the first embedding x0, per-channel
# attn/mlp scales, U-Net skips from the first half of the stack to the second, tied embeddings and a
# tanh logit soft-cap. Weights are fp32 masters cast to the compute dtype (CastedLinear).
# -----------------------------------------------------------------------------------------------


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """fp32 master weight, computed in the activation dtype (bf16 under autocast)."""

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=False)
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def rotary_tables(seq_len: int, head_dim: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return freqs.cos()[None, None], freqs.sin()[None, None]  # [1, 1, T, head_dim/2]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Half-split RoPE: rotate the pairs (j, j + d/2)."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, qk_gain_init: float):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, num_kv_heads * self.head_dim)
        self.c_v = CastedLinear(dim, num_kv_heads * self.head_dim)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(rms_norm(q), *rope), apply_rotary(rms_norm(k), *rope)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim))  # [B, T, D]


class MLP(nn.Module):
    def __init__(self, dim: int, mult: float):
        super().__init__()
        hidden = int(mult * dim)
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        dim = hp.model_dim
        self.attn = CausalSelfAttention(dim, hp.num_heads, hp.num_kv_heads, hp.qk_gain_init)
        self.mlp = MLP(dim, hp.mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))  # (stream, x0) weights

    def forward(self, x: Tensor, x0: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x), rope)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.hp = hp
        self.tok_emb = nn.Embedding(hp.vocab_size, hp.model_dim)
        self.blocks = nn.ModuleList(Block(hp) for _ in range(hp.num_layers))
        self.num_encoder = hp.num_layers // 2
        num_skips = min(self.num_encoder, hp.num_layers - self.num_encoder)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, hp.model_dim))
        self.lm_head = None if hp.tie_embeddings else CastedLinear(hp.model_dim, hp.vocab_size, zero_init=True)
        if hp.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, std=hp.tied_embed_init_std)

    def hidden(self, input_ids: Tensor) -> Tensor:
        x = self.tok_emb(input_ids)
        if not torch.is_autocast_enabled(x.device.type):
            x = x.float()  # the table is bf16; without autocast the stream stays fp32
        x = x0 = rms_norm(x)
        rope = rotary_tables(input_ids.size(1), self.hp.model_dim // self.hp.num_heads, self.hp.rope_base, x.device)
        skips = []
        for i, block in enumerate(self.blocks):
            if i >= self.num_encoder and skips:  # decoder half: add the mirrored encoder output
                x = x + self.skip_weights[i - self.num_encoder].to(x.dtype) * skips.pop()
            x = block(x, x0, rope)
            if i < self.num_encoder:
                skips.append(x)
        return rms_norm(x)

    def logits(self, h: Tensor) -> Tensor:
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        z = F.linear(h, weight.to(h.dtype)).float()
        return self.hp.logit_softcap * torch.tanh(z / self.hp.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor, reduction: str = "mean") -> Tensor:
        """Cross-entropy of the targets; reduction="none" gives per-token NLL for exact eval sums."""
        logits = self.logits(self.hidden(input_ids))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction=reduction)


def build_model(hp: Hyperparameters, device: torch.device) -> GPT:
    """fp32 masters everywhere except the embedding table, which the baseline keeps in bf16."""
    torch.manual_seed(hp.seed)
    model = GPT(hp).to(device)
    model.tok_emb.to(torch.bfloat16)
    return model


# -----------------------------------------------------------------------------------------------
# OPTIMIZER
# Muon (Keller Jordan, modded-nanogpt) orthogonalizes each block matrix's momentum with a
# Newton-Schulz iteration; ranks split the matrices round-robin and share updates through one
# all-reduce. Embeddings, head and the small control tensors use Adam.
# -----------------------------------------------------------------------------------------------


def newton_schulz(grad: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7) -> Tensor:
    """Approximate U V^T of grad = U S V^T with the quintic iteration of modded-nanogpt (bf16 on GPU)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = grad.to(dtype)
    x = x / (x.norm() + eps)
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int, rt: Runtime, nesterov: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))
        self.rt = rt
        self.dtype = torch.bfloat16 if rt.autocast else torch.float32  # CPUs without bf16 units: fp32 is faster

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = group["params"]
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=self.dtype)
            offset = 0
            for i, p in enumerate(params):
                if i % self.rt.world_size == self.rt.rank and p.grad is not None:
                    flat[offset : offset + p.numel()] = self._update(p, group).reshape(-1)
                offset += p.numel()
            all_reduce_(flat, self.rt)  # each matrix was computed by exactly one rank
            offset = 0
            for p in params:
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()

    def _update(self, p: Tensor, group: dict) -> Tensor:
        buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
        buf.mul_(group["momentum"]).add_(p.grad)
        g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
        g = newton_schulz(g, group["backend_steps"], self.dtype)
        return g * max(1.0, g.size(0) / g.size(1)) ** 0.5


def build_optimizers(model: GPT, hp: Hyperparameters, rt: Runtime) -> list[torch.optim.Optimizer]:
    """Routing table: block matrices -> Muon; embedding, head, control tensors -> Adam (own LRs)."""
    matrices = [m.weight for block in model.blocks for m in block.modules() if isinstance(m, CastedLinear)]
    matrix_ids = {id(p) for p in matrices}
    controls = [p for p in model.blocks.parameters() if id(p) not in matrix_ids] + [model.skip_weights]
    adam_groups = [
        (model.tok_emb.weight, hp.tied_embed_lr if hp.tie_embeddings else hp.embed_lr),
        *([(model.lm_head.weight, hp.head_lr)] if model.lm_head is not None else []),
    ]
    adam = dict(betas=(hp.beta1, hp.beta2), eps=hp.adam_eps, fused=rt.device.type == "cuda")
    optimizers = [torch.optim.Adam([{"params": [p], "lr": lr, "base_lr": lr}], **adam) for p, lr in adam_groups]
    optimizers.append(torch.optim.Adam([{"params": controls, "lr": hp.scalar_lr, "base_lr": hp.scalar_lr}], **adam))
    muon = Muon(matrices, hp.matrix_lr, hp.muon_momentum, hp.muon_backend_steps, rt)
    muon.param_groups[0]["base_lr"] = hp.matrix_lr
    return optimizers + [muon]


def muon_momentum_at(step: int, hp: Hyperparameters) -> float:
    frac = min(step / hp.muon_momentum_warmup_steps, 1.0) if hp.muon_momentum_warmup_steps > 0 else 1.0
    return (1 - frac) * hp.muon_momentum_warmup_start + frac * hp.muon_momentum


def lr_scale_at(step: int, elapsed_ms: float, hp: Hyperparameters) -> float:
    """Linear warm-down over the last WARMDOWN_ITERS steps, projected onto the wallclock cap when set."""
    if hp.warmdown_iters <= 0:
        return 1.0
    if hp.max_wallclock_seconds <= 0:
        start = max(hp.iterations - hp.warmdown_iters, 0)
        return max((hp.iterations - step) / hp.warmdown_iters, 0.0) if step >= start else 1.0
    warmdown_ms = hp.warmdown_iters * elapsed_ms / max(step, 1)
    remaining_ms = max(1000 * hp.max_wallclock_seconds - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


# -----------------------------------------------------------------------------------------------
# TRAINING
# The clock counts optimizer steps only: compile warm-up happens before it starts (and is then undone),
# and validation pauses it. Every rank checks the cap and the flags are MAX-reduced, so all ranks stop
# on the same step.
# -----------------------------------------------------------------------------------------------


def train_step(model: nn.Module, optimizers: list, loader: TrainLoader, hp: Hyperparameters, rt: Runtime,
               step: int, lr_scale: float) -> Tensor:
    """One optimizer step over grad_accum_steps micro-batches; returns the mean train loss."""
    total = torch.zeros((), device=rt.device)
    for micro in range(rt.grad_accum_steps):
        if isinstance(model, DDP):  # all-reduce gradients on the last micro-batch only
            model.require_backward_grad_sync = micro == rt.grad_accum_steps - 1
        x, y = loader.next_batch(hp.train_batch_tokens, hp.train_seq_len)
        with autocast_context(rt):
            loss = model(x, y)
        total += loss.detach()
        (loss / rt.grad_accum_steps).backward()
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
            if isinstance(opt, Muon):
                group["momentum"] = muon_momentum_at(step, hp)
    if hp.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip_norm)
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return total / rt.grad_accum_steps


def compile_warmup_and_restore(model, raw_model: GPT, optimizers, hp, rt, log) -> None:
    """Run WARMUP_STEPS real steps so torch.compile and the allocator settle, then restore the initial
    weights and optimizer state: the timed run starts from the true initialization (baseline rule)."""
    if hp.warmup_steps == 0:
        return
    weights = {k: v.detach().clone() for k, v in raw_model.state_dict().items()}
    opt_states = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
    loader = TrainLoader(os.path.join(hp.data_path, "fineweb_train_*.bin"), rt)
    for i in range(hp.warmup_steps):
        train_step(model, optimizers, loader, hp, rt, step=0, lr_scale=1.0)
        if hp.warmup_steps <= 20 or (i + 1) % 10 == 0 or i + 1 == hp.warmup_steps:
            log(f"warmup_step:{i + 1}/{hp.warmup_steps}")
    raw_model.load_state_dict(weights, strict=True)
    for opt, state in zip(optimizers, opt_states):
        opt.load_state_dict(state)


def train(model, eval_model, optimizers, val: ValidationData, hp, rt, log) -> int:
    """Runs until ITERATIONS or the wallclock cap; returns the number of steps taken."""
    loader = TrainLoader(os.path.join(hp.data_path, "fineweb_train_*.bin"), rt)
    cap_ms = 1000 * hp.max_wallclock_seconds if hp.max_wallclock_seconds > 0 else math.inf
    train_ms, step, stop_at = 0.0, 0, None
    synchronize(rt)
    t0 = time.perf_counter()
    while True:
        last = step == hp.iterations or step == stop_at
        if last or (hp.val_loss_every > 0 and step % hp.val_loss_every == 0):
            synchronize(rt)
            train_ms += 1000 * (time.perf_counter() - t0)
            val_loss, val_bpb = eval_val(eval_model, val, hp, rt)
            log(f"step:{step}/{hp.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms")
            synchronize(rt)
            t0 = time.perf_counter()
        if last:
            break
        elapsed_ms = train_ms + 1000 * (time.perf_counter() - t0)
        loss = train_step(model, optimizers, loader, hp, rt, step, lr_scale_at(step, elapsed_ms, hp))
        step += 1
        elapsed_ms = train_ms + 1000 * (time.perf_counter() - t0)
        if hp.train_log_every > 0 and (step <= 10 or step % hp.train_log_every == 0):
            log(f"step:{step}/{hp.iterations} train_loss:{loss.item():.4f} train_time:{elapsed_ms:.0f}ms "
                f"step_avg:{elapsed_ms / step:.2f}ms")
        reached = torch.tensor(float(elapsed_ms >= cap_ms), device=rt.device)
        if stop_at is None and all_reduce_(reached, rt, dist.ReduceOp.MAX).item() > 0:
            stop_at = step
    if stop_at is not None and step < hp.iterations:
        log(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{hp.iterations}")
    return step


# -----------------------------------------------------------------------------------------------
# QUANTIZATION AND ARTIFACT
# The score is taken after export, so the artifact is the model. Baseline export: large float
# matrices -> int8 with one fp16 scale per row (clipped at a high quantile), small tensors kept as
# they are. The container is ours: magic, version, compressor id and CRC32 around a JSON header and
# raw arrays; loading parses bytes only (no pickle) and checks the model config it was built for.
# -----------------------------------------------------------------------------------------------

ARTIFACT_MAGIC, ARTIFACT_VERSION = b"PGLF", 1
COMPRESSORS = {0: "zlib"}
INT8_KEEP_FLOAT_MAX_NUMEL = 65_536  # baseline: smaller tensors cost little and stay unquantized
INT8_CLIP_QUANTILE = 0.9999984  # baseline per-row clip; rare outliers would waste the int8 range


class ArtifactError(ValueError):
    pass


def quantize_int8_per_row(w: Tensor) -> dict[str, Tensor]:
    w = w.float()
    clip = torch.quantile(w.abs(), INT8_CLIP_QUANTILE, dim=1)
    # Round the scale to its stored fp16 value first, so quantization uses the scale the loader will see.
    scale = (clip / 127.0).clamp_min(1.0 / 127.0).to(torch.float16)
    q = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / scale.float()[:, None]), -127, 127)
    return {"q": q.to(torch.int8).contiguous(), "scale": scale.contiguous()}


def quantize_int8_per_tensor(w: Tensor) -> dict[str, Tensor]:
    w = w.float()
    clip = float(torch.quantile(w.abs().flatten(), INT8_CLIP_QUANTILE)) if w.numel() else 0.0
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0)
    q = torch.clamp(torch.round(torch.clamp(w, -clip, clip) / scale), -127, 127)
    return {"q": q.to(torch.int8).contiguous(), "scale": scale.to(torch.float32)}


def quantize_state_dict(state: dict[str, Tensor]) -> dict[str, tuple[str, str, dict[str, Tensor]]]:
    """name -> (scheme, original dtype, arrays). Schemes: raw | int8_row | int8_tensor."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        dtype = str(t.dtype).removeprefix("torch.")
        if not t.is_floating_point() or t.numel() <= INT8_KEEP_FLOAT_MAX_NUMEL:
            out[name] = ("raw", dtype, {"value": t})
        elif t.ndim == 2:
            out[name] = ("int8_row", dtype, quantize_int8_per_row(t))
        else:
            out[name] = ("int8_tensor", dtype, quantize_int8_per_tensor(t))
    return out


def dequantize_state_dict(quantized: dict[str, tuple[str, str, dict[str, Tensor]]]) -> dict[str, Tensor]:
    out = {}
    for name, (scheme, dtype, arrays) in quantized.items():
        if scheme == "raw":
            w = arrays["value"]
        elif scheme == "int8_row":
            w = arrays["q"].float() * arrays["scale"].float()[:, None]
        elif scheme == "int8_tensor":
            w = arrays["q"].float() * arrays["scale"].float()
        else:
            raise ArtifactError(f"tensor {name}: unknown quantization scheme {scheme!r}")
        out[name] = w.to(getattr(torch, dtype))
    return out


def pack_artifact(quantized: dict, model_config: dict, compressor: str = "zlib") -> bytes:
    entries, blobs, offset = [], [], 0
    for name, (scheme, dtype, arrays) in quantized.items():
        specs = {}
        for key, t in arrays.items():
            data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            specs[key] = [str(t.dtype).removeprefix("torch."), list(t.shape), offset, len(data)]
            blobs.append(data)
            offset += len(data)
        entries.append({"name": name, "scheme": scheme, "dtype": dtype, "arrays": specs})
    header = json.dumps({"config": model_config, "tensors": entries}).encode()
    payload = struct.pack("<I", len(header)) + header + b"".join(blobs)
    compressor_id = {v: k for k, v in COMPRESSORS.items()}[compressor]
    body = zlib.compress(payload, level=9)
    return ARTIFACT_MAGIC + struct.pack("<BBI", ARTIFACT_VERSION, compressor_id, zlib.crc32(body)) + body


def unpack_artifact(blob: bytes) -> tuple[dict, dict]:
    """Returns (quantized tensors, model config); every malformation raises ArtifactError."""
    if len(blob) < 10 or blob[:4] != ARTIFACT_MAGIC:
        raise ArtifactError("not a train_gpt.py artifact (bad magic or too short)")
    version, compressor_id, crc = struct.unpack("<BBI", blob[4:10])
    if version != ARTIFACT_VERSION or compressor_id not in COMPRESSORS:
        raise ArtifactError(f"unsupported artifact version {version} / compressor id {compressor_id}")
    body = blob[10:]
    if zlib.crc32(body) != crc:
        raise ArtifactError("artifact checksum mismatch: the file is truncated or corrupt")
    try:
        payload = zlib.decompress(body)
        (header_len,) = struct.unpack("<I", payload[:4])
        header = json.loads(payload[4 : 4 + header_len])
        data = memoryview(payload)[4 + header_len :]
        quantized = {}
        for e in header["tensors"]:
            arrays = {}
            for key, (dtype, shape, offset, nbytes) in e["arrays"].items():
                raw = torch.frombuffer(bytearray(data[offset : offset + nbytes]), dtype=torch.uint8)
                arrays[key] = raw.view(getattr(torch, dtype)).reshape(shape)
            quantized[e["name"]] = (e["scheme"], e["dtype"], arrays)
        return quantized, header["config"]
    except (zlib.error, struct.error, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise ArtifactError(f"artifact is malformed: {e}") from None


def check_artifact_config(stored: dict, hp: Hyperparameters) -> None:
    wanted = hp.model_config()
    diffs = [f"{k.upper()}={stored.get(k)!r} (run has {v!r})" for k, v in wanted.items() if stored.get(k) != v]
    if diffs:
        raise ArtifactError("artifact was built for another model config: " + ", ".join(diffs))


# -----------------------------------------------------------------------------------------------
# EVALUATION
# Plain eval: the trimmed val stream cut into TRAIN_SEQ_LEN rows, rows split evenly across ranks,
# every target scored exactly once under no_grad, sums reduced by BpbMeter.
# -----------------------------------------------------------------------------------------------


@torch.no_grad()
def eval_val(model: nn.Module, val: ValidationData, hp: Hyperparameters, rt: Runtime) -> tuple[float, float]:
    seq_len = hp.train_seq_len
    total_seqs = (val.tokens.numel() - 1) // seq_len
    first, last = total_seqs * rt.rank // rt.world_size, total_seqs * (rt.rank + 1) // rt.world_size
    batch_seqs = max(1, hp.val_batch_size // (rt.world_size * rt.grad_accum_steps * seq_len))
    meter = BpbMeter(rt.device)
    was_training = model.training
    model.eval()
    for s in range(first, last, batch_seqs):
        e = min(s + batch_seqs, last)
        window = val.tokens[s * seq_len : e * seq_len + 1].to(rt.device, torch.int64)
        x, y = window[:-1].reshape(-1, seq_len), window[1:].reshape(-1, seq_len)
        with autocast_context(rt):
            nll = model(x, y, reduction="none")
        meter.add(nll, val.token_bytes[s * seq_len + 1 : e * seq_len + 1].to(rt.device))
    model.train(was_training)
    return meter.result(rt)


# -----------------------------------------------------------------------------------------------
# MAIN
# setup -> data -> model -> warm-up -> train -> export -> reload the artifact -> score it.
# -----------------------------------------------------------------------------------------------


def log_header(hp: Hyperparameters, rt: Runtime, log: Logger) -> None:
    log(Path(__file__).read_text(encoding="utf-8"), console=False)
    log("=" * 100, console=False)
    log(f"Running Python {sys.version.split()[0]} PyTorch {torch.__version__} device:{rt.device.type}")
    if rt.device.type == "cuda":
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False).stdout
        log(smi, console=False)
    for line in describe_hyperparameters(hp):
        log(line)
    log(f"world_size:{rt.world_size} grad_accum_steps:{rt.grad_accum_steps} autocast_bf16:{int(rt.autocast)}")
    log(f"seed:{hp.seed}")


def load_validation(hp: Hyperparameters, rt: Runtime, log: Logger) -> ValidationData:
    sp = load_tokenizer(hp.tokenizer_path, hp.vocab_size)
    log(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={hp.tokenizer_path}")
    pattern = os.path.join(hp.data_path, "fineweb_val_*.bin")
    tokens, total = load_val_tokens(pattern, hp.train_seq_len, hp.vocab_size)
    if hp.val_bytes_path:
        token_bytes = load_token_bytes_sidecar(hp.val_bytes_path, tokens.numel())
        log(f"val_bytes:sidecar pattern={hp.val_bytes_path}")
    else:
        token_bytes = token_bytes_from_luts(tokens, build_byte_luts(sp, hp.vocab_size))
    log(f"val_loader:shards pattern={pattern} tokens:{total} scored_targets:{tokens.numel() - 1} "
        f"unscored_tail:{total - tokens.numel()}")
    return ValidationData(tokens, token_bytes, total)


def export_artifact(raw_model: GPT, hp: Hyperparameters, rt: Runtime, log: Logger) -> Path:
    """Rank 0 writes the raw checkpoint and the int8+zlib artifact; the size cap is enforced here."""
    out_dir = Path(hp.artifact_dir)
    path = out_dir / "final_model.int8.ptz"
    total = torch.zeros((), dtype=torch.float64, device=rt.device)
    if rt.is_main:
        state = raw_model.state_dict()
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(out_dir / "final_model.pt", buf.getvalue())
        blob = pack_artifact(quantize_state_dict(state), hp.model_config())
        atomic_write_bytes(path, blob)
        code_bytes = len(Path(__file__).read_bytes())
        raw_bytes = sum(t.numel() * t.element_size() for t in state.values())
        log(f"Serialized model: {buf.tell()} bytes")
        log(f"Code size: {code_bytes} bytes")
        log(f"Total submission size: {buf.tell() + code_bytes} bytes")
        log(f"Serialized model int8+zlib: {len(blob)} bytes (raw:{raw_bytes} ratio:{raw_bytes / len(blob):.2f}x)")
        log(f"Total submission size int8+zlib: {len(blob) + code_bytes} bytes")
        total += len(blob) + code_bytes
    total = int(all_reduce_(total, rt).item())  # also the barrier: the file exists for every rank after it
    if total > ARTIFACT_CAP_BYTES:
        msg = f"artifact is {total} bytes, over the {ARTIFACT_CAP_BYTES}-byte cap by {total - ARTIFACT_CAP_BYTES}"
        log(f"error: {msg}")
        raise ArtifactError(msg)
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


def prepare_model(hp: Hyperparameters, rt: Runtime) -> tuple[GPT, nn.Module, nn.Module]:
    """Three views of one set of weights: raw (state dicts), compiled (eval), compiled+DDP (training)."""
    raw_model = build_model(hp, rt.device)
    use_compile = hp.compile == "1" or (hp.compile == "auto" and rt.device.type == "cuda")
    compiled = torch.compile(raw_model, dynamic=False, fullgraph=True) if use_compile else raw_model
    model = compiled
    if rt.distributed:
        model = DDP(compiled, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    return raw_model, compiled, model


def main() -> None:
    hp = Hyperparameters.from_env()
    rt = init_runtime(hp)
    run_id = hp.run_id or str(uuid.uuid4())
    log = Logger(Path(hp.artifact_dir) / "logs" / f"{run_id}.txt" if rt.is_main else None)
    log_header(hp, rt, log)
    val = load_validation(hp, rt, log)
    train_pattern = os.path.join(hp.data_path, "fineweb_train_*.bin")
    log(f"train_loader:dataset:{Path(hp.data_path).name} train_shards:{len(shard_paths(train_pattern))}")

    raw_model, compiled, model = prepare_model(hp, rt)
    log(f"model_params:{sum(p.numel() for p in raw_model.parameters())}")
    optimizers = build_optimizers(raw_model, hp, rt)
    compile_warmup_and_restore(model, raw_model, optimizers, hp, rt, log)
    steps = train(model, compiled, optimizers, val, hp, rt, log)
    trained_crc = weights_crc32(raw_model)
    if rt.device.type == "cuda":
        log(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
            f"reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")

    path = export_artifact(raw_model, hp, rt, log)
    load_artifact_into(raw_model, path, hp)
    synchronize(rt)
    t0 = time.perf_counter()
    val_loss, val_bpb = eval_val(compiled, val, hp, rt)
    eval_ms = 1000 * (time.perf_counter() - t0)
    log(f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms:.0f}ms")
    log(f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    # Every rank reports, so a desynchronized replica or stop step is visible, not averaged away.
    print(f"rank_summary rank:{rt.rank}/{rt.world_size} stop_step:{steps} "
          f"val_bpb:{val_bpb:.8f} trained_weights_crc32:{trained_crc:08x}", flush=True)
    if rt.distributed:
        dist.destroy_process_group()


def run_cli() -> int:
    """Clear one-line errors for bad input (exit 2), not tracebacks."""
    try:
        main()
    except (HyperparameterError, DataError, ArtifactError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_cli())
