"""A synthetic text corpus whose entropy floor (best possible val_bpb) is known exactly.

Usage:
    python data/synthetic_corpus.py --out data/datasets/synthetic_sp1024
    python data/synthetic_corpus.py --out DIR --seed 7 --train-docs 2000 --val-docs 200 --vocab-size 512
    python data/synthetic_corpus.py --print-floor data/datasets/synthetic_sp1024

The generator ("source") is fully determined by the seed:
  * an invented vocabulary of distinct, pronounceable lowercase words (1-3 syllables, 2-9 letters);
  * K latent topics with prior pi. A document first draws its topic k ~ pi, then runs topic k's
    first-order Markov chain START -> symbol -> ... -> END over the words and the sentence end ".".
  * every state (START, ".", each word) has a fixed sparse set of candidate successor words, shared
    by all topics; each topic ranks them in its own random order and gives rank r the weight
    1/r**zipf_exponent. A single transition is therefore weak evidence of the topic, while a few
    dozen words pin it down: predictions improve steadily with context length, from
    one_word_context_bpb (previous word only) down to the floor (see window_bpb in floor.json).
  * "." follows a word with a fixed probability; END follows "." (or, rarely, a word).
  * rendering is one-to-one: words joined by single spaces, "." glued to the word before it, the
    first word and every word after "." capitalized. `parse(render(seq)) == seq` always holds and
    is asserted for every sampled document. The text is pure ASCII.

The floor. For every document, log2 P(doc) = log2 sum_k pi_k prod_t T_k(s_t | s_t-1) is computed
exactly (float64, log-sum-exp over topics), including the final transition into END. The floor in
bits per byte is sum(-log2 P(doc)) / sum(UTF-8 bytes of the doc texts); no model can beat it in
expectation, whatever its tokenizer. END is part of the bits because in the token stream a
document's end is the BOS of the next document, which the model must predict too (BOS is a
scored target with 0 bytes). Two small edge effects make the trainer's val stream differ slightly:
the END of the last val document is never scored, and the trainer may trim the stream's tail.

Output directory (the layout of any build_shards.py output, plus the floor):
    docs_selected.jsonl       all documents, val first: {"text", "topic", "log2p"}
    tokenizer.model/.vocab    SentencePiece BPE trained on the train documents
    fineweb_val_000000.bin    val shards (the first --val-docs documents)
    fineweb_train_000000.bin  train shards
    build_info.json           see build_shards.py
    floor.json                val_floor_bpb, train_floor_bpb, val_bits, val_bytes, train_bits, train_bytes,
                              val_docs, train_docs, val_tokens, val_floor_loss_nats_per_token (approximate),
                              seed, generator_params, topic_prior, topic_known_bpb, one_word_context_bpb,
                              topic_entropy_bits, expected_doc_words, expected_doc_bytes,
                              window_bpb {"n": best bpb seeing only the last n symbols}, vocab_size,
                              tokenizer_sha256, note
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

import build_shards

DOT = "."
ONSETS = "bdfgklmnprstvz"
VOWELS = "aeiou"
CODAS = "klmnrst"
SYLLABLE_COUNT_PROBS = (0.3, 0.45, 0.25)  # words of 1, 2, 3 syllables
WORD_PATTERN = re.compile(r"[a-z]+")
TOKEN_PATTERN = re.compile(r"([A-Za-z][a-z]*)(\.?)")
CONTEXT_WINDOWS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class GeneratorParams:
    n_words: int = 1000              # invented vocabulary size
    n_topics: int = 16               # K latent topics
    successors: int = 128            # candidate successor words per state, shared by the topics
    zipf_exponent: float = 1.0       # a topic's weight for its rank-r successor ~ 1 / r**exponent
    p_dot: float = 0.09              # word -> "." (about 11 words per sentence)
    p_end_after_dot: float = 0.045   # "." -> END (about 22 sentences per document)
    p_end_after_word: float = 0.001  # word -> END: a document ending without "."
    prior_concentration: float = 4.0  # Dirichlet concentration of the topic prior


class Source(NamedTuple):
    """The generator. States: word ids 0..V-1, then DOT, START, END. Each state's
    successors sit in slots: slot 0 = DOT, slot 1 = END, then the candidate words."""
    params: GeneratorParams
    seed: int
    words: tuple[str, ...]
    word_index: dict[str, int]
    topic_prior: np.ndarray      # [K] float64
    successor_ids: np.ndarray    # [S, slots] next-state id of each slot (END's row is unused)
    successor_probs: np.ndarray  # [K, S, slots] float64 T_k(slot | state); rows sum to 1
    slot_of: np.ndarray          # [S, S] slot of (state, next) or -1 when next never follows state

    @property
    def dot(self) -> int:
        return len(self.words)

    @property
    def start(self) -> int:
        return len(self.words) + 1

    @property
    def end(self) -> int:
        return len(self.words) + 2


class Document(NamedTuple):
    seq: tuple[str, ...]  # words and "."; START and END are implicit
    text: str
    log2p: float          # log2 P(doc), topic summed out, END transition included
    topic: int            # the latent topic it was drawn from (not needed for the floor)


# ----------------------------------------------------------------------------
# Building the source
# ----------------------------------------------------------------------------

def _invent_words(n_words: int, rng: np.random.Generator) -> tuple[str, ...]:
    words: dict[str, None] = {}  # an insertion-ordered set keeps the result deterministic
    while len(words) < n_words:
        n_syllables = rng.choice(3, p=SYLLABLE_COUNT_PROBS) + 1
        word = ""
        for _ in range(n_syllables):
            word += ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))]
            if rng.random() < 0.4:
                word += CODAS[rng.integers(len(CODAS))]
        words[word] = None
    return tuple(words)


def _zipf_weights(count: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def _dot_end_probs(state_kind: str, params: GeneratorParams) -> tuple[float, float]:
    """(P(DOT), P(END)) from a state; the candidate words share the rest."""
    if state_kind == "start":  # a document starts with a word
        return 0.0, 0.0
    if state_kind == "dot":  # no "." right after "."; this keeps rendering one-to-one
        return 0.0, params.p_end_after_dot
    return params.p_dot, params.p_end_after_word


def _check_params(params: GeneratorParams) -> None:
    if params.n_topics < 1 or not 1 <= params.successors <= params.n_words:
        raise ValueError(f"need n_topics >= 1 and 1 <= successors <= n_words: {params}")
    if not 0 < params.p_dot + params.p_end_after_word < 1 or not 0 < params.p_end_after_dot < 1:
        raise ValueError(f"transition probabilities out of range: {params}")


def make_source(seed: int = 1337, params: GeneratorParams = GeneratorParams()) -> Source:
    """Build the generator deterministically from `seed`."""
    _check_params(params)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    words = _invent_words(params.n_words, rng)
    n_states, n_topics = len(words) + 3, params.n_topics
    dot, start, end = len(words), len(words) + 1, len(words) + 2
    prior = rng.dirichlet(np.full(n_topics, params.prior_concentration))
    zipf = _zipf_weights(params.successors, params.zipf_exponent)
    ids = np.zeros((n_states, params.successors + 2), dtype=np.int64)
    probs = np.zeros((n_topics, n_states, params.successors + 2))
    for state in range(n_states - 1):  # END has no successors
        ids[state] = [dot, end, *rng.choice(len(words), params.successors, replace=False)]
        p_dot, p_end = _dot_end_probs("start" if state == start else "dot" if state == dot else "word", params)
        for topic in range(n_topics):
            ranked = zipf[rng.permutation(params.successors)]  # this topic's own ranking
            probs[topic, state] = [p_dot, p_end, *((1.0 - p_dot - p_end) * ranked)]
    slot_of = np.full((n_states, n_states), -1, dtype=np.int32)
    slot_of[np.arange(n_states - 1)[:, None], ids[:-1]] = np.arange(ids.shape[1])
    return Source(params, seed, words, {w: i for i, w in enumerate(words)}, prior, ids, probs, slot_of)


# ----------------------------------------------------------------------------
# Rendering: symbol sequence <-> text, one-to-one
# ----------------------------------------------------------------------------

def render(seq: Sequence[str]) -> str:
    """Text of a symbol sequence: single spaces, "." glued on, sentence starts capitalized."""
    parts: list[str] = []
    for position, symbol in enumerate(seq):
        if symbol == DOT:
            if position == 0 or seq[position - 1] == DOT:
                raise ValueError(f"'.' must follow a word (position {position})")
            parts[-1] += DOT
        elif WORD_PATTERN.fullmatch(symbol):
            sentence_start = position == 0 or seq[position - 1] == DOT
            parts.append(symbol.capitalize() if sentence_start else symbol)
        else:
            raise ValueError(f"not a lowercase ASCII word: {symbol!r}")
    if not parts:
        raise ValueError("cannot render an empty sequence")
    return " ".join(parts)


def parse(text: str) -> tuple[str, ...]:
    """Inverse of `render`; rejects any text `render` cannot produce."""
    seq: list[str] = []
    for token in text.split(" "):
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise ValueError(f"not a rendered document: bad token {token!r}")
        word, dot = match.groups()
        sentence_start = not seq or seq[-1] == DOT
        if word[0].isupper() != sentence_start:
            raise ValueError(f"not a rendered document: wrong capitalization of {token!r}")
        seq.append(word.lower())
        if dot:
            seq.append(DOT)
    return tuple(seq)


# ----------------------------------------------------------------------------
# Probabilities and sampling
# ----------------------------------------------------------------------------

def _log2_sum_exp2(values: np.ndarray) -> float:
    peak = float(np.max(values))
    if peak == -math.inf:
        return -math.inf
    return peak + math.log2(float(np.sum(np.exp2(values - peak))))


def _log2(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):  # log2(0) = -inf marks an impossible transition
        return np.log2(probs)


def _state_ids(source: Source, seq: Sequence[str]) -> np.ndarray:
    try:
        body = [source.dot if s == DOT else source.word_index[s] for s in seq]
    except KeyError as error:
        raise ValueError(f"word {error.args[0]!r} is not in the source's vocabulary") from None
    return np.array([source.start, *body, source.end], dtype=np.int64)


def transition_log2probs(source: Source, seq: Sequence[str]) -> np.ndarray:
    """[K, T] log2 T_k(s_t | s_t-1) for every transition of START, seq, END."""
    states = _state_ids(source, seq)
    slots = source.slot_of[states[:-1], states[1:]]
    log2p = _log2(source.successor_probs[:, states[:-1], np.maximum(slots, 0)])
    log2p[:, slots < 0] = -math.inf
    return log2p


def doc_log2prob(source: Source, seq: Sequence[str]) -> float:
    """Exact log2 P(seq), summing over topics, including the END transition."""
    per_topic = transition_log2probs(source, seq).sum(axis=1)
    return _log2_sum_exp2(per_topic + np.log2(source.topic_prior))


def _run_chains(source: Source, topics: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Run all documents' chains in lockstep. Returns each document's state ids
    (without START/END) and its log2 P(doc | topic j) for every topic j."""
    n_docs = topics.size
    cdf = np.cumsum(source.successor_probs, axis=2)
    cdf[:, :, -1] = 1.0  # the last slot is always a word with positive weight
    state = np.full(n_docs, source.start)
    log2p_given_topic = np.zeros((n_docs, source.topic_prior.size))
    active = np.arange(n_docs)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    while active.size:
        here = state[active]
        slot = (cdf[topics[active], here] <= rng.random(active.size)[:, None]).sum(axis=1)
        log2p_given_topic[active] += _log2(source.successor_probs[:, here, slot]).T
        nxt = source.successor_ids[here, slot]
        steps.append((active, nxt))
        state[active] = nxt
        active = active[nxt != source.end]
    doc_index = np.concatenate([a for a, _ in steps])
    symbols = np.concatenate([n for _, n in steps])
    order = np.argsort(doc_index, kind="stable")  # stable: keeps each document's time order
    per_doc = np.split(symbols[order], np.cumsum(np.bincount(doc_index, minlength=n_docs))[:-1])
    return [ids[:-1] for ids in per_doc], log2p_given_topic  # drop the END symbol


def sample_documents(source: Source, rng: np.random.Generator, n_docs: int) -> list[Document]:
    """Draw `n_docs` documents; their log2p is accumulated while sampling."""
    topics = rng.choice(source.topic_prior.size, size=n_docs, p=source.topic_prior)
    id_seqs, log2p_given_topic = _run_chains(source, topics, rng)
    log2_prior = np.log2(source.topic_prior)
    vocabulary = (*source.words, DOT)
    docs = []
    for ids, topic, per_topic in zip(id_seqs, topics, log2p_given_topic):
        seq = tuple(vocabulary[i] for i in ids)
        text = render(seq)
        assert parse(text) == seq, f"render/parse is not one-to-one for {text!r}"
        docs.append(Document(seq, text, _log2_sum_exp2(per_topic + log2_prior), int(topic)))
    return docs


def sample_document(source: Source, rng: np.random.Generator) -> Document:
    return sample_documents(source, rng, 1)[0]


# ----------------------------------------------------------------------------
# Floors and bounds
# ----------------------------------------------------------------------------

def floor_stats(docs: Sequence[Document]) -> dict:
    """Total bits, bytes and bits per byte of a set of documents."""
    bits = -sum(doc.log2p for doc in docs)
    n_bytes = sum(len(doc.text.encode("utf-8")) for doc in docs)
    return {"bits": bits, "bytes": n_bytes, "bpb": bits / n_bytes, "docs": len(docs)}


def expected_visits(source: Source) -> np.ndarray:
    """[K, S] expected number of times each state is left per document, per topic
    (START once), from the fundamental matrix of each absorbing chain."""
    n_topics, n_states, _ = source.successor_probs.shape
    transient = source.end  # states 0..end-1 are transient, END absorbs
    rows = np.arange(n_states)[:, None]
    start_row = np.zeros(transient)
    start_row[source.start] = 1.0
    visits = np.zeros((n_topics, n_states))
    for topic in range(n_topics):
        q = np.zeros((n_states, n_states))
        q[rows, source.successor_ids] = source.successor_probs[topic]
        visits[topic, :transient] = np.linalg.solve((np.eye(transient) - q[:transient, :transient]).T, start_row)
    return np.where(visits > 1e-12, visits, 0.0)  # unreachable states: exactly 0, not round-off


def _expected_log2(probs: np.ndarray, log2q: np.ndarray) -> np.ndarray:
    """sum over slots of p * log2 q, where 0 * log2 0 counts as 0."""
    return (probs * np.where(probs > 0, log2q, 0.0)).sum(axis=-1)


def context_bounds(source: Source, visits: np.ndarray | None = None) -> dict:
    """Exact expectations per document, in bits per byte (ratio of expectations):
    topic_known_bpb       entropy when the topic is given: the floor minus at most H(topic)/bytes;
    one_word_context_bpb  the best any model can do that sees only the previous word;
    and the expected words and bytes per document. `visits`: expected_visits(source), if known."""
    visits = expected_visits(source) if visits is None else visits     # [K, S]
    occupancy = source.topic_prior[:, None] * visits                     # P(topic) * E[visits]
    probs = source.successor_probs                                       # [K, S, slots]
    entropy_rows = -_expected_log2(probs, _log2(probs))                 # [K, S]
    with np.errstate(invalid="ignore"):  # states no topic reaches: 0/0
        topic_posterior = np.nan_to_num(occupancy / occupancy.sum(axis=0, keepdims=True))
    one_word_model = np.einsum("ks,ksj->sj", topic_posterior, probs)    # P(slot | previous word)
    cross_rows = -_expected_log2(probs, _log2(one_word_model)[None])    # [K, S]
    byte_counts = np.array([len(w) + 1 for w in source.words] + [1, 0, 0])  # word + space; "." is 1 byte
    expected_bytes = float((occupancy * byte_counts).sum()) - 1.0       # no space before the first word
    return {
        "topic_known_bpb": float((occupancy * entropy_rows).sum()) / expected_bytes,
        "one_word_context_bpb": float((occupancy * cross_rows).sum()) / expected_bytes,
        "topic_entropy_bits": float(-(source.topic_prior * np.log2(source.topic_prior)).sum()),
        "expected_doc_words": float(occupancy[:, : source.dot].sum()),
        "expected_doc_bytes": expected_bytes,
    }


def _window_posteriors(log2p: np.ndarray, log2_occupancy: np.ndarray, log2_prior: np.ndarray,
                       states: np.ndarray, window: int) -> np.ndarray:
    """[K, T] log2 P(topic, last `window` symbols) before each transition t."""
    cumulative = np.concatenate([np.zeros((log2p.shape[0], 1)), np.cumsum(log2p, axis=1)], axis=1)
    t = np.arange(log2p.shape[1])
    first = t - window + 1  # index (in states) of the oldest symbol the predictor sees
    from_start = log2_prior[:, None] + cumulative[:, t]  # the window reaches START: the whole prefix
    first_clipped = np.maximum(first, 0)
    inside = log2_occupancy[:, states[first_clipped]] + cumulative[:, t] - cumulative[:, first_clipped]
    return np.where(first <= 0, from_start, inside)


def context_window_bpb(source: Source, docs: Sequence[Document], windows: Sequence[int] = CONTEXT_WINDOWS,
                       visits: np.ndarray | None = None) -> dict:
    """Bits per byte on `docs` of the Bayes predictor that sees only the last n symbols
    (n in `windows`; it knows when the window reaches the document start). It weights
    topics by P(topic) * E[visits to the window's first symbol] * P(window | topic), which
    is exact for a window at a random position. Shows how much longer context is worth."""
    visits = expected_visits(source) if visits is None else visits
    occupancy = source.topic_prior[:, None] * visits
    log2_occupancy, log2_prior = _log2(occupancy), np.log2(source.topic_prior)
    bits = dict.fromkeys(windows, 0.0)
    for doc in docs:
        log2p = transition_log2probs(source, doc.seq)  # finite: every topic allows every sampled step
        states = _state_ids(source, doc.seq)
        for window in windows:
            joint = _window_posteriors(log2p, log2_occupancy, log2_prior, states, window)
            joint -= joint.max(axis=0, keepdims=True)
            posterior = np.exp2(joint) / np.exp2(joint).sum(axis=0, keepdims=True)
            bits[window] -= np.log2((posterior * np.exp2(log2p)).sum(axis=0)).sum()
    n_bytes = sum(len(doc.text.encode("utf-8")) for doc in docs)
    return {str(window): float(total / n_bytes) for window, total in bits.items()}


# ----------------------------------------------------------------------------
# Building a dataset directory
# ----------------------------------------------------------------------------

DEFAULT_SEED = 1337
DEFAULT_TRAIN_DOCS = 4000  # about 4.9 MB of text
DEFAULT_VAL_DOCS = 300     # about 370 KB of text
DEFAULT_VOCAB_SIZE = 1024


def generate_splits(source: Source, val_docs: int, train_docs: int) -> tuple[list[Document], list[Document]]:
    """Val and train documents from independent seeded streams, so the val set
    does not change when --train-docs does."""
    val_stream, train_stream = np.random.SeedSequence([source.seed, 1]).spawn(2)
    val = sample_documents(source, np.random.default_rng(val_stream), val_docs)
    train = sample_documents(source, np.random.default_rng(train_stream), train_docs)
    return val, train


def write_documents(path: Path, docs: Sequence[Document]) -> None:
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"text": doc.text, "topic": doc.topic, "log2p": doc.log2p}) + "\n")
    os.replace(tmp, path)


def floor_report(source: Source, val: Sequence[Document], train: Sequence[Document], build_info: dict) -> dict:
    """Contents of floor.json."""
    val_floor, train_floor = floor_stats(val), floor_stats(train)
    visits = expected_visits(source)  # one dense solve per topic: do it once
    scored_tokens = max(build_info["val_tokens"] - 1, 1)  # the first BOS is never a target
    return {
        "val_floor_bpb": val_floor["bpb"],
        "train_floor_bpb": train_floor["bpb"],
        "val_bits": val_floor["bits"],
        "val_bytes": val_floor["bytes"],
        "train_bits": train_floor["bits"],
        "train_bytes": train_floor["bytes"],
        "val_docs": len(val),
        "train_docs": len(train),
        "val_tokens": build_info["val_tokens"],
        # approximate: the trainer may trim the stream tail and never scores the last END
        "val_floor_loss_nats_per_token": val_floor["bits"] * math.log(2) / scored_tokens,
        "seed": source.seed,
        "generator_params": asdict(source.params),
        "topic_prior": source.topic_prior.tolist(),
        **context_bounds(source, visits),
        # best bpb on the val docs of a predictor that sees only the last n symbols
        "window_bpb": context_window_bpb(source, val, visits=visits),
        "vocab_size": build_info["vocab_size"],
        "tokenizer_sha256": build_info["tokenizer_sha256"],
        "note": "floor = sum(-log2 P(doc)) / sum(UTF-8 bytes), topic summed out, END (the next BOS) included",
    }


def build_corpus(out_dir: str | os.PathLike, seed: int = DEFAULT_SEED, train_docs: int = DEFAULT_TRAIN_DOCS,
                 val_docs: int = DEFAULT_VAL_DOCS, vocab_size: int = DEFAULT_VOCAB_SIZE,
                 params: GeneratorParams = GeneratorParams()) -> dict:
    """Generate documents, build tokenizer + shards via build_shards, write floor.json."""
    if val_docs <= 0 or train_docs <= 0:
        raise ValueError(f"--val-docs and --train-docs must be positive, got {val_docs} and {train_docs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = make_source(seed, params)
    val, train = generate_splits(source, val_docs, train_docs)
    docs_path = out_dir / "docs_selected.jsonl"
    write_documents(docs_path, [*val, *train])
    build_info = build_shards.build_dataset(
        [doc.text for doc in (*val, *train)], out_dir, val_docs=val_docs, vocab_size=vocab_size,
        normalization="identity", seed=seed, input_files=[str(docs_path)],
    )
    if build_info["val_bytes"] != build_info["val_bytes_token_rule"] or build_info["roundtrip_mismatch_docs"]:
        raise RuntimeError(f"tokenizer does not preserve the text's bytes: {build_info}")
    report = floor_report(source, val, train, build_info)
    build_shards.write_json(out_dir / "floor.json", report)
    return report


def read_floor(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "floor.json"
    if not path.is_file():
        raise ValueError(f"{path} not found; build the corpus first with --out {directory}")
    return json.loads(path.read_text(encoding="utf-8"))


def format_floor(report: dict) -> str:
    windows = " ".join(f"{n}:{report['window_bpb'][n]:.4f}" for n in sorted(report["window_bpb"], key=int))
    return (f"val_floor_bpb:{report['val_floor_bpb']:.6f} train_floor_bpb:{report['train_floor_bpb']:.6f} "
            f"val_bits:{report['val_bits']:.1f} val_bytes:{report['val_bytes']} val_docs:{report['val_docs']}\n"
            f"best bpb seeing only the last n symbols (words or '.'): {windows}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Synthetic corpus with an exactly known entropy floor.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", help="output dataset directory")
    action.add_argument("--print-floor", metavar="DIR", help="print the floor of an existing directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--train-docs", type=int, default=DEFAULT_TRAIN_DOCS)
    parser.add_argument("--val-docs", type=int, default=DEFAULT_VAL_DOCS)
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        if args.print_floor:
            report = read_floor(args.print_floor)
        else:
            started = time.perf_counter()
            report = build_corpus(args.out, args.seed, args.train_docs, args.val_docs, args.vocab_size)
            print(f"wrote {args.out} in {time.perf_counter() - started:.1f}s "
                  f"({report['train_bytes']:,} train bytes, {report['val_bytes']:,} val bytes)")
    except ValueError as error:
        raise SystemExit(f"synthetic_corpus: error: {error}") from None
    print(format_floor(report))
    return report


if __name__ == "__main__":
    main()
