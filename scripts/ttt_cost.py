"""FLOPs of score-first LoRA TTT plus phased global SGD, this CPU's measured rate on a real TTT run, and a
projected 8xH100 TTT time for a recipe. Projected, not measured: no GPU ran this.

    python scripts/ttt_cost.py --summary RUN/lora_ttt.json [--recipe top] \
        [--corpus texts.jsonl --tokenizer fineweb_8192_bpe.model]

--summary: the EVAL_SUMMARY_JSON of a TTT run on this machine (scripts/eval_modes.sh writes them); its
hyperparameters and validation shards give the FLOPs that run did, its timers the seconds: the achieved
CPU rate. --corpus (JSON Lines with a "text" field) and --tokenizer give a document-length distribution,
resampled to FineWeb val's 50,000 documents and rescaled to its 47,853,343 targets, for the recipe's cost.
FLOPs count 2 per multiply-add: the block matmuls and adapters over every window position, the LM head
and its adapter at the scored positions only (as score_chunk computes them), causal attention 2 w^2 d per
layer application of a w-token window; a trained chunk adds its backward (activation gradients through
the frozen weights, adapter gradients, attention backward twice its forward); global SGD is 3 forwards.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train_gpt as tg  # noqa: E402

H100_BF16_FLOPS = 989e12
FINEWEB_VAL_DOCS, FINEWEB_VAL_TARGETS = 50_000, 47_853_343  # sota_stack.md 5.4, frontier.md 1
RECORD_TTT_SECONDS = "455-509 s (#1855 seeds 0 / 1234 / 42), global SGD 75-84 s of it"
RECORD_TRAIN_MFU = 0.31  # benchmark_throughput.py: 93.6 ms/step projected at 40% vs 121 ms/step logged
EAGER_STEP_OVERHEAD_S = 0.010  # assumed: ~3,000 kernel launches (17 applications, adapters, AdamW) per eager step


def shapes(hp: tg.Hyperparameters) -> dict:
    d, kv, r = hp.model_dim, hp.num_kv_heads * (hp.model_dim // hp.num_heads), hp.ttt_lora_rank
    with torch.device("meta"):
        model = tg.GPT(hp)
    apps = len(model.plans[-1].order)
    block = sum(m.weight.numel() for m in model.blocks[0].modules() if isinstance(m, tg.CastedLinear))
    fans = {"q": (d, d), "k": (d, kv), "v": (d, kv), "o": (d, d), "mlp": (d, d)}
    lora = sum(r * (i + o) for t, (i, o) in fans.items() if getattr(hp, f"ttt_{t}_lora"))
    return dict(apps=apps, d=d, block=block * apps, lora=lora * apps, head=d * hp.vocab_size,
                head_lora=r * (d + hp.vocab_size))


def ttt_flops(lengths: list[int], hp: tg.Hyperparameters) -> tuple[float, float]:
    """(LoRA scoring and training FLOPs, global SGD FLOPs) over documents of these target counts."""
    s, seq_len, total = shapes(hp), hp.ttt_eval_seq_len, 0.0
    for n in lengths:
        c = tg.chunk_size_of(n, hp)
        for lo in range(0, n, c):
            hi = min(lo + c, n)
            w = hi - max(0, hi - seq_len)
            matmul = 2 * w * (s["block"] + s["lora"]) + 2 * (hi - lo) * (s["head"] + s["head_lora"])
            attention = 2 * w * w * s["d"] * s["apps"]
            total += matmul + attention
            if hi < n:  # trained: activation gradients ~ the forward's matmuls, adapter grads, attention x2
                total += matmul + 2 * w * s["lora"] + 2 * attention
    queue = sorted(lengths, reverse=True)
    sgd = 0.0
    if hp.phased_ttt_enabled:
        batches = -(-len(queue) // hp.ttt_batch_size)
        per_token = 3 * (2 * (s["block"] + s["head"]) + 2 * seq_len * s["d"] * s["apps"])
        for bound, docs in tg.phase_plan(batches, hp):
            steps = -(-sum(queue[:docs]) // hp.global_ttt_chunk_tokens) - 1
            sgd += per_token * max(0, steps) * hp.global_ttt_chunk_tokens * hp.global_ttt_epochs
    return total, sgd


def steps_per_rank(lengths: list[int], hp: tg.Hyperparameters, world_size: int = 8) -> int:
    """Sequential chunk steps of the busiest rank: a batch takes as many steps as its longest document has
    chunks, batch b runs on rank b mod world_size (eval_ttt)."""
    queue = sorted(lengths, reverse=True)
    steps = [max(-(-n // tg.chunk_size_of(n, hp)) for n in queue[i : i + hp.ttt_batch_size])
             for i in range(0, len(queue), hp.ttt_batch_size)]
    return max(sum(steps[r::world_size]) for r in range(world_size))


def val_lengths(hp: tg.Hyperparameters) -> list[int]:
    tokens = tg.load_val_tokens(str(Path(hp.data_path) / "fineweb_val_*.bin"), hp.train_seq_len, hp.vocab_size)
    return [e - s for s, e in tg.val_documents(tokens)]


def corpus_lengths(corpus: Path, tokenizer: Path, seed: int = 0) -> list[int]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines() if line.strip()]
    base = [len(ids) + 1 for ids in sp.encode(texts)]  # a document's targets: its tokens and the next BOS
    gen = torch.Generator().manual_seed(seed)
    picks = [base[i] for i in torch.randint(0, len(base), (FINEWEB_VAL_DOCS,), generator=gen).tolist()]
    scale = FINEWEB_VAL_TARGETS / sum(picks)
    return [max(1, round(n * scale)) for n in picks]


def cpu_matmul_flops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--recipe", default="top")
    parser.add_argument("--corpus", type=Path,
                        default=Path("../shared/data/corpora/c4_validation_2k/c4_validation_2k.jsonl"))
    parser.add_argument("--tokenizer", type=Path, default=Path("../shared/data/tokenizers/fineweb_8192_bpe.model"))
    args = parser.parse_args()

    summary = json.loads(args.summary.read_text())
    hp = tg.replace(tg.Hyperparameters.from_env({}), **summary["hyperparameters"])
    lora, sgd = ttt_flops(val_lengths(hp), hp)
    legs = summary["timers"]
    sgd_s = sum(v for k, v in legs.items() if k.startswith("ttt_global_sgd"))
    rate = lora / (legs["ttt"] - sgd_s)
    peak = cpu_matmul_flops()
    print(f"CPU run ({args.summary}): {lora / 1e12:.2f} TFLOP of LoRA TTT in {legs['ttt'] - sgd_s:.1f} s = "
          f"{rate / 1e9:.1f} GFLOP/s; a 1024^3 fp32 matmul runs at {peak / 1e9:.1f} GFLOP/s here "
          f"({rate / peak:.0%} of it)")

    lines = (REPO / "records" / "recipes" / f"{args.recipe}.env").read_text().splitlines()
    top = tg.Hyperparameters.from_env(dict(line.split("=", 1) for line in lines if line and line[0] != "#"))
    lengths = corpus_lengths(args.corpus, args.tokenizer)
    lora, sgd = ttt_flops(lengths, top)
    print(f"{args.recipe} recipe on {len(lengths):,} documents / {sum(lengths):,} targets (lengths from "
          f"{args.corpus.name}): LoRA TTT {lora / 1e15:.1f} PFLOP, global SGD {sgd / 1e15:.1f} PFLOP")
    steps = steps_per_rank(lengths, top)
    print(f"busiest rank of 8: {steps:,} sequential chunk steps (+{steps * EAGER_STEP_OVERHEAD_S:.0f} s at an assumed "
          f"{1000 * EAGER_STEP_OVERHEAD_S:.0f} ms of eager launch overhead a step)")
    for label, mfu in (("the records' training MFU", RECORD_TRAIN_MFU), ("our CPU share of matmul peak", rate / peak)):
        seconds = (lora + sgd) / (8 * H100_BF16_FLOPS * mfu)
        print(f"projected 8xH100 TTT time at {label} ({mfu:.0%}): {seconds:.0f} s compute, "
              f"{seconds + steps * EAGER_STEP_OVERHEAD_S:.0f} s with the launch overhead")
    print(f"record: {RECORD_TTT_SECONDS}")


if __name__ == "__main__":
    main()
