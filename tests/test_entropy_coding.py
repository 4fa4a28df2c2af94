"""rANS coding of the integer weight codes: lossless at every size, and within a whisker of the
order-0 entropy counted by hand, which is what lets it beat brotli on near-Gaussian codes."""

import brotli
import numpy as np
import pytest

import train_gpt as tg


def gaussian_codes(count: int, seed: int, std: float = 2.5, qmax: int = 31) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.normal(0, std, count)), -qmax, qmax).astype(np.int64) + 128


def entropy_bits(symbols: np.ndarray) -> float:
    p = np.bincount(symbols) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum() * symbols.size)


@pytest.mark.parametrize("count", [1, 7, 16_384 * 2 + 5, 16_384 * 8 - 1, 200_003])
def test_rans_roundtrips_every_length(count):
    symbols = gaussian_codes(count, seed=count)
    freq = tg.rans_frequencies(symbols, 256)
    assert freq.sum() == 1 << tg.RANS_PROB_BITS and np.all((freq > 0) == (np.bincount(symbols, minlength=256) > 0))
    states, words = tg.rans_encode(symbols, freq)
    assert states.size == tg.rans_lanes(count)
    assert np.array_equal(tg.rans_decode(states, words, freq, count), symbols)


def test_rans_lands_near_the_entropy_and_beats_brotli():
    symbols = gaussian_codes(300_000, seed=1)
    states, words = tg.rans_encode(symbols, tg.rans_frequencies(symbols, 256))
    coded_bits = 8 * (states.nbytes + words.nbytes)
    assert coded_bits < 1.005 * entropy_bits(symbols)  # 14-bit frequencies and lane states cost < 0.5%
    brotli_bits = 8 * len(brotli.compress((symbols - 128).astype(np.int8).tobytes(), quality=11, lgwin=24))
    assert coded_bits < 0.99 * brotli_bits


def test_rans_skewed_and_single_symbol_streams():
    for symbols in (np.full(40_000, 128), np.where(np.arange(50_000) % 97 == 0, 3, 200)):
        freq = tg.rans_frequencies(symbols, 256)
        states, words = tg.rans_encode(symbols, freq)
        assert np.array_equal(tg.rans_decode(states, words, freq, symbols.size), symbols)
        assert 8 * (states.nbytes + words.nbytes) <= entropy_bits(symbols) + 64 * states.size + 64


def test_truncated_rans_stream_is_an_error():
    symbols = gaussian_codes(50_000, seed=3)
    freq = tg.rans_frequencies(symbols, 256)
    states, words = tg.rans_encode(symbols, freq)
    with pytest.raises(tg.ArtifactError, match="truncated"):
        tg.rans_decode(states, words[: words.size // 2], freq, symbols.size)
