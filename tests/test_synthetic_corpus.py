"""The synthetic corpus: one-to-one rendering, determinism, exact document
probabilities, a floor that Monte Carlo confirms, and a latent topic that makes
long context pay off."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import sentencepiece as spm

import shard_io
import synthetic_corpus as sc


@pytest.fixture(scope="module")
def source():
    return sc.make_source(seed=1337)


@pytest.fixture(scope="module")
def val_docs(source):
    return sc.generate_splits(source, val_docs=sc.DEFAULT_VAL_DOCS, train_docs=1)[0]


@pytest.fixture(scope="module")
def fresh_docs(source):
    """A large independent sample, for Monte-Carlo checks."""
    return sc.sample_documents(source, np.random.default_rng(2024), 2000)


@pytest.fixture(scope="module")
def visits(source):
    return sc.expected_visits(source)


@pytest.fixture(scope="module")
def bounds(source, visits):
    return sc.context_bounds(source, visits)


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------

def test_render_parse_is_one_to_one_on_sampled_docs(val_docs):
    texts = set()
    for doc in val_docs:
        assert sc.parse(doc.text) == doc.seq and sc.render(doc.seq) == doc.text
        assert doc.text.isascii() and "  " not in doc.text and ".." not in doc.text
        assert doc.text[0].isupper()
        texts.add(doc.text)
    assert len(texts) == len(val_docs)
    assert any(doc.seq[-1] == "." for doc in val_docs) and any(doc.seq[-1] != "." for doc in val_docs)


def test_render_example_and_rejections():
    seq = ("bako", "tir", ".", "lemo", "sa", ".")
    assert sc.render(seq) == "Bako tir. Lemo sa."
    assert sc.parse("Bako tir. Lemo sa.") == seq
    for bad in [(".", "bako"), ("bako", ".", "."), ("Bako",), ("ba ko",), ()]:
        with pytest.raises(ValueError):
            sc.render(bad)
    for bad in ["", "bako", "Bako  tir", "Bako Tir", "Bako tir. lemo", "Bako..", "Bako tir ", "Bako, tir", "Bakö"]:
        with pytest.raises(ValueError):
            sc.parse(bad)


# ----------------------------------------------------------------------------
# Determinism and the source's shape
# ----------------------------------------------------------------------------

def test_same_seed_same_corpus_other_seed_other_corpus(source):
    again = sc.make_source(seed=1337)
    assert again.words == source.words
    assert np.array_equal(again.successor_ids, source.successor_ids)
    assert np.array_equal(again.topic_prior, source.topic_prior)
    first = [d.text for d in sc.sample_documents(source, np.random.default_rng(5), 20)]
    second = [d.text for d in sc.sample_documents(again, np.random.default_rng(5), 20)]
    assert first == second
    other = sc.make_source(seed=1338)
    assert other.words != source.words


def test_vocabulary_and_transition_tables(source):
    params = source.params
    assert len(set(source.words)) == len(source.words) == params.n_words
    assert all(w.isalpha() and w.islower() and w.isascii() and 2 <= len(w) <= 9 for w in source.words)
    assert math.isclose(source.topic_prior.sum(), 1.0, abs_tol=1e-12)
    live = source.successor_probs[:, : source.end]  # END has no successors
    assert np.allclose(live.sum(axis=2), 1.0, atol=1e-12)
    word_slots = source.successor_ids[: source.end, 2:]
    assert all(len(set(row)) == params.successors for row in word_slots.tolist())
    # topics share each state's successors but rank them differently
    first_word_topic0, first_word_topic1 = live[0, 0, 2:], live[1, 0, 2:]
    assert np.allclose(np.sort(first_word_topic0), np.sort(first_word_topic1))
    assert not np.allclose(first_word_topic0, first_word_topic1)


def test_val_split_does_not_depend_on_train_size(source):
    small = sc.generate_splits(source, 10, 5)[0]
    large = sc.generate_splits(source, 10, 50)[0]
    assert [d.text for d in small] == [d.text for d in large]


# ----------------------------------------------------------------------------
# Exact probabilities
# ----------------------------------------------------------------------------

def slow_topic_probs(source, seq) -> list[Fraction]:
    """Independent reference: plain Python, exact rationals (products of a few hundred
    probabilities underflow float64): pi_k * prod_t T_k(s_t | s_t-1) for every topic k."""
    n_words = len(source.words)
    state_of = {w: i for i, w in enumerate(source.words)}
    states = [n_words + 1] + [n_words if s == "." else state_of[s] for s in seq] + [n_words + 2]
    joint = []
    for topic, prior in enumerate(source.topic_prior.tolist()):
        table = {}
        for state in set(states[:-1]):
            ids, probs = source.successor_ids[state].tolist(), source.successor_probs[topic, state].tolist()
            table[state] = dict(zip(ids, probs))
        product = Fraction(prior)
        for prev, nxt in zip(states[:-1], states[1:]):
            product *= Fraction(table[prev].get(nxt, 0.0))
        joint.append(product)
    return joint


def fraction_log2(value: Fraction) -> float:
    return math.log2(value.numerator) - math.log2(value.denominator)


def test_doc_log2prob_matches_sampling_and_slow_reference(source, val_docs):
    for doc in val_docs[:12]:
        exact = sc.doc_log2prob(source, doc.seq)
        assert exact == pytest.approx(doc.log2p, rel=1e-10, abs=1e-9)
        assert exact == pytest.approx(fraction_log2(sum(slow_topic_probs(source, doc.seq))), rel=1e-10, abs=1e-9)
        assert exact < 0


def test_short_docs_sum_over_topics(source, val_docs):
    """Every prefix of a document is a possible document (END may follow any symbol but
    START). Short ones leave the topic uncertain, so the sum over topics really matters."""
    ambiguous = 0
    for doc in val_docs[:20]:
        for length in range(1, 4):
            joint = slow_topic_probs(source, doc.seq[:length])
            exact = sc.doc_log2prob(source, doc.seq[:length])
            assert exact == pytest.approx(fraction_log2(sum(joint)), rel=1e-12, abs=1e-12)
            ambiguous += exact - fraction_log2(max(joint)) > 0.1
    assert ambiguous >= 10


def test_end_transition_is_part_of_the_probability(source, val_docs):
    doc = val_docs[0]
    prefix_only = sc.doc_log2prob(source, doc.seq[:-1] if doc.seq[-1] != "." else doc.seq[:-2])
    assert prefix_only != pytest.approx(sc.doc_log2prob(source, doc.seq))
    with pytest.raises(ValueError, match="not in the source's vocabulary"):
        sc.doc_log2prob(source, ("zzzzzzzzzz",))


# ----------------------------------------------------------------------------
# The floor
# ----------------------------------------------------------------------------

def test_floor_is_in_the_target_band(val_docs):
    floor = sc.floor_stats(val_docs)
    assert 0.8 <= floor["bpb"] <= 1.3
    assert 300_000 <= floor["bytes"] <= 500_000  # demo-sized val text


def test_floor_matches_monte_carlo_and_the_analytic_bounds(val_docs, fresh_docs, bounds):
    floor = sc.floor_stats(val_docs)["bpb"]
    mc = sc.floor_stats(fresh_docs)
    assert mc["bpb"] == pytest.approx(floor, rel=0.03)
    mean_bytes = mc["bytes"] / len(fresh_docs)
    assert mean_bytes == pytest.approx(bounds["expected_doc_bytes"], rel=0.06)
    # H(doc | topic) <= H(doc) <= H(doc | topic) + H(topic), per byte
    lower = bounds["topic_known_bpb"]
    upper = lower + bounds["topic_entropy_bits"] / bounds["expected_doc_bytes"]
    assert lower * 0.98 <= mc["bpb"] <= upper * 1.02


def test_latent_topic_makes_context_pay(source, fresh_docs, bounds):
    """Bits per byte of (a) a predictor told the true topic, (b) a predictor that sees only
    the previous symbol, with P(topic | symbol) estimated on one half of the sample and scored
    on the other. Knowing the topic (which long context reveals) must be worth a lot."""
    fit, score = fresh_docs[:1000], fresh_docs[1000:]
    counts = np.full((source.topic_prior.size, source.end + 1), 1e-3)
    for doc in fit:
        np.add.at(counts[doc.topic], sc._state_ids(source, doc.seq)[:-1], 1)
    posterior = counts / counts.sum(axis=0, keepdims=True)
    bits_topic_known = bits_one_word = 0.0
    for doc in score:
        log2p = sc.transition_log2probs(source, doc.seq)  # [K, T]
        previous = sc._state_ids(source, doc.seq)[:-1]
        bits_topic_known -= log2p[doc.topic].sum()
        bits_one_word -= np.log2((posterior[:, previous] * np.exp2(log2p)).sum(axis=0)).sum()
    n_bytes = sum(len(doc.text) for doc in score)
    floor = sc.floor_stats(score)["bpb"]
    assert bits_topic_known / n_bytes == pytest.approx(bounds["topic_known_bpb"], rel=0.03)
    assert bits_topic_known / n_bytes <= floor
    assert bits_one_word / n_bytes >= 1.12 * floor
    assert bits_one_word / n_bytes >= 0.99 * bounds["one_word_context_bpb"]  # the exact optimum is a lower bound
    assert bounds["one_word_context_bpb"] >= 1.12 * floor


def test_longer_context_keeps_helping(source, val_docs, bounds, visits):
    """The Bayes predictor that sees the last n symbols improves all the way from n=1 to
    n~16 and reaches the floor only with long context."""
    floor = sc.floor_stats(val_docs[:150])["bpb"]
    curve = sc.context_window_bpb(source, val_docs[:150], windows=(1, 2, 4, 8, 16, 64), visits=visits)
    values = [curve[n] for n in ("1", "2", "4", "8", "16", "64")]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert curve["1"] == pytest.approx(bounds["one_word_context_bpb"], rel=0.03)
    assert curve["4"] >= 1.04 * floor and curve["8"] >= 1.005 * floor
    assert curve["64"] == pytest.approx(floor, rel=0.002)


# ----------------------------------------------------------------------------
# The CLI and the dataset directory
# ----------------------------------------------------------------------------

def test_cli_builds_shards_and_floor(tmp_path, capsys):
    out = tmp_path / "synthetic"
    report = sc.main(["--out", str(out), "--train-docs", "200", "--val-docs", "40", "--vocab-size", "512",
                      "--seed", "3"])
    floor = json.loads((out / "floor.json").read_text())
    build = json.loads((out / "build_info.json").read_text())
    for key in ["val_floor_bpb", "train_floor_bpb", "val_bits", "val_bytes", "val_docs", "train_docs", "seed",
                "generator_params", "one_word_context_bpb", "topic_known_bpb"]:
        assert key in floor, key
    assert floor == json.loads(json.dumps(report))
    assert floor["val_floor_bpb"] == pytest.approx(floor["val_bits"] / floor["val_bytes"])
    assert (floor["val_docs"], floor["train_docs"], floor["seed"]) == (40, 200, 3)
    assert floor["val_bytes"] == build["val_bytes"] == build["val_bytes_token_rule"]
    assert build["vocab_size"] == 512 and build["roundtrip_mismatch_docs"] == 0

    records = [json.loads(line) for line in (out / "docs_selected.jsonl").read_text().splitlines()]
    assert len(records) == 240
    assert -sum(r["log2p"] for r in records[:40]) == pytest.approx(floor["val_bits"])
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    val = shard_io.read_shard(out / "fineweb_val_000000.bin")
    starts = np.flatnonzero(val == sp.bos_id())
    decoded = [sp.decode(val[a + 1 : b].tolist()) for a, b in zip(starts, [*starts[1:], val.size])]
    assert decoded == [r["text"] for r in records[:40]]

    capsys.readouterr()
    sc.main(["--print-floor", str(out)])
    assert f"val_floor_bpb:{floor['val_floor_bpb']:.6f}" in capsys.readouterr().out


def test_print_floor_of_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="floor.json not found"):
        sc.main(["--print-floor", str(tmp_path)])
