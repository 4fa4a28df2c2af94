"""Every knob of train_gpt.py at its edges, each in a whole (tiny) CPU run: bad input must end as one line at
startup, never as a traceback after training or a silent NaN.

    .venv/bin/python scripts/knob_edges.py [--knobs GATE_WINDOW,LQER_RANK] [--jobs 2] [--out runs/knob_edges]

Builds a small synthetic corpus (vocabulary 320) under --out, then runs train_gpt.py once per case on a
2-layer, 32-wide model with a short score-first TTT (the base env below), each case changing one knob:
- a numeric knob with a range ("(0, inf)", "[2, 8]"): its closed ends and the first value inside an open
  one; one without a range: 0 and -1;
- a bool knob: the other value; a knob with choices: each other choice.
Paths, run names, the long-run knobs (RESUME_*, EXPORT_*, EVAL_ONLY_PATH), COMPILE and the list knobs are left
to the tests. A case passes when the run exits 0 with finite `_exact` scores, or exits 2 with one `error:` line
and no traceback. Prints a line per case and the failed ones' output files; exits 1 if any failed.
Values just outside a range are refused in-process by tests/test_hyperparameters.py. About 20 minutes with 2 jobs.
"""

import argparse
import concurrent.futures
import math
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train_gpt as tg  # noqa: E402

BASE = dict(VOCAB_SIZE=320, AUTOCAST="off", NUM_LAYERS=2, MODEL_DIM=32, NUM_HEADS=2, NUM_KV_HEADS=1,
            TRAIN_SEQ_LEN=64, TRAIN_BATCH_TOKENS=2048, VAL_BATCH_SIZE=8192, ITERATIONS=3, WARMUP_STEPS=1,
            MAX_WALLCLOCK_SECONDS=0, GPTQ_RESERVE_SECONDS=0, NUM_LOOPS=0, XSA_LAST_N=2, PARALLEL_START_LAYER=1,
            KEEP_FLOAT_MAX_NUMEL=1024, TTT_BATCH_SIZE=8, TTT_LORA_RANK=2, TTT_CHUNK_SIZE=16, TTT_EVAL_SEQ_LEN=64,
            PHASED_TTT_PREFIX_DOCS=16, GLOBAL_TTT_CHUNK_TOKENS=512, COMPILE="0")
SKIPPED = {"DATA_DIR", "DATA_PATH", "TOKENIZER_PATH", "VAL_BYTES_PATH", "RUN_ID", "ARTIFACT_DIR", "EVAL_ONLY_PATH",
           "EVAL_SUMMARY_JSON", "COMPILE", "CASEOPS_ENABLED"}  # paths and names; COMPILE=1: minutes on a CPU
LONG_RUN = ("RESUME_", "EXPORT_", "SCHEDULE_HORIZON")
EXACT = re.compile(r"^\S+_exact val_loss:(\S+) val_bpb:(\S+)$", re.M)


def edge_values(kind: type, bounds: str) -> list:
    """The values a numeric knob takes at the edges of its range, or 0 and -1 without one."""
    if not bounds:
        return [kind(0), kind(-1)]
    lo, hi = (float(b) for b in bounds[1:-1].split(","))
    step = 1 if kind is int else 1e-3
    values = [lo if bounds[0] == "[" else lo + step] if math.isfinite(lo) else []
    values += [hi if bounds[-1] == "]" else hi - step] if math.isfinite(hi) else []
    return [kind(v) for v in dict.fromkeys(values)]


def cases(only: set[str] | None = None) -> list[tuple[str, str]]:
    """(KNOB, value) pairs, one knob changed from the base env each."""
    out = []
    for f in fields(tg.Hyperparameters):
        name, kind, meta = f.name.upper(), type(f.default), f.metadata
        if name in SKIPPED or name.startswith(LONG_RUN) or name.lower() in tg.LIST_KNOBS or (only and name not in only):
            continue
        default = BASE.get(name, f.default)
        if kind is bool:
            values = [not tg.parse_knob(name, str(default), bool, ())]
        elif meta["choices"]:
            values = [c for c in meta["choices"] if c != default]
        elif kind in (int, float):
            values = [v for v in edge_values(kind, meta["bounds"]) if v != kind(default)]
        else:
            values = []
        out += [(name, str(int(v) if kind is bool else v)) for v in values]
    return out


def verdict(result: subprocess.CompletedProcess) -> str | None:
    """None when the run ended as bad input may: a finite score (exit 0), or one error line (exit 2)."""
    if "Traceback" in result.stderr:
        return "traceback"
    if result.returncode == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        return None if len(errors) == 1 else f"exit 2 with {len(errors)} error lines"
    if result.returncode != 0:
        return f"exit {result.returncode}"
    scores = EXACT.findall(result.stdout)
    if not scores:
        return "no _exact score"
    return None if all(math.isfinite(float(x)) for pair in scores for x in pair) else "a non-finite score"


def run_case(name: str, value: str, corpus: Path, out: Path) -> tuple[str, str, str | None, str]:
    work = out / f"{name}={value}"
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({k: str(v) for k, v in BASE.items()}, DATA_PATH=str(corpus), ARTIFACT_DIR=str(work), RUN_ID="edge",
               TOKENIZER_PATH=str(corpus / "tokenizer.model"), OMP_NUM_THREADS="1", **{name: value})
    try:
        result = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, cwd=work, text=True,
                                capture_output=True, timeout=900)
    except subprocess.TimeoutExpired:
        return name, value, "timed out after 900 s", ""
    (work / "stdout.txt").write_text(result.stdout)
    (work / "stderr.txt").write_text(result.stderr)
    scores = [bpb for _, bpb in EXACT.findall(result.stdout)]
    shown = (result.stderr.strip().splitlines() or scores or [""])[-1]  # the error line, else the last val_bpb
    return name, value, verdict(result), shown[:150]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--knobs", help="comma list of knob names (default: all)")
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)))
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "knob_edges")
    args = ap.parse_args(argv)
    only = set(args.knobs.split(",")) if args.knobs else None
    if unknown := sorted((only or set()) - {f.name.upper() for f in fields(tg.Hyperparameters)}):
        print(f"error: not knobs of train_gpt.py: {', '.join(unknown)}", file=sys.stderr)
        return 2
    todo = cases(only)
    if not todo:
        print(f"error: no case for --knobs {args.knobs} (skipped, or edges equal to the base env)", file=sys.stderr)
        return 2
    corpus = args.out / "corpus"
    if not (corpus / "floor.json").is_file():
        subprocess.run([sys.executable, str(REPO / "data" / "synthetic_corpus.py"), "--out", str(corpus),
                        "--train-docs", "600", "--val-docs", "40", "--vocab-size", "320"], check=True,
                       capture_output=True)
    failed = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for name, value, why, last in pool.map(lambda c: run_case(*c, corpus, args.out), todo):
            print(f"{'FAIL ' if why else 'ok   '} {name}={value}: {why or ''}{' | ' if why else ''}{last}", flush=True)
            if why:
                failed.append(f"{name}={value}")
    print(f"{len(todo)} cases, {len(failed)} failed" + "".join(f"\n  {args.out / f}/stderr.txt" for f in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
