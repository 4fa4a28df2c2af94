"""Host-device synchronizations and aten ops (a proxy for CUDA kernel launches) of one training step and one
score-first LoRA TTT chunk step, counted on the CPU. No GPU is needed; nothing is written outside a temporary
directory. tests/test_host_syncs.py holds train_gpt.py to the counts (one host sync a training step, none a
TTT chunk step).

    .venv/bin/python scripts/host_syncs.py [--what train|ttt|both] [--ttt-docs 2,64]

--what train   the default recipe's structure (11 layers, loop, lanes, gates, XSA; every other knob default) at
               toy widths (MODEL_DIM=64, 8/4 heads, ROPE_DIMS=4, VOCAB_SIZE=512, TRAIN_SEQ_LEN=128,
               TRAIN_BATCH_TOKENS=8192, bf16 autocast, COMPILE=0): one tg.train_step of the looped stage after a
               warm-up step, each op attributed to the micro-batch (`micro`) in flight or to the once-a-step tail,
               then the loop's EMA update and its clock (tg.step_clock).
--what ttt     tg.eval_ttt over one batch of --ttt-docs documents of 3 chunks (TTT_CHUNK_SIZE=48,
               TTT_LORA_RANK=8, other TTT knobs default) after a warm-up eval, each op attributed to the chunk
               step of ttt_batch in flight (`step`: 0 also creates the AdamW state, 1 is the steady
               scored-and-trained step, 2 the last chunk, scored only) or to the batch's work outside the steps.

The numbers before issue 15 came from this script as committed at f6034f4, run on train_gpt.py of 5ec04d1:
    git show f6034f4:scripts/host_syncs.py > /tmp/host_syncs_before.py
    .venv/bin/python /tmp/host_syncs_before.py --rev 5ec04d1

What HostSyncs counts (a TorchDispatchMode, plus Python-level patches while it is active):
  - every aten op dispatched below autograd and autocast (forward, backward, optimizer): `total_ops`; those on
    device tensors are split into views/allocations/scalar reads (no kernel) and the rest, ~kernel launches
    (a foreach or fused op counts once though it may launch a few kernels);
  - dtype-conversion copies: aten._to_copy to another dtype (autocast's casts included), copy_ across dtypes;
  - host syncs: aten._local_scalar_dense (item/int/float/bool), nonzero (not nonzero_static), masked_select,
    boolean/uint8 index and index_put_, unique*, repeat_interleave without output_size, bincount, equal,
    is_nonzero; and what the CPU cannot show as ops: item/tolist/numpy/cpu of a device tensor,
    torch.tensor/as_tensor(..., device=<device>), .to(<device>) of a host tensor without non_blocking (CUDA's
    blocking copy from pageable memory waits for the stream), a host tensor of 1+ dims inside a device op.
    .to(<device>, non_blocking=True) of a host tensor is listed apart (train_gpt.py pins those on CUDA).
Each event carries the innermost train_gpt.py frame (file:line function), else the innermost frame outside
torch and the counter.

The convention: on this CPU every tensor is a CPU tensor, so each one stands for a device tensor, as it does
when the host bookkeeping of the timed loops lives in numpy or Python; except the tensors the counter sees made
on the host: by torch.tensor/as_tensor/from_numpy or a factory (arange, zeros, empty, ...) without a device or
with device="cpu" (a string), by .cpu()/.to("cpu"), registered with host(), or computed only from host
tensors. Their sync-type reads are listed apart as "sync-type reads of host tensors". A host tensor the counter
cannot see as one (made before it started and not registered, or placed with a torch.device object, which
always means the accelerator) is a device tensor here: ops on it are (over)counted as device ops and syncs.
While active, .to()/.cpu() across the two sides return a copy, as on CUDA. Blind spots: torch.compile graphs
(counted eager), the attention kernel (SDPA here; FA3 or FlexAttention on CUDA), CPU autocast's op lists
(close to, not equal to CUDA's), syncs inside ops not listed above, NCCL, the caching allocator, ops on other
threads (the loader's: not counted, but the host tensors they make are tracked).
"""

import argparse
import ast
import contextlib
import inspect
import os
import sys
import tempfile
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data")]
import shard_io  # noqa: E402

TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
MISSING = object()
SYNC_OPS = {"_local_scalar_dense": "scalar read (item/int/float/bool)", "is_nonzero": "is_nonzero",
            "nonzero": "nonzero", "argwhere": "nonzero", "masked_select": "masked_select", "bincount": "bincount",
            "equal": "torch.equal"}
BOOL_INDEX_OPS = {"index": "boolean index", "index_put_": "boolean index_put_", "index_put": "boolean index_put_",
                  "_index_put_impl_": "boolean index_put_"}
ALLOC_OPS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}
FACTORIES = ("arange", "zeros", "ones", "full", "empty", "rand", "randn", "randint", "randperm", "linspace")


def sync_kind(func, args, kwargs) -> str | None:
    """The kind of host sync an aten op is on CUDA, or None."""
    name = func._opname
    if name in SYNC_OPS:
        return SYNC_OPS[name]
    if name.startswith(("unique", "_unique")):
        return "unique"
    if name in BOOL_INDEX_OPS and len(args) > 1 and any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
        return BOOL_INDEX_OPS[name]
    if name == "repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor") \
            and kwargs.get("output_size") is None:
        return "repeat_interleave without output_size"
    return None


def tensors_in(tree) -> list:
    """The tensors of nested tuples/lists/dict values (an aten op's arguments; faster than pytree)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list, type({}.values()))):
        return [t for x in tree for t in tensors_in(x)]
    return []


def is_dtype_copy(func, args, kwargs) -> bool:
    name = func._opname
    if name == "_to_copy":
        return kwargs.get("dtype") is not None and kwargs["dtype"] != args[0].dtype
    return name == "copy_" and args[0].dtype != args[1].dtype


def side_of(device, default: str | None) -> str | None:
    """'host' for None (when the default is host) or a "cpu" string, 'device' for any torch.device or other."""
    if device is None:
        return default
    return "host" if isinstance(device, str) and device.split(":")[0] == "cpu" else "device"


def site_order(where: str) -> tuple[str, int]:
    """'file.py:123 function' sorts by file, then line number."""
    name, _, rest = where.partition(":")
    line = rest.split(" ")[0]
    return name, int(line) if line.isdigit() else 0


def loop_lines(func, var: str) -> tuple[int, int]:
    """First and last line of the `for var in ...` loop of a function, in its file's numbering."""
    func = inspect.unwrap(func)
    first = func.__code__.co_firstlineno
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == var:
            return first + node.lineno - 1, first + node.end_lineno - 1
    raise ValueError(f"{func.__name__} has no `for {var} in ...` loop")


TRANSFERS_HEAD = "non-blocking host->device copies (pageable memory: the driver may stage them synchronously)"
HOST_READS_HEAD = "sync-type reads of host tensors (no GPU sync; the plain all-device convention counts them)"


@dataclass
class Tally:
    """What one measured region dispatched; `buckets` splits it by the split loop's variable ('outside')."""

    ops: Counter = field(default_factory=Counter)
    total_ops: int = 0
    host_ops: int = 0
    no_kernel: int = 0  # views/aliases, allocations and scalar reads among the device ops
    dtype_copies: int = 0
    host_dtype_copies: int = 0
    syncs: list = field(default_factory=list)  # (kind, location)
    transfers: list = field(default_factory=list)  # non_blocking host->device copies
    host_reads: list = field(default_factory=list)  # sync-type reads of host tensors: no GPU sync
    sites: Counter = field(default_factory=Counter)  # device ops by location
    dtype_sites: Counter = field(default_factory=Counter)
    buckets: dict = field(default_factory=dict)

    @property
    def launches(self) -> int:
        return self.total_ops - self.host_ops - self.no_kernel

    def add_op(self, name: str, where: str, host: bool, no_kernel: bool, dtype_copy: bool) -> None:
        self.ops[name] += 1
        self.total_ops += 1
        self.host_ops += host
        self.no_kernel += no_kernel
        self.dtype_copies += dtype_copy
        self.host_dtype_copies += dtype_copy and host
        if not host:
            self.sites[where] += 1
            self.dtype_sites[where] += dtype_copy

    def merged(self, *others: "Tally") -> "Tally":
        """The sum of this tally and others (buckets dropped)."""
        out = Tally()
        for t in (self, *others):
            for name in ("ops", "sites", "dtype_sites"):
                getattr(out, name).update(getattr(t, name))
            for name in ("total_ops", "host_ops", "no_kernel", "dtype_copies", "host_dtype_copies"):
                setattr(out, name, getattr(out, name) + getattr(t, name))
            for name in ("syncs", "transfers", "host_reads"):
                getattr(out, name).extend(getattr(t, name))
        return out

    def summary(self) -> str:
        return (f"{self.total_ops:,} aten ops ({self.total_ops - self.host_ops:,} on device tensors: "
                f"~{self.launches:,} kernel launches + {self.no_kernel:,} views/allocations/scalar reads; "
                f"{self.host_ops:,} on host tensors), {self.dtype_copies:,} dtype copies "
                f"({self.host_dtype_copies:,} on host), {len(self.syncs)} host syncs, "
                f"{len(self.transfers)} non-blocking H2D, {len(self.host_reads)} sync-type reads of host tensors")

    def report(self, title: str = "measured", top: int = 0) -> str:
        lines = [f"{title}: {self.summary()}"]
        for head, events in (("host syncs", self.syncs),
                             (TRANSFERS_HEAD, self.transfers),
                             (HOST_READS_HEAD, self.host_reads)):
            if events:
                lines.append(f"  {head}:")
                lines += [f"    {n:4d} x {kind:<40} {where}" for (kind, where), n in
                          sorted(Counter(events).items(), key=lambda e: (site_order(e[0][1]), e[0][0]))]
        if top:
            for head, sites in (("device ops", self.sites), ("dtype copies", self.dtype_sites)):
                lines.append(f"  top sites of {head}: " + ", ".join(f"{w} ({n})" for w, n in sites.most_common(top)
                                                                    if n))
        return "\n".join(lines)


class HostSyncs(TorchDispatchMode):
    """Counts aten ops, dtype copies and host syncs while active (see the module docstring). host(): tensors
    that live on the host on CUDA too; paused(): track host tensors without counting; split = (function,
    var): also tally per value of that function's `for var in` loop variable; take(): the tally so far."""

    def __init__(self, source: str | os.PathLike | None = None, host=(), split=None):
        super().__init__()
        source = str(source or REPO / "train_gpt.py")
        self.sources = {source, os.path.realpath(source)}  # as the module was imported, and resolved
        self._host, self._lock, self._tls = WeakIdKeyDictionary(), threading.Lock(), threading.local()
        self._saved, self._owner, self._paused, self._split = [], None, 0, None
        self.tally = Tally()
        self.split = split
        self.host(*host)

    ops = property(lambda self: self.tally.ops)
    total_ops = property(lambda self: self.tally.total_ops)
    dtype_copies = property(lambda self: self.tally.dtype_copies)
    syncs = property(lambda self: self.tally.syncs)

    def report(self, title: str = "HostSyncs", top: int = 0) -> str:
        return self.tally.report(title, top)

    @property
    def split(self):
        return self._split

    @split.setter
    def split(self, spec) -> None:
        self._split = None if spec is None else (inspect.unwrap(spec[0]).__code__, spec[1], *loop_lines(*spec))

    def take(self) -> Tally:
        """The tally since the start or the last take(), and a fresh one from here."""
        tally, self.tally = self.tally, Tally()
        return tally

    # ---- host tensors -------------------------------------------------------------------------------------
    def host(self, *tensors) -> None:
        for t in tensors_in(tensors):
            with self._lock:
                self._host[t] = True

    def _unhost(self, t) -> None:
        with self._lock:
            self._host.pop(t, None)

    def is_host(self, t) -> bool:
        with self._lock:
            return t in self._host

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield self
        finally:
            self._paused -= 1

    @contextlib.contextmanager
    def _scope(self, name: str):
        """quiet: a Python-level event was recorded, the aten ops under it are not syncs again; factory: the
        ops under a host factory call make host tensors. Thread-local: a loader thread does not interfere."""
        setattr(self._tls, name, getattr(self._tls, name, 0) + 1)
        try:
            yield
        finally:
            setattr(self._tls, name, getattr(self._tls, name) - 1)

    def _counting(self) -> bool:
        return not self._paused and threading.get_ident() == self._owner

    # ---- where an event happened --------------------------------------------------------------------------
    def _where(self) -> tuple[str, object]:
        frame, loc, fallback, bucket = sys._getframe(2), None, None, None
        split = self._split
        while frame is not None and (loc is None or (split and bucket is None)):
            code = frame.f_code
            if loc is None and code.co_filename in self.sources:
                loc = frame
            elif fallback is None and code not in OWN_CODES and not code.co_filename.startswith(TORCH_DIR):
                fallback = frame
            if split and code is split[0]:
                inside = split[2] <= frame.f_lineno <= split[3] and split[1] in frame.f_locals
                bucket = frame.f_locals[split[1]] if inside else "outside"
            frame = frame.f_back
        frame = loc or fallback
        where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}" \
            if frame else "?"
        return where, ("outside" if bucket is None else bucket) if split else None

    def _tallies(self, bucket) -> list[Tally]:
        if bucket is None:
            return [self.tally]
        return [self.tally, self.tally.buckets.setdefault(bucket, Tally())]

    def _event(self, kind: str, host: bool, nonblocking: bool = False) -> None:
        """A Python-level event (a read or a transfer) in the thread that entered the counter."""
        if not self._counting():
            return
        where, bucket = self._where()
        for t in self._tallies(bucket):
            (t.host_reads if host else t.transfers if nonblocking else t.syncs).append((kind, where))

    # ---- aten ops -----------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = tensors_in((args, kwargs.values()))
        flags = [self.is_host(t) for t in inputs]
        host = getattr(self._tls, "factory", 0) > 0 or (bool(inputs) and all(flags))
        if host:
            self.host(out)
        if self._counting():
            mixed = not host and any(f and t.dim() > 0 for t, f in zip(inputs, flags))
            self._count(func, args, kwargs, host, mixed)
        return out

    def _count(self, func, args, kwargs, host: bool, mixed: bool) -> None:
        name = func._opname
        kind = None if getattr(self._tls, "quiet", 0) else sync_kind(func, args, kwargs)
        if mixed and kind is None:  # a host tensor in a device op: an implicit, blocking copy
            kind = ("copy_ device->host" if self.is_host(args[0]) else "copy_ host->device") \
                if name == "copy_" else "host tensor in a device op"
        where, bucket = self._where()
        no_kernel = not host and (func.is_view or name in ALLOC_OPS or name == "_local_scalar_dense")
        dtype_copy = is_dtype_copy(func, args, kwargs)
        for t in self._tallies(bucket):
            t.add_op(str(func), where, host, no_kernel, dtype_copy)
            if kind:
                (t.host_reads if host else t.syncs).append((kind, where))

    # ---- Python-level patches -----------------------------------------------------------------------------
    def _patch(self, owner, name: str, make) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, MISSING)))
        setattr(owner, name, make(getattr(owner, name)))

    def _read(self, name: str):
        def make(orig):
            def read(t, *args, **kwargs):
                self._event(f"{name}()", host=self.is_host(t))
                with self._scope("quiet"):
                    return orig(t, *args, **kwargs)
            return read
        return make

    def _cpu(self, orig):
        def cpu(t, *args, **kwargs):
            if self.is_host(t):
                return orig(t, *args, **kwargs)
            self._event("cpu() device->host", host=False)
            with self._scope("quiet"):
                out = orig(t, *args, **kwargs)
                out = self._to_orig(t, "cpu", copy=True) if out is t else out
            self.host(out)
            return out
        return cpu

    def _to(self, orig):
        self._to_orig = orig

        def to(t, *args, **kwargs):
            first = args[0] if args else None
            if isinstance(first, torch.Tensor):
                target = "host" if self.is_host(first) else "device"
            else:
                dev = kwargs.get("device", first if isinstance(first, (str, int, torch.device)) else None)
                target = side_of(None if isinstance(dev, bool) else dev, None)
            source = "host" if self.is_host(t) else "device"
            if target is None or target == source:
                return orig(t, *args, **kwargs)
            nonblocking = bool(kwargs.get("non_blocking")) or any(a is True for a in args)
            kind = "to(device) host->device" if target == "device" else "to('cpu') device->host"
            self._event(kind + (", non_blocking" if nonblocking else ""), host=False,
                        nonblocking=nonblocking and target == "device")
            with self._scope("quiet"):
                out = orig(t, *args, **kwargs)
                out = orig(t, "cpu", copy=True) if out is t else out  # CUDA copies: a new tensor
            self.host(out) if target == "host" else self._unhost(out)
            return out
        return to

    def _from_data(self, name: str):
        def make(orig):
            def build(data, *args, **kwargs):
                dev = kwargs.get("device", args[1] if name == "as_tensor" and len(args) > 1 else None)
                if isinstance(data, torch.Tensor):  # follows its data
                    return orig(data, *args, **kwargs)
                if side_of(dev, "host") == "device":
                    self._event(f"torch.{name}(device=) host->device", host=False)
                    return orig(data, *args, **kwargs)
                return self._host_call(orig, data, *args, **kwargs)
            return build
        return make

    def _factory(self, orig):
        def build(*args, **kwargs):
            if side_of(kwargs.get("device"), "host") == "device":
                return orig(*args, **kwargs)
            return self._host_call(orig, *args, **kwargs)
        return build

    def _host_call(self, orig, *args, **kwargs):
        with self._scope("factory"):
            out = orig(*args, **kwargs)
        self.host(out)
        return out

    def __enter__(self):
        self._owner = threading.get_ident()
        try:
            for name in ("item", "tolist", "numpy"):
                self._patch(torch.Tensor, name, self._read(name))
            self._patch(torch.Tensor, "to", self._to)
            self._patch(torch.Tensor, "cpu", self._cpu)
            for name in ("tensor", "as_tensor"):
                self._patch(torch, name, self._from_data(name))
            for name in ("from_numpy", *FACTORIES):
                self._patch(torch, name, self._factory)
            return super().__enter__()
        except BaseException:
            self._restore()
            raise

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._restore()

    def _restore(self) -> None:
        while self._saved:
            owner, name, orig = self._saved.pop()
            if orig is MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, orig)


def _codes(functions) -> set:
    """Code objects of the counter itself (nested closures included): never an event's location."""
    stack = [f.__code__ for f in functions]
    seen = set()
    while stack:
        code = stack.pop()
        seen.add(code)
        stack += [c for c in code.co_consts if inspect.iscode(c)]
    return seen


OWN_CODES = _codes([inspect.unwrap(f) for v in vars(HostSyncs).values() for f in
                    ([v] if inspect.isfunction(v) else [v.fget, v.fset] if isinstance(v, property) else [])
                    if f is not None])


# =================================================================================================================
# The CLI: the measured code, built as train_gpt.py builds it
# =================================================================================================================

SMALL = {"MODEL_DIM": "64", "NUM_HEADS": "8", "NUM_KV_HEADS": "4", "VOCAB_SIZE": "512", "ROPE_DIMS": "4",
         "TRAIN_SEQ_LEN": "128", "TRAIN_BATCH_TOKENS": str(8 * 128), "AUTOCAST": "bf16", "COMPILE": "0"}


@contextlib.contextmanager
def cuda_paths():
    """Optimizers that pick their implementation by device (SGD) take CUDA's foreach path on the CPU too."""
    import torch.optim.optimizer as optimizer_module
    orig = optimizer_module._get_foreach_kernels_supported_devices
    optimizer_module._get_foreach_kernels_supported_devices = lambda: [*orig(), "cpu"]
    try:
        yield
    finally:
        optimizer_module._get_foreach_kernels_supported_devices = orig


def write_train_shard(directory: str, num_tokens: int, bos_every: int, vocab: int, seed: int = 0) -> Path:
    """A train shard of random tokens with BOS (id 1) at random gaps of mean bos_every, BOS first."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab, size=num_tokens, dtype=np.uint16)
    gaps = rng.integers(1, 2 * bos_every, size=num_tokens // bos_every + 16)
    starts = np.concatenate([[0], np.cumsum(gaps)])
    tokens[starts[starts < num_tokens]] = 1
    path = Path(directory) / "fineweb_train_000000.bin"
    shard_io.write_shard(path, tokens)
    return path


def training_step(tg, data_dir: str) -> dict[str, Tally]:
    """One train_step of the looped stage after a warm-up step, split by micro-batch, then the loop's EMA
    update and clock: {"step", "ema", "clock"}."""
    write_train_shard(data_dir, num_tokens=200_000, bos_every=100, vocab=int(SMALL["VOCAB_SIZE"]))
    with cuda_paths(), HostSyncs(tg.__file__) as hs:
        with hs.paused():
            hp = tg.Hyperparameters.from_env({**SMALL, "DATA_PATH": data_dir})
            rt = tg.Runtime(0, 1, 0, torch.device("cpu"), autocast=True)
            model = tg.build_model(hp, rt.device)
            optimizers = tg.build_optimizers(model, hp, rt)
            average = tg.WeightAverage(model, hp, lambda msg: None)
            loader = tg.TrainLoader(tg.train_pattern(hp), rt, hp.train_batch_tokens, hp.doc_isolation)
            stage = tg.Stage(plan=len(model.plans) - 1, span=hp.train_seq_len)
            tg.train_step(model, optimizers, loader, hp, rt, 100, 1.0, stage)  # optimizer state, first calls
        hs.split = (tg.train_step, "micro")
        loss = tg.train_step(model, optimizers, loader, hp, rt, 101, 1.0, stage)
        out = {"step": hs.take()}
        hs.split = None
        average.update(model, 102, 1.0, True)
        out["ema"] = hs.take()
        tg.step_clock(loss, 1.0, rt)
        out["clock"] = hs.take()
        with hs.paused():
            loader.close()
    out.update(stage=stage, applications=len(model.plans[stage.plan].order), micro_tokens=hp.train_batch_tokens // 8)
    return out


def print_training(m: dict) -> None:
    step = m["step"]
    micro = {k: v for k, v in step.buckets.items() if k != "outside"}
    print(f"\n== one training step: looped stage (plan {m['stage'].plan}, {m['applications']} layer applications), "
          f"span {m['stage'].span}, {len(micro)} micro-batches of {m['micro_tokens']} tokens, world size 1 ==")
    print(step.report("tg.train_step", top=6))
    print(micro[1].report("  one micro-batch (micro=1)"))
    print(step.buckets.get("outside", Tally()).report("  once per step, outside the micro-batch loop"))
    print(m["ema"].report("EMA update (WeightAverage.update)"))
    print(m["clock"].report("clock (tg.step_clock)"))
    print(f"per training step in all: {step.merged(m['ema'], m['clock']).summary()}")


def validation(tg, lengths: list[int], vocab: int, seed: int = 0):
    """A val stream of BOS-led documents of the given lengths (each scores that many targets), BOS last."""
    rng = np.random.default_rng(seed)
    docs = [np.concatenate([[tg.BOS_ID], rng.integers(2, vocab, n - 1)]) for n in lengths]
    tokens = torch.from_numpy(np.concatenate(docs + [[tg.BOS_ID]]).astype(np.int32))
    return tg.ValidationData(tokens, (tokens.long() % 3 + 1).to(torch.int16))


def ttt_batch_steps(tg, num_docs: int) -> dict:
    """eval_ttt over one batch of num_docs documents of 3 chunks, after a warm-up eval; ops split by the chunk
    step of ttt_batch in flight ("outside": the batch's work around them)."""
    with cuda_paths(), HostSyncs(tg.__file__) as hs:
        with hs.paused():
            hp = tg.Hyperparameters.from_env({**SMALL, "TTT_LORA_RANK": "8", "TTT_BATCH_SIZE": str(num_docs)})
            rt = tg.Runtime(0, 1, 0, torch.device("cpu"), autocast=True)
            model = tg.build_model(hp, rt.device)
            lengths = np.random.default_rng(num_docs).integers(2 * hp.ttt_chunk_size + 1, 3 * hp.ttt_chunk_size + 1,
                                                              size=num_docs).tolist()  # 3 chunks each
            val = validation(tg, lengths, hp.vocab_size)
            hs.host(val.tokens, val.token_bytes)
            tg.eval_ttt(model, val, hp, rt, tg.StageMeters, lambda *a, **k: None)
        hs.split = (tg.ttt_batch, "step")
        tg.eval_ttt(model, val, hp, rt, tg.StageMeters, lambda *a, **k: None)
        batch = hs.take()
    return {"hp": hp, "lengths": lengths, "batch": batch}


def print_ttt(m: dict) -> None:
    hp, batch = m["hp"], m["batch"]
    steps = sorted(k for k in batch.buckets if k != "outside")
    print(f"\n== TTT: one batch of {len(m['lengths'])} documents of {min(m['lengths'])}-{max(m['lengths'])} targets "
          f"({len(steps)} chunk steps of {hp.ttt_chunk_size}), LoRA rank {hp.ttt_lora_rank}, "
          f"{hp.ttt_optimizer} adapters, {hp.ttt_grad_steps} grad step(s) per chunk ==")
    print(batch.buckets.get("outside", Tally()).report("per batch, outside the chunk steps (eval_ttt, new_lora)"))
    names = {0: "scored and trained; AdamW state created", steps[-1]: "the last chunk: scored, not trained"}
    for k in steps:
        print(batch.buckets[k].report(f"chunk step {k} ({names.get(k, 'scored and trained: the steady state')})",
                                      top=6 if k == 1 else 0))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--what", choices=("train", "ttt", "both"), default="both")
    ap.add_argument("--ttt-docs", default="2,64", help="documents per TTT batch, comma-separated (default 2,64)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import train_gpt as tg

    print(f"train_gpt.py: {tg.__file__}; torch {torch.__version__}")
    if args.what in ("train", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            print_training(training_step(tg, tmp))
    if args.what in ("ttt", "both"):
        for n in sorted({int(x) for x in args.ttt_docs.split(",")}):
            print_ttt(ttt_batch_steps(tg, n))


if __name__ == "__main__":
    main()
