"""train_gpt.py's evaluation extras, off by default: the sliding-window stage (#895, #1626) with #895's Hedge
mixer, and the token-only n-gram tilt (#1514, #2135's hints) of every stage. Imported only when
SLIDING_WINDOW_ENABLED, USE_HEDGE or NGRAM_TILT_ENABLED ask for it (train_gpt.optional_module); a run that imports
it counts its bytes too. train_gpt.eval_stages asks it for the stages' meters (stage_meters), the window graphs'
warm-up (warm_sliding) and the sliding-window stage's rows (sliding_stage).
"""

import functools
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from train_gpt import (GPT, Hyperparameters, Runtime, StageMeters, ValidationData, autocast_context, rank_share,
                       report_stage, scored_logp, synchronize, timed, to_device, window_arrays)

def ngram_tilt(logp: Tensor, hints: Tensor, beta: float) -> Tensor:
    """p'(t) = p(t) e^{beta [t = h]} / Z, Z = 1 + p(h)(e^beta - 1) (#1514): a renormalized boost of the hint,
    never a function of the realized token. logp [..., V]; hints [...], -1 = unchanged."""
    h = hints.clamp_min(0)[..., None]
    log_z = torch.log1p(logp.gather(-1, h).exp() * math.expm1(beta))
    tilted = (logp - log_z).scatter_add(-1, h, torch.full_like(log_z, beta))
    return torch.where(hints[..., None] >= 0, tilted, logp)

class TiltedMeters(StageMeters):
    """A stage's meters with each label also scored tilted by the stream's hints, as "{label}_tilt"."""

    def __init__(self, labels: list[str], val: ValidationData, rt: Runtime, hints: np.ndarray, beta: float):
        super().__init__([x for label in labels for x in (label, f"{label}_tilt")], val, rt)
        self.hints, self.beta = hints, beta

    def add(self, label: str, logp: Tensor, dev: dict[str, Tensor]) -> None:
        super().add(label, logp, dev)
        super().add(f"{label}_tilt", ngram_tilt(logp, dev["hints"], self.beta), dev)

    def target_arrays(self, positions: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return super().target_arrays(positions, mask) | dict(hints=self.hints[positions])

def stage_meters(val: ValidationData, hp: Hyperparameters) -> Callable[..., StageMeters]:
    """What every eval stage counts into: with NGRAM_TILT_ENABLED, meters that also score the tilt by val's hints."""
    if not hp.ngram_tilt_enabled:
        return StageMeters
    hints = ngram_hints(val.tokens, hp.ngram_tilt_order, hp.ngram_tilt_threshold)
    return functools.partial(TiltedMeters, hints=hints, beta=hp.ngram_tilt_beta)

def ngram_hints(tokens: Tensor, order: int, threshold: float) -> np.ndarray:
    """#2135's token-only hint per stream position p (-1: none): the exact ORDER-1 tokens before p, seen
    earlier in the stream, propose the continuation that first reached the most counts, if it holds
    >= threshold of them. No back-off, no document bounds; causal in stream order, so any scoring order."""
    t, ctx = tokens.numpy().astype(np.int64), order - 1
    n, hints = t.size, np.full(t.size, -1, np.int64)
    if n <= ctx:
        return hints
    # contexts and (context, token) pairs keyed by a random 64-bit linear hash (collisions ~1e-4 over 48M);
    # int32 positions and dels keep the process under 4.5 GB at 48M tokens (scripts/tilt_bench.py)
    coef = np.random.default_rng(2135).integers(1, 2**63, ctx + 1, dtype=np.uint64) | np.uint64(1)
    u = t.astype(np.uint64) + np.uint64(1)
    key = np.zeros(n - ctx, np.uint64)
    for j in range(ctx):
        key += u[j : n - ctx + j] * coef[j]
    idx = np.arange(n - ctx, dtype=np.int32)

    def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order_ = np.argsort(keys, kind="stable").astype(np.int32)  # equal keys stay in stream order
        s = keys[order_]
        first = np.r_[True, s[1:] != s[:-1]]
        return order_, first, idx - np.maximum.accumulate(np.where(first, idx, 0))  # earlier equal keys

    by_pair, _, earlier = runs(key + u[ctx:] * coef[ctx])
    count = np.empty_like(idx)
    count[by_pair] = earlier + 1  # the pair's count once position p is learned
    del u, by_pair, earlier
    by_ctx, first, seen = runs(key)
    del key
    count = count[by_ctx]
    # per context, in stream order: the running max count and the position that first reached it (#2135's
    # table replaces its top token only on a strictly larger count); contexts lifted apart for one running max
    lifted = np.cumsum(first, dtype=np.int64) * (n + 1) + count
    best = np.maximum.accumulate(lifted)
    leader = np.maximum.accumulate(np.where(np.r_[True, lifted[1:] > best[:-1]], idx, 0))
    before = np.maximum(idx - 1, 0)  # the state before p: its context's previous entry
    top = (best[before] - lifted + count).astype(np.float32)  # where seen > 0, `before` is in p's context
    fire = (seen > 0) & (top / np.maximum(seen, 1).astype(np.float32) >= np.float32(threshold))
    hints[ctx + by_ctx] = np.where(fire, t[ctx:][by_ctx][leader[before]], -1)
    return hints

HEDGE_TRIGRAM_BUCKETS = 65_536  # #895's hash table rows

class HedgeMixer:
    """#895's Hedge mixer (#688/#745): exponential weights over the neural distribution and three count
    experts, each a full add-k distribution over the vocabulary: unigram, bigram on the previous token,
    trigram on a hash of the previous two. #895's fifth "entropy expert" gave every token one probability,
    so its mixture did not sum to 1 (#1017 C2): it is left out. Tables and weights change only after a
    batch is scored; the weights move by the mean NLL of each expert on that batch's scored targets."""

    WARMUP_TOKENS, INIT_LOG_W = 10_000, (2.0, 0.0, 0.0, 0.0)

    def __init__(self, vocab: int, eta: float, device: torch.device):
        self.vocab, self.eta = vocab, eta
        self.unigram = torch.zeros(vocab, device=device)
        self.bigram = torch.zeros(vocab, vocab, device=device)
        self.trigram = torch.zeros(HEDGE_TRIGRAM_BUCKETS, vocab, device=device)
        self.log_w = torch.tensor(self.INIT_LOG_W, device=device)
        self.seen = 0

    def _bucket(self, prev2: Tensor, prev1: Tensor) -> Tensor:
        return ((prev2 * 36313) ^ (prev1 * 27191)) % HEDGE_TRIGRAM_BUCKETS

    def experts(self, logp: Tensor, prev2: Tensor, prev1: Tensor) -> Tensor:
        """[4, n, V] log-distributions of the neural, unigram, bigram and trigram experts."""
        v = self.vocab
        uni = ((self.unigram + 0.1) / (self.unigram.sum() + 0.1 * v)).log().expand_as(logp)
        bi = self.bigram[prev1]
        tri = self.trigram[self._bucket(prev2, prev1)]
        bi = ((bi + 0.1) / (bi.sum(-1, keepdim=True) + 0.1 * v)).log()
        tri = ((tri + 0.01) / (tri.sum(-1, keepdim=True) + 0.01 * v)).log()
        return torch.stack([logp, uni, bi, tri])

    def mix(self, logp: Tensor, prev2: Tensor, prev1: Tensor) -> tuple[Tensor, Tensor | None]:
        """The mixture's log-distribution [n, V] (the neural one until WARMUP_TOKENS were counted)."""
        if self.seen < self.WARMUP_TOKENS:
            return logp, None
        experts = self.experts(logp, prev2, prev1)
        return torch.logsumexp(torch.log_softmax(self.log_w, 0)[:, None, None] + experts, 0), experts

    def update(self, experts: Tensor | None, prev2: Tensor, prev1: Tensor, targets: Tensor) -> None:
        """After scoring: move the weights, then count the scored targets."""
        if experts is not None:
            nll = -experts.gather(2, targets[None, :, None].expand(experts.size(0), -1, 1)).squeeze(2)
            self.log_w -= self.eta * nll.mean(1)
        ones = torch.ones_like(targets, dtype=torch.float32)
        self.unigram.index_add_(0, targets, ones)
        self.bigram.index_put_((prev1, targets), ones, accumulate=True)
        self.trigram.index_put_((self._bucket(prev2, prev1), targets), ones, accumulate=True)
        self.seen += targets.numel()

def sliding_windows(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(context start, score start, end) in input positions: inputs tokens[a:e] score the targets at
    positions s+1..e. The first window scores all its targets, each later one the stride after the last
    scored, down to a shorter final one, so the tail is scored too (pg #121)."""
    end = min(seq_len, num_targets)
    windows = [(0, 0, end)]
    while end < num_targets:
        new_end = min(end + stride, num_targets)
        windows.append((max(0, new_end - seq_len), end, new_end))
        end = new_end
    return windows

@torch.no_grad()
def eval_sliding(model: GPT, val: ValidationData, hp: Hyperparameters, rt: Runtime, meters: StageMeters) -> None:
    """Overlapping windows (#895 eval_val_sliding, #1626 SLIDING_WINDOW_ENABLED), context clipped at document
    starts by the segment cuts. With Hedge the windows run in order on every rank (its state is sequential)
    and rank 0 alone counts; otherwise each rank takes a contiguous share."""
    seq_len = hp.eval_seq_len or hp.train_seq_len
    windows = sliding_windows(val.tokens.numel() - 1, seq_len, hp.eval_stride)
    hedge = HedgeMixer(hp.vocab_size, hp.hedge_eta, rt.device) if hp.use_hedge else None
    if hedge is None:
        windows = windows[rank_share(len(windows), rt)]
    counts = hedge is None or rt.is_main  # with Hedge every rank computes it all; rank 0 counts
    model.eval()
    for i in range(0, len(windows), hp.eval_batch_seqs):
        host, positions = window_arrays(windows[i : i + hp.eval_batch_seqs], meters, seq_len, hp)
        dev = to_device(host, rt)
        with autocast_context(rt):
            logp = scored_logp(model, dev, seq_len)
        if counts:
            meters.add("sliding_window", logp, dev)
        if hedge is not None:
            hedge_batch(hedge, logp, host["mask"], positions, meters, rt, counts)

def hedge_batch(hedge: HedgeMixer, logp: Tensor, mask: np.ndarray, positions: np.ndarray, meters: StageMeters,
                rt: Runtime, counts: bool) -> None:
    """The mixer on a window batch's scored targets in stream order (the real slots, flattened): scored (into
    the meters if this rank counts), then updated."""
    flat = np.flatnonzero(mask.ravel())
    positions, tokens = positions.ravel()[flat], meters.val.tokens.numpy()
    host = dict(flat=flat, prev1=tokens[positions - 1], prev2=tokens[np.maximum(positions - 2, 0)],
                **meters.target_arrays(positions, np.ones(positions.size, np.int32)))
    dev = to_device(host, rt)
    mixed, experts = hedge.mix(logp.view(-1, logp.size(-1))[dev["flat"]], dev["prev2"], dev["prev1"])
    if counts:
        meters.add("hedge_mixer", mixed, dev)
    hedge.update(experts, dev["prev2"], dev["prev1"], dev["targets"])

def warm_sliding(model: GPT, fake: ValidationData, hp: Hyperparameters, rt: Runtime) -> None:
    """train_gpt.eval_warmup's window graphs on its random stream (without Hedge: nothing of it is compiled)."""
    if hp.sliding_window_enabled or hp.use_hedge:
        eval_sliding(model, fake, replace(hp, use_hedge=False), rt, StageMeters(["sliding_window"], fake, rt))

def sliding_stage(model: GPT, val: ValidationData, hp: Hyperparameters, rt: Runtime,
                  new_meters: Callable[..., StageMeters], timers: dict[str, float], log) -> list[dict]:
    """The sliding-window stage's rows (none unless SLIDING_WINDOW_ENABLED or USE_HEDGE); timers["sliding_window"]."""
    if not (hp.sliding_window_enabled or hp.use_hedge):
        return []
    meters = new_meters(["sliding_window"] + (["hedge_mixer"] if hp.use_hedge else []), val, rt)
    synchronize(rt)
    with timed(timers, "sliding_window"):
        eval_sliding(model, val, hp, rt, meters)
    return report_stage(meters, timers["sliding_window"], val.partial, rt, log)
