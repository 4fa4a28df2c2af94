"""Every eval mode obeys issue #1017's conditions: causal (C1), normalized (C2), score-before-update (C3) and
single pass (C4: every target scored exactly once), checked on each mode's per-position distributions,
against a slow reference of score-first TTT, and against the synthetic corpus's exact entropy floor, which
an honest mode cannot beat and a deliberately leaky one (train on a chunk, then score it) does."""

import functools
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import synthetic_corpus
import train_gpt as tg
import train_gpt_mixers as mixers
from conftest import cpu_runtime, randomized_model, tiny_env

VOCAB = 64
CPU = cpu_runtime()
# every mode small enough for a 2-core CI: 2x32 model, 8-target chunks, windows of 32, 3-document batches;
# phases after 2 and 5 documents: prefixes that are not multiples of the batch size
SMALL = dict(VOCAB_SIZE=VOCAB, TRAIN_SEQ_LEN=32, VAL_BATCH_SIZE=768, EVAL_SEQ_LEN=32, EVAL_STRIDE=8,
             EVAL_BATCH_SEQS=4, TTT_ENABLED=1, TTT_CHUNK_SIZE=8, TTT_EVAL_SEQ_LEN=32, TTT_BATCH_SIZE=3,
             TTT_LORA_RANK=4, TTT_LORA_ALPHA=8, TTT_LORA_LR=0.01, PHASED_TTT_ENABLED=0, PHASED_TTT_PREFIX_DOCS=5,
             PHASED_TTT_NUM_PHASES=2, GLOBAL_TTT_CHUNK_TOKENS=64, GLOBAL_TTT_BATCH_SEQS=2, GLOBAL_TTT_LR=0.05,
             NGRAM_TILT_ORDER=4, NGRAM_TILT_THRESHOLD=0.5)
MODES = {  # mode -> (env overrides, the label whose distributions it scores)
    "sliding": (dict(SLIDING_WINDOW_ENABLED=1, TTT_ENABLED=0), "sliding_window"),
    "hedge": (dict(USE_HEDGE=1, TTT_ENABLED=0), "hedge_mixer"),
    "tilt": (dict(SLIDING_WINDOW_ENABLED=1, NGRAM_TILT_ENABLED=1, TTT_ENABLED=0), "sliding_window_tilt"),
    "lora_ttt": (dict(TTT_WARM_START_A=1), "ttt_lora"),
    "lora_ttt_short_doc_chunks": (dict(TTT_SHORT_DOC_CHUNKS="2@10,4@40"), "ttt_lora"),  # #2014's smaller chunks
    "lora_ttt_two_steps": (dict(TTT_GRAD_STEPS=2), "ttt_lora"),  # re-scores between the steps are not scores
    "phased_ttt": (dict(PHASED_TTT_ENABLED=1, TTT_WARM_START_A=1), "ttt_phased"),
    "phased_ttt_tilt": (dict(PHASED_TTT_ENABLED=1, NGRAM_TILT_ENABLED=1), "ttt_phased_tilt"),
    "phased_ttt_record_stream": (dict(PHASED_TTT_ENABLED=1, GLOBAL_TTT_STREAM="record"), "ttt_phased"),
}


def stream(seed: int = 0, lengths=(70, 61, 52, 45, 40, 33, 27, 20, 14, 9, 5, 2)) -> torch.Tensor:
    """BOS-led documents, longest first, so the TTT queue's order is the stream's: "earlier" is one order.
    Tokens repeat a few short phrases so that n-gram experts and hints have something to find."""
    gen = torch.Generator().manual_seed(seed)
    phrases = torch.randint(2, VOCAB, (6, 5), generator=gen)
    docs = []
    for n in lengths:
        picks = phrases[torch.randint(0, 6, (n // 5 + 1,), generator=gen)].flatten()[:n]
        noise = torch.where(torch.rand(n, generator=gen) < 0.3, torch.randint(2, VOCAB, (n,), generator=gen), picks)
        docs.append(torch.cat([torch.tensor([tg.BOS_ID]), noise]))
    return torch.cat(docs + [torch.tensor([tg.BOS_ID])]).to(torch.int32)


def validation(tokens: torch.Tensor) -> tg.ValidationData:
    token_bytes = (tokens.long() % 3 + 1).to(torch.int16)  # 1-3 bytes per target, BOS included: any count works
    return tg.ValidationData(tokens, token_bytes)


def hparams(tmp_path, **overrides) -> tg.Hyperparameters:
    return tg.Hyperparameters.from_env(tiny_env(tmp_path, tmp_path, **{**SMALL, **overrides}))


def model_for(hp_env: dict):
    return randomized_model(hp_env, std=0.2)


def observe_scores(monkeypatch, val: tg.ValidationData, seen) -> None:
    """seen(label, positions, logp) for every distribution the meters on `val` score, at its real slots (the
    warm-up's fake stream is not seen): the stream positions are those of the batch's target_arrays call,
    which comes before its scores."""
    target_arrays, add, last = tg.StageMeters.target_arrays, tg.StageMeters.add, {}

    def target_arrays_(self, positions, mask):
        last["positions"] = positions
        return target_arrays(self, positions, mask)

    def add_(self, label, logp, dev):
        if self.val is val:
            real = dev["mask"].bool().cpu().numpy()
            seen(label, torch.from_numpy(last["positions"][real]), logp[torch.from_numpy(real)])
        add(self, label, logp, dev)

    monkeypatch.setattr(tg.StageMeters, "target_arrays", target_arrays_)
    monkeypatch.setattr(tg.StageMeters, "add", add_)


def record_ttt_events(trace: list, patch=setattr) -> None:
    """trace gets ("scored", docs) after each TTT batch and ("global_sgd", docs) before each phase's SGD;
    patch: monkeypatch.setattr, or setattr in a spawned rank (its own copy of the module)."""
    ttt_batch, global_sgd = tg.ttt_batch, tg.global_sgd

    def batch(model, docs, *args):
        ttt_batch(model, docs, *args)
        trace.append(("scored", docs))

    def sgd(model, val, docs, *args):
        trace.append(("global_sgd", docs))
        global_sgd(model, val, docs, *args)

    patch(tg, "ttt_batch", batch)
    patch(tg, "global_sgd", sgd)


def run_mode(mode: str, tokens: torch.Tensor, tmp_path, monkeypatch, numeric_mode: str = "off", **extra):
    """A mode's scored distribution at every position [N+1, V], how often each was scored, and its rows."""
    overrides, label = MODES[mode]
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, **overrides, **extra})
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(tokens)
    monkeypatch.setattr(mixers.HedgeMixer, "WARMUP_TOKENS", 40)  # the mixer's weights move within this small stream
    dists, counts = torch.zeros(tokens.numel(), VOCAB), torch.zeros(tokens.numel())

    def seen(name, positions, logp):
        if name == label:
            dists[positions] = logp.float()
            counts[positions] += 1

    observe_scores(monkeypatch, val, seen)
    rows, _ = tg.eval_stages(model, val, hp, cpu_runtime(numeric_mode), lambda *a, **k: None)
    return dists, counts, {r["label"]: r for r in rows}


def split_points(mode: str, tokens: torch.Tensor, tmp_path) -> list[int]:
    """Where the future-token test cuts: mid-stream, and for phased modes 3 tokens into the first document
    scored after each phase (global SGD reaching past the documents it may use is seen there)."""
    points = [int(tokens.numel() * 0.45)]
    if MODES[mode][0].get("PHASED_TTT_ENABLED"):
        hp = hparams(tmp_path, **MODES[mode][0])
        queue = tg.ttt_queue(validation(tokens), hp)
        points += [queue[bound][1][0][0] + 3 for bound, _ in tg.phase_plan([len(d) for _, d in queue], hp, 1)]
    return points


@pytest.mark.parametrize("mode", MODES)
def test_future_tokens_change_no_earlier_score(mode, tmp_path, monkeypatch, numeric_mode):
    """Tokens from t on are changed: no distribution up to and including position t's (which scores the
    changed token x_t) may move, so neither a later token nor the realized one is read."""
    tokens = stream()
    a, *_ = run_mode(mode, tokens, tmp_path, monkeypatch, numeric_mode)
    for t in split_points(mode, tokens, tmp_path):
        future_tokens_keep_earlier_scores(mode, tokens, t, a, tmp_path, monkeypatch, numeric_mode)


def future_tokens_keep_earlier_scores(mode, tokens, t, a, tmp_path, monkeypatch, numeric_mode):
    assert tokens[t] != tg.BOS_ID
    changed = tokens.clone()
    future = changed[t:] != tg.BOS_ID  # documents keep their boundaries: same queue, batches and shapes
    changed[t:][future] = (changed[t:][future] + 7) % (VOCAB - 2) + 2
    b, *_ = run_mode(mode, changed, tmp_path, monkeypatch, numeric_mode)
    assert torch.equal(a[1 : t + 1], b[1 : t + 1]), f"{mode}: a distribution up to position {t} reads x_t or later"
    assert not torch.equal(a[t + 1 :], b[t + 1 :])  # the change is seen where it is allowed to be


@pytest.mark.parametrize("mode", MODES)
def test_every_scored_distribution_sums_to_one_and_every_target_is_scored_once(mode, tmp_path, monkeypatch,
                                                                              numeric_mode):
    tokens = stream(seed=1)
    dists, counts, rows = run_mode(mode, tokens, tmp_path, monkeypatch, numeric_mode)
    assert float((dists[1:].double().exp().sum(1) - 1).abs().max()) < 1e-5
    assert counts[0] == 0 and torch.all(counts[1:] == 1), "each target once, the tail included"
    assert all(r["tokens"] == tokens.numel() - 1 for r in rows.values())


def test_plain_eval_scores_every_target_once_tail_included(tmp_path, monkeypatch):
    tokens = stream(seed=2)  # 441 targets: 13 full rows of 32 and a tail of 25
    env = tiny_env(tmp_path, tmp_path, **SMALL)
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(tokens)
    assert (tokens.numel() - 1) % hp.train_seq_len != 0
    scored = []
    real_add = tg.BpbMeter.add
    monkeypatch.setattr(tg.BpbMeter, "add", lambda self, nll, b: scored.append(nll) or real_add(self, nll, b))
    tg.eval_val(model, val, hp, CPU)
    nll = torch.cat(scored)
    assert nll.numel() == tokens.numel() - 1
    assert tg.eval_batch_seqs(hp, CPU) == 3  # 768 // (8 x 32): the tail's batch is padded
    with torch.no_grad():  # independent reference: each TRAIN_SEQ_LEN row alone, then the tail alone
        n = tokens.numel() - 1
        rows = [model(tokens[a : min(a + 32, n)].long()[None], tokens[a + 1 : a + 33].long()[None], reduction="none")
                for a in range(0, n, 32)]
    assert torch.allclose(nll, torch.cat(rows), atol=1e-5)


def test_plain_eval_is_causal(tmp_path, monkeypatch):
    env = tiny_env(tmp_path, tmp_path, **SMALL)
    hp, model = tg.Hyperparameters.from_env(env), model_for(env)
    tokens, t = stream(seed=6), 200
    changed = tokens.clone()
    changed[t:] = torch.where(changed[t:] == tg.BOS_ID, changed[t:], (changed[t:] + 5) % (VOCAB - 2) + 2)
    real_add = tg.BpbMeter.add
    scores = []
    for stream_ in (tokens, changed):
        scored = []
        monkeypatch.setattr(tg.BpbMeter, "add", lambda self, nll, b: scored.append(nll) or real_add(self, nll, b))
        tg.eval_val(model, validation(stream_), hp, CPU)
        scores.append(torch.cat(scored))  # position j's NLL at index j - 1
    assert torch.equal(scores[0][: t - 1], scores[1][: t - 1]) and not torch.equal(scores[0], scores[1])


def test_sliding_windows_with_a_full_stride_are_the_plain_rows(tmp_path):
    """stride = window: the windows are the plain eval's rows, so both scorers must agree on every target."""
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, "SLIDING_WINDOW_ENABLED": 1, "EVAL_STRIDE": 32, "TTT_ENABLED": 0})
    tokens = stream(seed=7, lengths=(70, 61, 52, 45, 40, 33, 27, 20, 14, 9, 2))
    assert (tokens.numel() - 1) % 32 == 0  # no tail: a tail window would keep its full context, a tail row not
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(tokens)
    rows, _ = tg.eval_stages(model, val, hp, CPU, lambda *a, **k: None)
    assert rows[0]["val_bpb"] == pytest.approx(tg.eval_val(model, val, hp, CPU)[1], rel=1e-6)


def test_batches_of_short_documents_get_the_smaller_chunks(tmp_path):
    hp = hparams(tmp_path, TTT_SHORT_DOC_CHUNKS="2@10,4@40")
    # a document of n targets is n + 1 long in #2014's count (its BOS too); a batch takes its longest's size
    assert [tg.chunk_size_of([(0, n)], hp) for n in (1, 9, 10, 39, 40, 500)] == [2, 2, 4, 4, 8, 8]
    assert tg.chunk_size_of([(0, 3), (3, 6), (6, 46)], hp) == 8
    with pytest.raises(tg.HyperparameterError, match="TTT_SHORT_DOC_CHUNKS"):
        hparams(tmp_path, TTT_SHORT_DOC_CHUNKS="4:40")


def reference_lora_ttt_nll(model, val, hp) -> float:
    """Slow reference of score-first TTT: one document at a time, one chunk at a time; a chunk is scored by
    adapters trained on that document's earlier chunks only, then trained on unless it is the last."""
    total, seq_len = 0.0, hp.ttt_eval_seq_len
    pairs = (item.split("@") for item in hp.ttt_short_doc_chunks.split(",") if item)  # 'chunk@length,...'
    limits = sorted((int(n), int(c)) for c, n in pairs)
    for index, docs in tg.ttt_queue(val, hp):
        batch = tg.BatchedLoRA(model, hp, len(docs), seed=hp.seed * 1_000_003 + index)  # the code's A init
        longest = max(end - start for start, end in docs) + 1  # #2014: a batch's size, by its longest (with BOS)
        chunk = next((c for n, c in limits if longest <= n), hp.ttt_chunk_size)
        for slot, (start, end) in enumerate(docs):
            lora = tg.BatchedLoRA(model, hp, 1, seed=0)
            with torch.no_grad():
                for name, a in lora.a.items():
                    a.copy_(batch.a[name][slot : slot + 1])
            opt = torch.optim.SGD(lora.parameters(), lr=hp.ttt_lora_lr, momentum=hp.ttt_beta1,  # #1855's
                                  weight_decay=hp.ttt_weight_decay) if hp.ttt_optimizer == "sgd" else \
                torch.optim.AdamW(lora.parameters(), lr=hp.ttt_lora_lr, betas=(hp.ttt_beta1, hp.ttt_beta2), eps=1e-10,
                                  weight_decay=hp.ttt_weight_decay)
            for lo in range(0, end - start, chunk):
                hi = min(lo + chunk, end - start)
                a = start + max(0, hi - seq_len)
                x, y = val.tokens[a : start + hi].long()[None], val.tokens[a + 1 : start + hi + 1].long()[None]
                nll = model(x, y, reduction="none", span=seq_len, lora=lora.delta())[-(hi - lo):]
                total += float(nll.detach().sum())
                if hi < end - start:
                    opt.zero_grad()
                    nll.mean().backward()
                    opt.step()
    return total


def lora_ttt_total(env: dict, warm_up: bool = False) -> tuple[float, float, int]:
    """(the eval's NLL total, the reference's, graphs compiled by the timed eval) on stream(seed=3)."""
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(stream(seed=3))
    model.requires_grad_(False)
    want = reference_lora_ttt_nll(model, val, hp)
    if warm_up:
        tg.eval_warmup(model, hp, CPU, None)
    graphs = tg.compiled_graphs()
    meters, _ = tg.eval_ttt(model, val, hp, CPU, tg.StageMeters, lambda *a, **k: None)
    nll, tokens, _ = meters.meters["ttt_lora"].totals(CPU)
    assert tokens == val.tokens.numel() - 1
    return nll, want, tg.compiled_graphs() - graphs


@pytest.mark.parametrize("variant", [{}, dict(TTT_OPTIMIZER="sgd", TTT_LORA_LR=0.5, TTT_BETA1=0.5, TTT_WEIGHT_DECAY=2.0,
                                            TTT_MLP_LORA=0, TTT_O_LORA=0),
                                       dict(TTT_SHORT_DOC_CHUNKS="4@20,6@46")],
                         ids=["adam", "sgd_without_o_and_mlp_adapters", "short_doc_chunks"])
def test_lora_ttt_equals_the_score_first_reference(variant, tmp_path):
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, "TTT_WARM_START_A": 0, **variant})
    nll, want, _ = lora_ttt_total(env)
    assert nll == pytest.approx(want, rel=1e-5)
    model, val = model_for(env), validation(stream(seed=3))
    with torch.no_grad():  # and TTT mattered: the frozen model scores differently
        frozen = float(model(val.tokens[:-1].long()[None], val.tokens[1:].long()[None], reduction="sum"))
    assert abs(frozen - want) > 1e-3


def test_compiled_ttt_equals_the_reference_and_compiles_only_in_the_warm_up(tmp_path, monkeypatch):
    """The TTT scorer compiled as on CUDA (COMPILE=1: dynamic shapes; aot_eager here, the same graphs and
    guards without the CPU's slow codegen): the eval warm-up on random tokens builds every graph the timed
    eval needs, and the totals equal the slow reference."""
    monkeypatch.setattr(tg, "compiled_scorer",
                        functools.cache(lambda: tg.torch_compile(tg.scored_logp, dynamic=True, backend="aot_eager")))
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, "TTT_WARM_START_A": 0, "COMPILE": 1})
    torch._dynamo.reset()
    nll, want, graphs_in_eval = lora_ttt_total(env, warm_up=True)
    assert graphs_in_eval == 0
    assert nll == pytest.approx(want, rel=1e-5)


def test_global_sgd_lr_warms_up_to_the_peak_then_decays_as_the_records_do(tmp_path):
    """#1626-#1855's schedule, by hand: the warm-up reaches GLOBAL_TTT_LR at its last chunk, the cosine starts there
    over the chunks after it, and a warm-up longer than the chunks trained is cut to them."""
    c = math.cos(math.pi / 4)
    warm = hparams(tmp_path, GLOBAL_TTT_LR=0.001, GLOBAL_TTT_WARMUP_START_LR=0.0002, GLOBAL_TTT_WARMUP_CHUNKS=3)
    want = [0.0002, 0.0006, 0.001, 0.001, 0.0005 * (1 + c), 0.0005, 0.0005 * (1 - c)]
    assert [tg.global_ttt_lr_at(i, 7, warm) for i in range(7)] == pytest.approx(want)
    cold = hparams(tmp_path, GLOBAL_TTT_LR=0.001)
    assert [tg.global_ttt_lr_at(i, 4, cold) for i in range(4)] == pytest.approx(want[3:])
    long = hparams(tmp_path, GLOBAL_TTT_LR=0.001, GLOBAL_TTT_WARMUP_CHUNKS=10)
    assert [tg.global_ttt_lr_at(i, 3, long) for i in range(3)] == pytest.approx([0, 0.0005, 0.001])


@pytest.mark.parametrize("stream_order", ["queue", "record"])
@pytest.mark.parametrize("prefix", [5, 6])  # 2 and 5 documents a phase (not multiples of the batch), 3 and 6
def test_global_sgd_trains_only_on_token_positions_already_scored(prefix, stream_order, tmp_path, monkeypatch):
    """Every stream position a global-SGD step reads (input or target) was scored before it, or is the BOS
    that opens a document whose first target was: checked at token level, step by step, against the
    positions the meters scored so far; and the documents are the ones the record's rule picks."""
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, "PHASED_TTT_ENABLED": 1, "PHASED_TTT_PREFIX_DOCS": prefix,
                                          "GLOBAL_TTT_STREAM": stream_order})
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(stream(seed=4))
    tokens, scored, read = val.tokens, torch.zeros(val.tokens.numel(), dtype=torch.bool), []
    original = tg.global_sgd_backward

    def record(model_, val_, positions, hp_, rt):
        p = torch.from_numpy(positions)
        known = scored[p] | ((tokens[p] == tg.BOS_ID) & scored[(p + 1).clamp_max(tokens.numel() - 1)])
        assert bool(known.all()), f"global SGD read unscored positions {p[~known].tolist()}"
        read.append(p)
        original(model_, val_, positions, hp_, rt)

    def seen(name, positions, logp):
        scored[positions] = True

    monkeypatch.setattr(tg, "global_sgd_backward", record)
    observe_scores(monkeypatch, val, seen)
    trace, before = [], {k: v.clone() for k, v in model.state_dict().items()}
    record_ttt_events(trace, monkeypatch.setattr)
    tg.eval_ttt(model, val, hp, CPU, tg.StageMeters, lambda *a, **k: None)
    assert len(read) > 0 and any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    queue = tg.ttt_queue(val, hp)
    phases = tg.phase_plan([len(d) for _, d in queue], hp, 1)
    scored_docs = [[d for _, docs in queue[:bound] for d in docs] for bound, _ in phases]
    counts = [prefix * k // 2 for k in (1, 2)]
    if stream_order == "record":  # #1855: the scored documents by length, shortest first, cut to the count
        want = [sorted(docs, key=lambda d: (d[1] - d[0], d[0]))[:n] for docs, n in zip(scored_docs, counts)]
    else:
        want = [[d for _, docs in queue for d in docs][:n] for n in counts]
    assert [docs for event, docs in trace if event == "global_sgd"] == want


def claiming_worker(rank: int, world: int, init_file: str, out: str, env: dict) -> None:
    """One of two gloo ranks running phased TTT with batches claimed from the shared store."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    rt = cpu_runtime(rank=rank, world_size=world)
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(stream(seed=4))
    trace = []
    record_ttt_events(trace)
    meters, _ = tg.eval_ttt(model, val, hp, rt, tg.StageMeters, lambda *a, **k: None)
    torch.save(dict(trace=trace, totals=meters.meters["ttt_phased"].totals(rt)), f"{out}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("stream_order", ["queue", "record"])
def test_claimed_batches_on_two_ranks_score_each_document_once_and_phases_wait_for_them(tmp_path, stream_order):
    """Two ranks take batches from a shared counter: each batch is scored by exactly one rank, no rank scores
    a batch past a phase's bound before that phase or one below it after, so every document a phase trains on
    was scored before it on whichever rank; the totals are the one-process totals (warm-start A off: the only
    rank-dependent state). GLOBAL_TTT_STREAM=record: #1855's pool, one batch more at two ranks, scored first."""
    # the record's global-SGD LR: SMALL's 0.05 turns the gradients' other summation order into ~5e-6 of the total
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, "PHASED_TTT_ENABLED": 1, "TTT_WARM_START_A": 0,
                                          "GLOBAL_TTT_LR": 0.001, "GLOBAL_TTT_STREAM": stream_order})
    mp.spawn(claiming_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out"), env), nprocs=2, join=True)
    runs = [torch.load(tmp_path / f"out.{rank}", weights_only=False) for rank in range(2)]
    hp, val = tg.Hyperparameters.from_env(env), validation(stream(seed=4))
    queue = tg.ttt_queue(val, hp)
    index = {tuple(docs): b for b, docs in queue}
    bounds = [bound for bound, _ in tg.phase_plan([len(d) for _, d in queue], hp, 2)]
    assert bounds == ([1, 2] if stream_order == "queue" else [2, 3]) and len(queue) == 4
    scored = []
    for run in runs:
        phase = 0
        for event, docs in run["trace"]:
            if event == "global_sgd":
                phase += 1
                continue
            b = index[tuple(docs)]
            assert (bounds[phase - 1] if phase else 0) <= b < (bounds[phase] if phase < len(bounds) else len(queue))
            scored.append(b)
        assert phase == len(bounds)  # every rank joined every phase
    assert sorted(scored) == list(range(len(queue)))
    if stream_order == "record":  # one rank's pool has no batch in flight: other documents, other totals
        return
    one, _ = tg.eval_ttt(model_for(env), val, hp, CPU, tg.StageMeters, lambda *a, **k: None)
    want = one.meters["ttt_phased"].totals(CPU)
    assert runs[0]["totals"] == runs[1]["totals"] and runs[0]["totals"][1:] == want[1:]
    assert runs[0]["totals"][0] == pytest.approx(want[0], rel=1e-6)  # global SGD: another summation order


def test_a_documents_last_chunk_is_scored_but_never_trained_on(tmp_path):
    env = tiny_env(tmp_path, tmp_path, **SMALL)
    hp, model, val = tg.Hyperparameters.from_env(env), model_for(env), validation(stream(seed=5, lengths=(20, 7, 3)))
    docs = tg.ttt_queue(val, hp)[0][1]  # 21 targets (3 chunks), 8 (1 chunk), 4 (1 chunk)
    lora, meters = tg.new_lora(model, hp, 0, len(docs), {}), tg.StageMeters(["ttt_lora"], val, CPU)
    model.requires_grad_(False)
    tg.ttt_batch(model, docs, lora, hp, CPU, meters, "ttt_lora")
    assert meters.meters["ttt_lora"].totals(CPU)[1] == 33
    for name, b in lora.b.items():  # B starts at 0 and moves only by gradient steps
        assert torch.count_nonzero(b[0]) > 0 and torch.count_nonzero(b[1:]) == 0, name


def test_a_long_document_logs_progress_inside_its_batch(tmp_path, monkeypatch):
    """A batch holding a long document (a 25k-token one ran 90 min on a CPU without a line) logs its chunk
    steps through eval_ttt's log at most every TTT_PROGRESS_SECONDS: 0 here, so after every step."""
    hp, model = hparams(tmp_path), model_for(tiny_env(tmp_path, tmp_path, **SMALL))
    val = validation(stream(seed=5, lengths=(150, 20, 3)))
    docs = tg.ttt_queue(val, hp)[0][1]
    chunks = [tg.chunk_count(d, hp.ttt_chunk_size) for d in docs]
    lines = []
    tg.eval_ttt(model, val, hp, CPU, tg.StageMeters, lambda msg, **k: lines.append(msg))
    assert not any(line.startswith("ttc: ") for line in lines)  # a fast batch: no progress line at 30 s
    monkeypatch.setattr(tg, "TTT_PROGRESS_SECONDS", 0.0)
    lines.clear()
    tg.eval_ttt(model, val, hp, CPU, tg.StageMeters, lambda msg, **k: lines.append(msg))
    got = [re.fullmatch(r"ttc: chunk:(\d+)/(\d+) docs:(\d+) t:\d+\.\ds", line) for line in lines if "ttc" in line]
    assert chunks[0] == 19 and all(got)
    assert [tuple(map(int, m.groups())) for m in got] == \
        [(s + 1, chunks[0], sum(c > s for c in chunks)) for s in range(chunks[0])]
    assert lines.index(next(line for line in lines if line.startswith("ttp: b0/"))) > len(got)  # within the batch


def test_phased_ttt_with_no_phase_to_run_is_labelled_lora_ttt(tmp_path):
    """PHASED_TTT_PREFIX_DOCS past the queue: no global SGD runs, so the stage is LoRA TTT and says so, with the
    numbers of PHASED_TTT_ENABLED=0."""
    val, lines, totals = validation(stream(seed=3)), [], []
    for phased in (1, 0):
        env = tiny_env(tmp_path, tmp_path, **{**SMALL, "PHASED_TTT_ENABLED": phased, "PHASED_TTT_PREFIX_DOCS": 1000})
        hp = tg.Hyperparameters.from_env(env)
        rows, _ = tg.eval_stages(model_for(env), val, hp, CPU, lambda msg, **k: lines.append(msg))
        totals.append((rows[-1]["label"], rows[-1]["val_bpb"]))
    assert totals[0] == totals[1] and totals[0][0] == "quantized_ttt_lora"
    assert any(line.startswith("ttt: ") and line.endswith(" phase_docs:[]") for line in lines)


def test_a_flex_model_is_scored_through_an_sdpa_view_of_its_own_weights(tmp_path):
    """The eval stages run eager, where FlexAttention is slow: they score a view that shares the parameters
    and attends with SDPA, the same numbers as an SDPA model, and leave the model's own config as built."""
    rows = {}
    for backend in ("flex", "sdpa"):
        env = tiny_env(tmp_path, tmp_path, **{**SMALL, "SLIDING_WINDOW_ENABLED": 1, "TTT_ENABLED": 0,
                                              "ATTN_BACKEND": backend})
        model, hp = model_for(env), tg.Hyperparameters.from_env(env)
        rows[backend], _ = tg.eval_stages(model, validation(stream(seed=7)), hp, CPU, lambda *a, **k: None)
        assert model.hp.attn_backend == backend
    assert rows["flex"] == [dict(r, seconds=f["seconds"]) for r, f in zip(rows["sdpa"], rows["flex"])]
    view = tg.sdpa_view(model)
    assert view.hp.attn_backend == "sdpa" and all(a is b for a, b in zip(view.parameters(), model.parameters()))


def leaky_ttt_batch(model, docs, lora, hp, rt, meters, label, log=None):
    """The forbidden order, built only here: train on each chunk, then score it."""
    optimizer, span = tg.ttt_optimizer(lora, hp), hp.ttt_eval_seq_len
    c = tg.chunk_size_of(docs, hp)
    chunks = [tg.chunk_count(d, c) for d in docs]
    for step in range(chunks[0]):
        rows = sum(n > step for n in chunks)
        host, _ = tg.window_arrays(tg.chunk_windows(docs[:rows], step, c, hp), meters, span, hp)
        dev = tg.to_device(host, rt)
        for _ in range(hp.ttt_grad_steps):
            optimizer.zero_grad()
            logp = tg.scored_logp(model, dev, span, lora.delta(rows))
            (-logp.gather(-1, dev["targets"][..., None]).squeeze(-1) * dev["mask"]).sum().backward()
            optimizer.step()
        meters.add(label, tg.scored_logp(model, dev, span, lora.delta(rows)).detach(), dev)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    synthetic_corpus.build_corpus(out, seed=5, train_docs=300, val_docs=12, vocab_size=512)
    return out


def test_no_mode_beats_the_entropy_floor_but_a_leaky_ttt_does(synthetic, tmp_path, monkeypatch):
    floor = json.loads((synthetic / "floor.json").read_text())["val_floor_bpb"]
    # aggressive TTT (lr 0.03, 8 steps a chunk) that can memorize a chunk: honest order must still not win
    env = tiny_env(synthetic, tmp_path, **{**SMALL, "VOCAB_SIZE": 512, "TOKENIZER_PATH": synthetic / "tokenizer.model",
                                           "SLIDING_WINDOW_ENABLED": 1, "USE_HEDGE": 1, "NGRAM_TILT_ENABLED": 1,
                                           "PHASED_TTT_ENABLED": 1, "TTT_LORA_LR": 0.03, "TTT_GRAD_STEPS": 8,
                                           "TTT_CHUNK_SIZE": 16, "TTT_BATCH_SIZE": 4, "TTT_WARM_START_A": 0})
    hp = tg.Hyperparameters.from_env(env)
    val = tg.load_validation(hp, CPU, lambda *a, **k: None)
    monkeypatch.setattr(mixers.HedgeMixer, "WARMUP_TOKENS", 200)
    rows, _ = tg.eval_stages(model_for(env), val, hp, CPU, lambda *a, **k: None)
    honest = {r["label"]: r["val_bpb"] for r in rows}
    assert len(honest) == 6 and all(bpb > floor for bpb in honest.values()), (honest, floor)
    monkeypatch.setattr(tg, "ttt_batch", leaky_ttt_batch)
    leaky_hp = tg.replace(hp, sliding_window_enabled=False, use_hedge=False, ngram_tilt_enabled=False)
    rows, _ = tg.eval_stages(model_for(env), val, leaky_hp, CPU, lambda *a, **k: None)
    assert rows[-1]["val_bpb"] < floor < honest["quantized_ttt_phased"], (rows[-1], floor)


def test_hedge_experts_are_full_distributions_and_the_entropy_expert_is_gone():
    hedge = mixers.HedgeMixer(VOCAB, 0.1, torch.device("cpu"))
    prev = torch.randint(0, VOCAB, (50,))
    hedge.update(None, prev, prev.roll(1), prev.roll(2))
    logp = torch.log_softmax(torch.randn(50, VOCAB), -1)
    experts = hedge.experts(logp, prev, prev.roll(1))
    assert experts.shape == (4, 50, VOCAB)  # neural, unigram, bigram, trigram: no "entropy expert"
    assert torch.allclose(experts.exp().sum(-1), torch.ones(4, 50), atol=1e-5)


def test_tilt_is_the_renormalized_boost_of_the_hint():
    logp = torch.log_softmax(torch.randn(3, 10, dtype=torch.float64), -1)
    hints, beta = torch.tensor([4, -1, 0]), 2.625
    got = mixers.ngram_tilt(logp, hints, beta)
    p = logp.exp()
    for i, h in enumerate(hints.tolist()):
        want = p[i].clone()
        if h >= 0:
            want[h] *= math.exp(beta)
        assert torch.allclose(got[i].exp(), want / want.sum())


def slow_2135_hints(tokens: list[int], order: int, threshold: float) -> list[int]:
    """#2135's token-only rule (its online_ngram_state.c, restated): at position p the exact ORDER-1 tokens
    before p, over the whole stream so far; the continuation that first reached the top count is the hint if
    top / total >= threshold in float32. Then p is learned."""
    ctx, hints, counts, top = order - 1, [-1] * len(tokens), {}, {}
    for p in range(ctx, len(tokens)):
        key = tuple(tokens[p - ctx : p])
        seen = counts.setdefault(key, {})
        if seen and np.float32(top[key][1]) / np.float32(sum(seen.values())) >= np.float32(threshold):
            hints[p] = top[key][0]
        seen[tokens[p]] = seen.get(tokens[p], 0) + 1
        if key not in top or seen[tokens[p]] > top[key][1]:
            top[key] = (tokens[p], seen[tokens[p]])
    return hints


def test_ngram_hints_are_2135s_rule():
    tokens = [1, 5, 6, 7, 5, 6, 7, 5, 6, 1, 5, 6, 9, 5, 6]
    # a context seen once proposes what followed it (p = 6, 7, 8, 11); "5 6" at p = 9 has 7 twice: 7; at p = 12
    # it was followed by 7, 7, 1: 2/3 < 0.8, none; document bounds play no part (p = 11 reads across a BOS)
    assert mixers.ngram_hints(torch.tensor(tokens), order=3, threshold=0.8).tolist() == \
        [-1, -1, -1, -1, -1, -1, 7, 5, 6, 7, -1, 6, -1, -1, -1]
    gen = np.random.default_rng(0)
    for order, threshold in [(1, 0.3), (2, 0.5), (3, 0.8), (5, 0.6), (16, 0.8)]:
        phrases = gen.integers(0, 6, (5, 4))  # phrases, and copies of the first 300 tokens with 5 % noise
        base = np.where(gen.random(300) < 0.2, gen.integers(0, 6, 300), phrases[gen.integers(0, 5, 75)].ravel())
        tokens = np.concatenate([base] + [np.where(gen.random(300) < 0.05, gen.integers(0, 6, 300), base)] * 3)
        got = mixers.ngram_hints(torch.tensor(tokens, dtype=torch.int32), order, threshold)
        want = slow_2135_hints(tokens.tolist(), order, threshold)
        assert got.tolist() == want and sum(h >= 0 for h in want) > 20, (order, threshold)


@pytest.mark.parametrize("mode", ["tilt", "phased_ttt_tilt"])
def test_the_tilt_at_each_position_uses_that_positions_hint(mode, tmp_path, monkeypatch):
    """The tilted distribution at position p is the mode's own distribution at p boosted by the hint the
    independent reference builds for p from tokens[:p] (not p+1's, not p-1's)."""
    tokens = stream(seed=6)
    overrides, label = MODES[mode]
    env = tiny_env(tmp_path, tmp_path, **{**SMALL, **overrides})
    hp, val = tg.Hyperparameters.from_env(env), validation(tokens)
    dists = {}

    def seen(name, positions, logp):
        dists.setdefault(name, torch.zeros(tokens.numel(), VOCAB))[positions] = logp.float()

    observe_scores(monkeypatch, val, seen)
    tg.eval_stages(model_for(env), val, hp, CPU, lambda *a, **k: None)
    hints = torch.tensor(slow_2135_hints(tokens.tolist(), hp.ngram_tilt_order, hp.ngram_tilt_threshold))
    assert int((hints[1:] >= 0).sum()) > 50
    want = mixers.ngram_tilt(dists[label.removesuffix("_tilt")][1:], hints[1:], hp.ngram_tilt_beta)
    assert torch.allclose(dists[label][1:], want, atol=1e-5)
