"""Summarize a train_gpt.py run from its log: what scripts/gpu_smoke.sh prints at the end.

    python scripts/gpu_smoke_summary.py LOGFILE [--console FILE] [--bench FILE] [--target-seconds 600]
        [--title TEXT] [--json]

LOGFILE is the run's logs/<RUN_ID>.txt (rank 0). --console is the captured stdout of all ranks, for the
`rank_summary` line every rank prints (not in LOGFILE). --bench is the captured output of
scripts/gpu_bench.py (fa3, sync, syncs, ttt_step, ttt_projected lines; a missing file is no bench). The
projection divides the training time a --target-seconds run would have (minus the GPTQ reserve logged by
the run) by the measured ms/step. Besides the totals it reports each schedule stage's own step_avg
(`stage_avg:` lines), the compile warm-up's cu_seqlens buckets and the train loader's shard switches and waits.
Exit 0 when the run reached its final `final_*_roundtrip_exact` line, 1 when it did not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SEPARATOR = "=" * 100  # log_header: the script source, this line, then the run's own lines
CHALLENGE_VOCAB = 8192
REFERENCE = "the #1855 record logged ~121 ms/step mean on 8xH100 at vocab 8192 (docs/measurements.md, Throughput)"

N = r"(-?\d+(?:\.\d+)?)"
PATTERNS = {  # name -> (regex anchored at a line start, field names); the last match in the log wins
    "runtime": (r"^Running Python (\S+) PyTorch (\S+) device:(\w+)", ("python", "torch", "device")),
    "world": (rf"^world_size:{N} grad_accum_steps:{N} autocast_bf16:{N}", ("world_size", "grad_accum_steps", "autocast_bf16")),
    "backend": (r"^attention_backend:(\S+)", ("attention_backend",)),
    "params": (rf"^model_params:{N}", ("model_params",)),
    "vocab": (rf"^  VOCAB_SIZE={N}$", ("vocab_size",)),  # the hyperparameter dump
    "dim": (rf"^  MODEL_DIM={N}$", ("model_dim",)),
    "reserve": (rf"^gptq:reserving {N}s, effective={N}ms", ("gptq_reserve_s", "effective_cap_ms")),
    "step": (rf"^step:{N}/{N} .*train_time:{N}ms step_avg:{N}ms", ("last_logged_step", "iterations", "train_time_ms", "step_avg_ms")),
    "stop": (rf"^stopping_early: wallclock_cap train_time:{N}ms step:{N}/{N}", ("stop_train_time_ms", "stop_step", "_")),
    "loop": (rf"^layer_loop:enabled step:{N} frac:{N}", ("loop_on_step", "loop_on_frac")),
    "compile": (rf"^compile:graphs_before_training:{N} graphs_built_while_training:{N}", ("graphs_before_training", "graphs_built_while_training")),
    "loader": (rf"^train_loader: shards_opened:{N} open_ms:{N}(?: \(its thread\))? main_thread_wait_ms:{N} "
               rf"max_wait_ms:{N} batches:{N}", ("shard_opens", "shard_open_ms", "loader_wait_ms",
                                                  "loader_max_wait_ms", "loader_batches")),
    "memory": (rf"^peak memory allocated: {N} MiB reserved: {N} MiB", ("peak_allocated_mib", "peak_reserved_mib")),
    "gptq": (rf"^GPTQ:collected {N} Hessians in {N}s", ("hessians", "hessian_seconds")),
    "submission": (rf"^Total submission size (\S+): {N} bytes", ("export", "submission_bytes")),
    "budget": (rf"^budget:total code:{N} model:{N} total:{N} cap:{N} headroom:{N}", ("code_bytes", "model_bytes", "total_bytes", "cap_bytes", "headroom_bytes")),
    "bits": (rf"^budget:matrices params:{N} bits_per_param:{N}", ("matrix_params", "matrix_bits_per_param")),
    "export_time": (rf"^artifact_production_wallclock:{N}s", ("artifact_seconds",)),
    "final_eval": (rf"^final_\w+_roundtrip val_loss:{N} val_bpb:{N} eval_time:{N}ms", ("_", "_", "final_eval_ms")),
    "final": (rf"^final_(\w+)_roundtrip_exact val_loss:{N} val_bpb:{N}", ("final_label", "final_val_loss", "final_val_bpb")),
    # the TTT stage after the round trip (TTT_ENABLED=1): phased global SGD or LoRA only, _partial on a sample
    "ttt": (rf"^quantized_(ttt_(?:phased|lora)(?:_partial)?)_exact val_loss:{N} val_bpb:{N}", ("ttt_label", "ttt_val_loss", "ttt_val_bpb")),
    "ttt_timer": (rf"^eval_timers: (?:.* )?ttt:{N}s", ("ttt_seconds",)),
    "eval_time": (rf"^total_eval_time:{N}s", ("total_eval_seconds",)),
}
RANK_SUMMARY = re.compile(r"^rank_summary rank:(\d+)/(\d+) stop_step:(\d+) .*trained_weights_crc32:([0-9a-f]+)", re.M)
# Lines a run logs once per schedule stage: every match is kept, in order
STAGE_AVG = re.compile(rf"^stage_avg: plan:(\d+) span:(\d+) steps:(\d+) step_avg:{N}ms", re.M)
WARMUP_BUCKETS = re.compile(r"^warmup_buckets:([\d,]+) plan:(\d+) span:(\d+)", re.M)
LOADER_WAIT_LIMIT_MS = 5.0  # a step that waits longer than this for its batch: the loader is on the critical path
# scripts/gpu_bench.py's result lines (key:value after the prefix) and its refusals/failures
BENCH_LINE = re.compile(r"^(fa3|sync|syncs|ttt_step|ttt_projected|data): (.*)$", re.M)
BENCH_ERROR = re.compile(r"^gpu_bench: error: .*$", re.M)
FA3_LIMIT = 0.05  # gpu_bench.py's tolerance between bucketed and trimmed cu_seqlens


def number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def key_values(text: str) -> dict:
    """`k:v k:v ...` (a value may hold colons: `at:train_gpt.py:12`) as a dict of numbers where they are."""
    pairs = (word.partition(":") for word in text.split())
    return {k: number(v) for k, sep, v in pairs if sep}


def parse_bench(text: str) -> dict:
    """gpu_bench.py's lines: the last fa3 and ttt_projected, every sync / syncs / ttt_step, and its errors."""
    out: dict = dict(sync_sites=[], syncs=[], ttt_steps=[], errors=BENCH_ERROR.findall(text))
    for prefix, rest in BENCH_LINE.findall(text):
        fields = key_values(rest)
        if prefix in ("fa3", "ttt_projected", "data"):
            out[prefix] = fields
        else:
            out[{"sync": "sync_sites", "syncs": "syncs", "ttt_step": "ttt_steps"}[prefix]].append(fields)
    return out


def run_lines(log_text: str) -> str:
    """The run's own lines: everything after the header's separator (the script source comes before it)."""
    head, sep, rest = log_text.partition("\n" + SEPARATOR + "\n")
    return rest if sep else log_text


def parse(log_text: str, console_text: str = "", target_seconds: float = 600.0, bench_text: str = "") -> dict:
    text, out = run_lines(log_text), {}
    for pattern, names in PATTERNS.values():
        matches = re.findall(pattern, text, re.M)
        if matches:
            last = matches[-1] if isinstance(matches[-1], tuple) else (matches[-1],)
            out.update({k: number(v) for k, v in zip(names, last) if k != "_"})
    out["steps"] = out.get("stop_step", out.get("last_logged_step"))
    out["stage_avgs"] = [dict(plan=int(p), span=int(s), steps=int(n), step_avg_ms=float(ms))
                         for p, s, n, ms in STAGE_AVG.findall(text)]
    out["warmup_buckets"] = [dict(buckets=[int(b) for b in sizes.split(",")], plan=int(p), span=int(s))
                             for sizes, p, s in WARMUP_BUCKETS.findall(text)]
    if bench_text:
        out["bench"] = parse_bench(bench_text)
    out["warnings"] = re.findall(r"^warning: .*$", text, re.M)
    out["errors"] = re.findall(r"^error: .*$", text + "\n" + console_text, re.M)
    ranks = RANK_SUMMARY.findall(console_text)
    if ranks:
        out["ranks_reported"] = len({r for r, _, _, _ in ranks})
        out["ranks_expected"] = int(ranks[0][1])
        out["ranks_same_stop_step"] = len({s for _, _, s, _ in ranks}) == 1
        out["ranks_same_weights"] = len({c for _, _, _, c in ranks}) == 1
    out["target_seconds"] = target_seconds
    if out.get("step_avg_ms"):
        train_s = target_seconds - out.get("gptq_reserve_s", 0)
        out["projected_steps"] = int(1000 * train_s / out["step_avg_ms"])
        if out.get("world_size", 8) < 8:  # ideal scaling: the same global batch split over 8 GPUs
            out["ideal_8gpu_step_avg_ms"] = out["step_avg_ms"] * out["world_size"] / 8
            out["ideal_8gpu_projected_steps"] = int(1000 * train_s / out["ideal_8gpu_step_avg_ms"])
    out["finished"] = "final_val_bpb" in out
    return out


def fmt_bytes(n) -> str:
    return "?" if n is None else f"{n:,} bytes ({n / 1e6:.2f} MB)"


def format_stages(s: dict) -> list[str]:
    """The log's per-stage lines: step_avg of each stage, the warm-up's buckets, the loader."""
    lines = []
    if s.get("stage_avgs"):
        lines.append("stages:      " + "; ".join(f"plan {a['plan']} span {a['span']}: {a['steps']} steps at "
                                               f"{a['step_avg_ms']:.2f} ms/step" for a in s["stage_avgs"]))
    if s.get("warmup_buckets"):
        lines.append("warm-up:     cu_seqlens buckets " + "; ".join(
            f"{','.join(map(str, w['buckets']))} (plan {w['plan']} span {w['span']})" for w in s["warmup_buckets"]))
    if "shard_opens" in s:
        opens = s["shard_opens"]
        switch = f"{opens - 1} shard switch{'es' if opens != 2 else ''}" if opens > 1 else "no shard switch"
        late = s["loader_max_wait_ms"] > LOADER_WAIT_LIMIT_MS
        late = f"  <- a batch came > {LOADER_WAIT_LIMIT_MS:g} ms late" if late else ""
        lines.append(f"loader:      {switch} ({opens} shard opens, {s['shard_open_ms']} ms on its thread); the steps "
                     f"waited {s['loader_wait_ms']} ms for {s['loader_batches']} batches, at most "
                     f"{s['loader_max_wait_ms']} ms{late}")
    return lines


def format_bench(b: dict) -> list[str]:
    """gpu_bench.py's results, flagged where they miss what train_gpt.py expects."""
    lines = []
    if "fa3" in b:
        f = b["fa3"]
        off = abs(f["bucketed_over_trimmed"] - 1) > FA3_LIMIT
        lines.append(f"fa3:         {f['tokens']:,}-token row, span {f['span']}, {f['segments']} segments: bucketed "
                     f"cu_seqlens ({f['entries_bucketed']} entries) {f['ms_bucketed']} ms fwd+bwd, trimmed "
                     f"({f['entries_trimmed']}) {f['ms_trimmed']} ms: {f['bucketed_over_trimmed']}x; old worst case "
                     f"({f['entries_worst']:,}) {f['ms_worst']} ms" + ("  <- more than 5% apart" if off else ""))

    def sites(**where) -> list[str]:  # the sync lines of one measurement
        return [f"             sync at {x['at']} ({x['in']}) x{x['count']}" for x in b["sync_sites"]
                if all(x.get(k) == v for k, v in where.items())]

    for r in b["syncs"]:
        note = "" if r["detector"] == "cuda" else " (no detector on a CPU)"
        bad = r["detector"] == "cuda" and (r["syncs"] != r["steps"] * r["expected"] or r["graphs_built"])
        lines.append(f"syncs:       plan {r['plan']} span {r['span']}: {r['per_step']} host syncs a step ({r['syncs']} "
                     f"in {r['steps']} steps, {r['expected']} expected), {r['graphs_built']} graphs built, "
                     f"{r['step_ms']} ms/step{note}" + ("  <- NOT one sync a step, or a recompile" if bad else ""))
        lines += sites(stage="train", plan=r["plan"], span=r["span"])
    for t in b["ttt_steps"]:
        bad = isinstance(t["syncs"], int) and t["syncs"] > 0
        lines.append(f"ttt step:    {t['rows']} row{'s' if t['rows'] != 1 else ''} x {t['width']} ({t['scored']} "
                     f"scored): {t['ms']} ms, peak {t['peak_mib']} MiB, {t['syncs']} host syncs"
                     + ("  <- a chunk step waited for the GPU" if bad else ""))
        lines += sites(stage="ttt", rows=t["rows"])
    if "ttt_projected" in b:
        p = b["ttt_projected"]
        over = p["total_s"] > p["budget_s"]
        lines.append(f"ttt:         projected ~{p['total_s']:.0f} s on the busiest of {p['ranks']} ranks (scoring "
                     f"{p['scoring_s']:.0f} s + global SGD {p['global_sgd_s']:.0f} s; {p['full_width_total_s']:.0f} s "
                     f"if every step cost a full window; gpu_plan's calibrated {p['plan_total_s']:.0f} s)"
                     + (f"  <- over the {p['budget_s']:g} s budget" if over else ""))
    return lines + b["errors"]


def format_summary(s: dict, title: str = "gpu_smoke summary") -> str:
    g = lambda k, default="?": s.get(k, default)  # noqa: E731
    lines = [f"== {title} =="]
    params = f"{s['model_params']:,}" if "model_params" in s else "?"
    lines.append(f"run:         device {g('device')}, torch {g('torch')}, world_size {g('world_size')}, "
                 f"grad_accum {g('grad_accum_steps')}, attention {g('attention_backend')}, "
                 f"bf16 autocast {g('autocast_bf16')}, {params} params")
    lines.append(f"steps:       {g('steps')} in {g('train_time_ms')} ms of training, step_avg {g('step_avg_ms')} ms/step"
                 + (f", layer loop on at step {s['loop_on_step']}" if "loop_on_step" in s else ""))
    lines.append(f"compile:     graphs_before_training {g('graphs_before_training')}, graphs_built_while_training "
                 f"{g('graphs_built_while_training')}" + ("  <- RECOMPILED inside the timed loop"
                                                          if s.get("graphs_built_while_training", 0) else ""))
    lines += format_stages(s)
    lines.append(f"memory:      peak allocated {g('peak_allocated_mib')} MiB, reserved {g('peak_reserved_mib')} MiB (rank 0)")
    lines.append(f"export:      {g('export')} total submission {fmt_bytes(s.get('submission_bytes'))}; "
                 f"code {g('code_bytes')}, model {g('model_bytes')}, headroom {fmt_bytes(s.get('headroom_bytes'))}"
                 + (f"; {s['matrix_bits_per_param']} bits/matrix param" if "matrix_bits_per_param" in s else "")
                 + (f"; GPTQ Hessians {s['hessian_seconds']} s" if "hessian_seconds" in s else ""))
    lines.append(f"score:       final_{g('final_label')}_roundtrip_exact val_bpb {g('final_val_bpb')}"
                 + (f" (eval {s['final_eval_ms']} ms)" if "final_eval_ms" in s else ""))
    if "ttt_val_bpb" in s:
        lines.append(f"ttt:         quantized_{s['ttt_label']}_exact val_bpb {s['ttt_val_bpb']}"
                     + (f" (TTT timer {s['ttt_seconds']} s)" if "ttt_seconds" in s else ""))
    if "total_eval_seconds" in s:
        lines.append(f"eval time:   {s['total_eval_seconds']} s in all (artifact load, round trip and every stage)")
    if "ranks_reported" in s:
        lines.append(f"ranks:       {s['ranks_reported']} of {s['ranks_expected']} reported; same stop step: {'yes' if s['ranks_same_stop_step'] else 'NO'}; "
                     f"same trained weights: {'yes' if s['ranks_same_weights'] else 'NO'}")
    if "projected_steps" in s:
        t, r = s["target_seconds"], s.get("gptq_reserve_s", 0)
        lines.append(f"projection:  a {t:g} s run ({t - r:g} s of training after the {r:g} s GPTQ reserve) at "
                     f"{s['step_avg_ms']} ms/step makes ~{s['projected_steps']:,} steps")
        if "ideal_8gpu_step_avg_ms" in s:
            lines.append(f"             on 8 GPUs with ideal scaling: ~{s['ideal_8gpu_step_avg_ms']:.1f} ms/step, "
                         f"~{s['ideal_8gpu_projected_steps']:,} steps (communication not counted)")
        lines.append(f"             for scale: {REFERENCE}")
    if s.get("vocab_size", CHALLENGE_VOCAB) != CHALLENGE_VOCAB:
        extra = (CHALLENGE_VOCAB - s["vocab_size"]) * s.get("model_dim", 0)
        lines.append(f"note:        VOCAB_SIZE {s['vocab_size']}, not the challenge's {CHALLENGE_VOCAB}: the sp{CHALLENGE_VOCAB} "
                     f"embedding has {extra:,} more parameters, so a real run's bytes and ms/step are higher")
    if "bench" in s:
        try:
            lines += format_bench(s["bench"])
        except (KeyError, TypeError, ValueError) as e:  # a line of another shape: the rest of the summary stands
            lines.append(f"bench:       unreadable gpu_bench line ({type(e).__name__}: {e}); see the bench file")
    for w in s["warnings"]:
        lines.append(w)
    for e in s["errors"]:
        lines.append(e)
    if not s["finished"]:
        lines.append("the run did not finish: no final_*_roundtrip_exact line in the log")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="the run's logs/<RUN_ID>.txt")
    parser.add_argument("--console", help="captured stdout of all ranks (for rank_summary lines)")
    parser.add_argument("--bench", help="captured output of scripts/gpu_bench.py (skipped when missing)")
    parser.add_argument("--target-seconds", type=float, default=600.0, help="wallclock of the projected run")
    parser.add_argument("--title", default="gpu_smoke summary", help="the summary's first line")
    parser.add_argument("--json", action="store_true", help="print the parsed numbers as JSON")
    args = parser.parse_args(argv)
    log_path = Path(args.log)
    if not log_path.is_file():
        print(f"gpu_smoke_summary: error: no log file {log_path}", file=sys.stderr)
        return 1
    console, bench = (Path(f).read_text(errors="replace") if f and Path(f).is_file() else ""
                      for f in (args.console, args.bench))
    summary = parse(log_path.read_text(errors="replace"), console, args.target_seconds, bench)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary, args.title))
    return 0 if summary["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
