"""The n-gram tilt's hint pass (train_gpt_mixers.ngram_hints, #2135's token-only rule) on real text: microseconds per
token on this CPU and the hint statistics, beside #2135's.

    .venv/bin/python scripts/tilt_bench.py [--corpus C4.jsonl] [--tokenizer sp8192.model] [--scale-tokens 48000000]

Tokenizes the JSON Lines corpus (one BOS-led document per line, as the shards hold them), computes the hints
over the whole stream, and prints the share of targets that get a hint (fire rate) and the share of those
hints that are the realized token (accuracy). Then times the pass on a stream of --scale-tokens tokens (the
C4 stream repeated with its tokens shifted each copy, so contexts stay mostly new): the full validation set
is 47.85M tokens. The goal is <= 1 us per token. #2135's own log: 628,130 hints on 47.85M targets (1.3 %);
its C helper took 201 s for the pass (4.2 us per token, on its machine).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train_gpt as tg  # noqa: E402
import train_gpt_mixers as mixers  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def tokenize(corpus: Path, tokenizer: Path) -> np.ndarray:
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = sp.encode(texts)
    return np.concatenate([np.r_[tg.BOS_ID, doc] for doc in ids] + [[tg.BOS_ID]]).astype(np.int32)


def timed(tokens: np.ndarray, hp: tg.Hyperparameters, repeats: int) -> tuple[np.ndarray, float]:
    best, hints = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        hints = mixers.ngram_hints(torch.from_numpy(tokens), hp.ngram_tilt_order, hp.ngram_tilt_threshold)
        best = min(best, time.perf_counter() - t0)
    return hints, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpora/c4_validation_2k/c4_validation_2k.jsonl")
    ap.add_argument("--tokenizer", type=Path, default=SHARED / "tokenizers/fineweb_8192_bpe.model")
    ap.add_argument("--scale-tokens", type=int, default=48_000_000)
    args = ap.parse_args()
    for path in (args.corpus, args.tokenizer):
        if not path.is_file():
            sys.exit(f"tilt_bench: {path} not found (pass --corpus and --tokenizer)")
    hp = tg.Hyperparameters()  # the knobs' defaults: order 16, threshold 0.8
    tokens = tokenize(args.corpus, args.tokenizer)
    hints, seconds = timed(tokens, hp, repeats=3)
    targets = tokens.size - 1
    fired = hints[1:] >= 0
    right = hints[1:][fired] == tokens[1:][fired]
    print(f"corpus: {args.corpus.name} {targets:,} targets, order {hp.ngram_tilt_order}, threshold "
          f"{hp.ngram_tilt_threshold}")
    print(f"hints: fire {fired.mean():.2%} of targets ({int(fired.sum()):,}), right on {right.mean():.1%} "
          f"(#2135: fires on 1.3 % of its 47.85M targets)")
    print(f"time: {seconds / targets * 1e6:.3f} us/token on {targets:,} tokens")
    copies = -(-args.scale_tokens // tokens.size)
    big = np.concatenate([(tokens + k) % 8192 for k in range(copies)])[: args.scale_tokens].astype(np.int32)
    _, seconds = timed(big, hp, repeats=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    print(f"time: {seconds / big.size * 1e6:.3f} us/token on {big.size:,} tokens ({seconds:.1f} s; goal <= 1 us); "
          f"peak memory of this process {peak:.1f} GiB")


if __name__ == "__main__":
    main()
