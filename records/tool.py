"""records/tool.py: check, summarize, test and plot a record folder built from train_gpt.py's logs.

    python records/tool.py check DIR [--train-cap 600] [--eval-budget 600] [--min-seeds N]
    python records/tool.py summarize LOG... [-o submission.json] [--name N --author A --github-id G --blurb B]
    python records/tool.py table LOG...                      # the README results table, markdown
    python records/tool.py significance VALUES... --threshold T      # one-sample, one-sided t-test
    python records/tool.py significance VALUES... --against V1 V2 ...   # Welch's one-sided t-test
    python records/tool.py plot LOG... -o out.png

A log is what train_gpt.py writes to ARTIFACT_DIR/logs/<RUN_ID>.txt: the script's source
(Path(__file__).read_text()), a line of 100 '=', then the run's lines. Its score (headline) is the last
`<label>_exact val_loss:X val_bpb:Y` line. Only the standard library is imported at the top; numpy and
scipy load inside `significance`, matplotlib inside `plot`.
"""

import argparse
import hashlib
import importlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ARTIFACT_CAP_BYTES = 16_000_000
SEPARATOR = "=" * 100
REQUIRED_FILES = ("README.md", "submission.json", "train_gpt.py")
# submission.json: the fields the challenge's records carry, and their JSON types (extra fields are allowed)
STR_FIELDS = ("name", "author", "github_id", "blurb", "date")
NUMBER_FIELDS = ("val_bpb",)
INT_FIELDS = ("bytes_total",)

RE_HEADLINE = re.compile(r"^(\S+)_exact val_loss:(\S+) val_bpb:(\S+)$", re.M)
RE_TOTAL = re.compile(r"^Total submission size (\S+): (\d+) bytes", re.M)
RE_CODE = re.compile(r"^Code size: (\d+) bytes", re.M)
RE_STOP = re.compile(r"^stopping_early: wallclock_cap train_time:(\d+)ms step:(\d+)/(\d+)", re.M)
RE_STEP_TIME = re.compile(r"^step:(\d+)/(\d+) .*?train_time:(\d+)ms", re.M)
RE_TRAIN = re.compile(r"^step:(\d+)/(\d+) train_loss:(\S+) train_time:(\d+)ms", re.M)
RE_VAL = re.compile(r"^step:(\d+)/(\d+) val_loss:(\S+) val_bpb:(\S+) train_time:(\d+)ms", re.M)
RE_EVAL_TOTAL = re.compile(r"^total_eval_time:(\S+)s$", re.M)
RE_EVAL_TIMERS = re.compile(r"^eval_timers: (.*)$", re.M)
RE_HESSIAN_WARNING = re.compile(r"^warning: the Hessian pass took .*$", re.M)
RE_HESSIANS = re.compile(r"^GPTQ:collected \d+ Hessians in (\S+)s$", re.M)
RE_SEED = re.compile(r"^seed:(\d+)$", re.M)
RE_RUNNING = re.compile(r"^Running Python (\S+) PyTorch (\S+) device:(\S+)$", re.M)
RE_WORLD = re.compile(r"^world_size:(\d+)", re.M)
RE_KNOB = re.compile(r"^  ([A-Z0-9_]+)=(.*)$", re.M)  # the resolved hyperparameters block
RE_RUN_ID = re.compile(r"^(?:  RUN_ID=|run_id:)(\S+)$", re.M)
RE_GPU = re.compile(r"^\|\s+\d+\s+(NVIDIA .+?)\s{2,}(?:On|Off)\s+\|", re.M)  # nvidia-smi's table, logged on CUDA


class LogError(ValueError):
    pass


# ------------------------------------------------------------------ files: shared with scripts/ (stdlib only)

class EnvFileError(ValueError):
    """A bad env file: its message is one line naming file:line."""


RE_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(path) -> dict[str, str]:
    """A recipe (records/recipes/*.env): VAR=value lines, later ones win. Blank lines and '#' comments are
    skipped; an 'export ' prefix and matching quotes around the value are allowed, as the shell's
    `env $(grep -v '^#' FILE | xargs)` reads them."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise EnvFileError(f"{path}: not UTF-8 text (at byte {e.start})") from None
    except OSError as e:
        raise EnvFileError(f"{path}: cannot be read ({e.strerror})") from None
    env = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not RE_ENV_NAME.match(key):
            raise EnvFileError(f"{path}:{n}: expected VAR=value, got {line!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Log:
    """One train_gpt.py log, parsed. Every field is None where the log lacks the line."""
    path: Path
    source: str  # the script as logged: everything before "\n" + 100 '=' (the logger's newline excluded)
    body: str  # the run's lines
    runs: int  # runs in this file (train_gpt.py once appended to an existing log of the same RUN_ID)
    seed: int | None = None
    run_id: str | None = None
    python: str | None = None
    pytorch: str | None = None
    device: str | None = None
    world_size: int | None = None
    gpus: list = field(default_factory=list)
    knobs: dict = field(default_factory=dict)
    headline_label: str | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    total_label: str | None = None
    bytes_total: int | None = None
    bytes_code: int | None = None
    train_ms: int | None = None
    train_time_from: str | None = None  # "stopping_early" or "last step"
    steps: int | None = None
    iterations: int | None = None
    eval_s: float | None = None
    ttt_s: float | None = None
    eval_timers: dict = field(default_factory=dict)
    hessian_s: float | None = None
    hessian_warnings: list = field(default_factory=list)
    train_points: list = field(default_factory=list)  # (step, train_loss, ms)
    val_points: list = field(default_factory=list)  # (step, val_loss, val_bpb, ms)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        return self.run_id or self.path.stem

    @property
    def hardware(self) -> str:
        if self.gpus:
            names = sorted(set(self.gpus))
            count = self.world_size or len(self.gpus)
            return f"{count}x{names[0]}" if len(names) == 1 else f"{count}x[{', '.join(names)}]"
        return f"{self.world_size or 1}x{self.device or 'unknown'}"


def split_log(text: str) -> tuple[str, str, int]:
    """(source, body, runs). train_gpt.py logs Path(__file__).read_text() then '=' * 100, each with a
    newline: the source is everything before "\\n" + the separator, exactly (also when it has no final
    newline). The separator is the one followed by the 'Running Python' header, so a source that itself
    holds a line of 100 '=' cannot cut it short."""
    marker = "\n" + SEPARATOR + "\n"
    starts = [m.start() for m in re.finditer(re.escape(marker) + "Running Python ", text)]
    if not starts:
        if text.startswith(SEPARATOR + "\n"):  # an empty source
            return "", text[len(SEPARATOR) + 1 :], 1
        if marker not in text:
            raise LogError("not a train_gpt.py log: no line of 100 '=' after the script source")
        starts = [text.index(marker)]
    first = starts[0]
    return text[:first], text[first + len(marker) :], len(starts)


def parse_log(path: Path) -> Log:
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    source, body, runs = split_log(text)
    log = Log(Path(path), source, body, runs)
    if m := RE_SEED.search(body):
        log.seed = int(m.group(1))
    if m := RE_RUN_ID.search(body):
        log.run_id = m.group(1)
    if m := RE_RUNNING.search(body):
        log.python, log.pytorch, log.device = m.groups()
    if m := RE_WORLD.search(body):
        log.world_size = int(m.group(1))
    log.gpus = [g.strip() for g in RE_GPU.findall(body)]
    header_end = body.find("\nattention_backend:")
    log.knobs = dict(RE_KNOB.findall(body[: header_end if header_end >= 0 else len(body)]))
    if heads := RE_HEADLINE.findall(body):
        label, loss, bpb = heads[-1]
        log.headline_label, log.val_loss, log.val_bpb = label, float(loss), float(bpb)
    if totals := RE_TOTAL.findall(body):
        log.total_label, log.bytes_total = totals[-1][0], int(totals[-1][1])
    if codes := RE_CODE.findall(body):
        log.bytes_code = int(codes[-1])
    steps = RE_STEP_TIME.findall(body)
    if stops := RE_STOP.findall(body):
        ms, step, iterations = stops[-1]
        log.train_ms, log.steps, log.iterations, log.train_time_from = int(ms), int(step), int(iterations), \
            "stopping_early"
    elif steps:
        step, iterations, ms = steps[-1]
        log.train_ms, log.steps, log.iterations, log.train_time_from = int(ms), int(step), int(iterations), \
            "last step"
    if m := RE_EVAL_TOTAL.findall(body):
        log.eval_s = float(m[-1])
    if m := RE_EVAL_TIMERS.findall(body):
        for item in m[-1].split():
            key, _, value = item.partition(":")
            if value.endswith("s"):
                try:
                    log.eval_timers[key] = float(value[:-1])
                except ValueError:
                    pass
        log.ttt_s = log.eval_timers.get("ttt")
    if m := RE_HESSIANS.findall(body):
        log.hessian_s = float(m[-1])
    log.hessian_warnings = RE_HESSIAN_WARNING.findall(body)
    log.train_points = [(int(s), float(loss), int(ms)) for s, _, loss, ms in RE_TRAIN.findall(body)]
    log.val_points = [(int(s), float(loss), float(bpb), int(ms))
                      for s, _, loss, bpb, ms in RE_VAL.findall(body)]
    return log


def is_log_file(path: Path) -> bool:
    try:
        split_log(path.read_bytes().decode("utf-8", errors="replace"))
        return True
    except LogError:
        return False


def fmt8(x: float) -> str:
    return f"{x:.8f}"


def mean(values) -> float:
    return statistics.fmean(values)


def std(values) -> float | None:
    """Sample standard deviation (n - 1), as the records report it; None for a single value."""
    return statistics.stdev(values) if len(values) > 1 else None


# -----------------------------------------------------------------------------------------------
# check
# -----------------------------------------------------------------------------------------------


def first_difference(a: bytes, b: bytes) -> int:
    """1-based line of the first byte where a and b differ."""
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n].count(b"\n") + 1


def parse_tables(markdown: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (header first, the |---| line dropped)."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c) or not any(cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def clean_header(cell: str) -> str:
    return re.sub(r"[`*_ ]", "", cell).lower()


def cell_number(cell: str) -> str | None:
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?", cell.replace("`", "").replace("*", ""))
    return m.group(0).replace(",", "") if m else None


def results_tables(markdown: str) -> list[tuple[int, dict, list[list[str]]]]:
    """The tables with a seed column and a val_bpb column: (seed col, {field: col}, rows)."""
    found = []
    for table in parse_tables(markdown):
        header = [clean_header(c) for c in table[0]]
        seed_col = next((i for i, h in enumerate(header) if "seed" in h), None)
        bpb = [i for i, h in enumerate(header) if "bpb" in h]
        if seed_col is None or not bpb:
            continue
        cols = {"val_bpb": next((i for i in bpb if header[i] in ("valbpb", "val_bpb")), bpb[0])}
        loss = [i for i, h in enumerate(header) if "loss" in h]
        if loss:
            cols["val_loss"] = next((i for i in loss if header[i] == "valloss"), loss[0])
        size = [i for i, h in enumerate(header) if "bytes" in h and "code" not in h]
        if size:
            cols["bytes_total"] = size[0]
        found.append((seed_col, cols, table[1:]))
    return found


def check_readme(path: Path, logs: list[Log], fail) -> None:
    by_seed = {log.seed: log for log in logs if log.seed is not None}
    scored = [log for log in logs if log.val_bpb is not None]
    tables = results_tables(path.read_text(encoding="utf-8", errors="replace"))
    if not tables:
        fail(path.name, "results table", "no markdown table with a seed column and a val_bpb column")
        return
    seen = set()
    for seed_col, cols, rows in tables:
        for row in rows:
            if seed_col >= len(row):
                continue
            key = re.sub(r"[`*_ ]", "", row[seed_col]).lower()
            if key.isdigit():
                seed = int(key)
                seen.add(seed)
                log = by_seed.get(seed)
                if log is None:
                    fail(path.name, f"seed {seed}", "row in the results table has no log in the folder")
                    continue
                expected = {"val_bpb": log.val_bpb, "val_loss": log.val_loss, "bytes_total": log.bytes_total}
                source = log.name
            elif key == "mean" and scored:
                expected = {"val_bpb": mean([g.val_bpb for g in scored]),
                            "val_loss": mean([g.val_loss for g in scored])}
                source = "the mean of the logs"
            else:
                continue
            for name, col in cols.items():
                want = expected.get(name)
                if want is None or col >= len(row):
                    continue
                got, shown = cell_number(row[col]), want if name == "bytes_total" else fmt8(want)
                if got is None:
                    fail(path.name, f"{name} (seed {key})", f"'{row[col]}' is not a number; {source} has {shown}")
                elif (int(float(got)) != want) if name == "bytes_total" else (fmt8(float(got)) != shown):
                    fail(path.name, f"{name} (seed {key})", f"{row[col]} but {source} has {shown}"
                         f"{'' if name == 'bytes_total' else ' (8 decimals, from the _exact line)'}")
    for seed in sorted(set(by_seed) - seen):
        fail(path.name, f"seed {seed}", f"no row in the results table for {by_seed[seed].name}")


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def valid_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        return True
    except ValueError:
        return False


def per_seed_entries(sub: dict) -> list[dict]:
    """Per-seed results, in any of the shapes records use: seed_results {seed: {...}} or [{seed, ...}],
    or seeds [{seed, ...}]."""
    entries = []
    for key in ("seed_results", "per_seed", "runs", "seeds"):
        value = sub.get(key)
        if isinstance(value, dict):
            for seed, item in value.items():
                if isinstance(item, dict):
                    entries.append({"seed": seed, **item})
                elif is_number(item):
                    entries.append({"seed": seed, "val_bpb": item})
        elif isinstance(value, list):
            entries += [item for item in value if isinstance(item, dict)]
    return entries


def check_submission(path: Path, logs: list[Log], fail) -> None:
    try:
        sub = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        fail(path.name, "json", f"not valid JSON ({e})")
        return
    if not isinstance(sub, dict):
        fail(path.name, "json", "the top level is not an object")
        return
    for name in STR_FIELDS:
        if name not in sub:
            fail(path.name, name, "missing (a string)")
        elif not isinstance(sub[name], str):
            fail(path.name, name, f"{sub[name]!r} is not a string")
        elif not sub[name].strip():
            fail(path.name, name, "empty")
        elif name == "date" and not valid_date(sub[name]):
            fail(path.name, name, f"{sub[name]!r} is not an ISO 8601 date")
    for name, ok, kind in [(n, is_number, "a number") for n in NUMBER_FIELDS + ("val_loss", "val_bpb_std")] + \
                          [(n, is_int, "an integer") for n in INT_FIELDS + ("bytes_code",)]:
        if name not in sub:
            if name in NUMBER_FIELDS + INT_FIELDS:
                fail(path.name, name, f"missing ({kind})")
        elif not (ok(sub[name]) or (name == "val_bpb_std" and sub[name] is None)):
            fail(path.name, name, f"{sub[name]!r} is not {kind}")
    scored = [log for log in logs if log.val_bpb is not None]
    if not scored:
        return
    bpbs, losses = [g.val_bpb for g in scored], [g.val_loss for g in scored]
    expect = {"val_bpb": mean(bpbs), "val_loss": mean(losses)}
    if len(bpbs) > 1:
        expect["val_bpb_std"] = std(bpbs)
    for name, want in expect.items():
        if is_number(sub.get(name)) and fmt8(sub[name]) != fmt8(want):
            what = "sample std" if name == "val_bpb_std" else "mean"
            fail(path.name, name, f"{sub[name]} but the {what} of the logs' headlines "
                 f"({', '.join(fmt8(v) for v in (bpbs if 'bpb' in name else losses))}) is {fmt8(want)}")
    for name in ("bytes_total", "bytes_code"):
        values = [getattr(g, name) for g in logs if getattr(g, name) is not None]
        if values and is_int(sub.get(name)) and sub[name] != max(values):
            fail(path.name, name, f"{sub[name]} but the logs' {'largest ' if len(set(values)) > 1 else ''}"
                 f"value is {max(values)}")
    log_seeds = sorted(g.seed for g in logs if g.seed is not None)
    if isinstance(sub.get("seeds"), list) and all(is_int(s) for s in sub["seeds"]):
        if sorted(sub["seeds"]) != log_seeds:
            fail(path.name, "seeds", f"{sub['seeds']} but the logs' seeds are {log_seeds}")
    by_seed = {g.seed: g for g in logs if g.seed is not None}
    for entry in per_seed_entries(sub):
        try:
            seed = int(entry.get("seed"))
        except (TypeError, ValueError):
            fail(path.name, "seed_results", f"entry without a seed: {entry}")
            continue
        log = by_seed.get(seed)
        if log is None:
            fail(path.name, f"seed_results[{seed}]", f"no log in the folder has seed:{seed}")
            continue
        for name in ("val_bpb", "val_loss"):
            value, want = entry.get(name), getattr(log, name)
            if value is not None and want is not None and (not is_number(value) or fmt8(value) != fmt8(want)):
                fail(path.name, f"seed_results[{seed}].{name}", f"{value} but {log.name} has {fmt8(want)}")
        for name in ("bytes_total", "bytes_code", "steps"):
            value, want = entry.get(name), getattr(log, name)
            if value is not None and want is not None and value != want:
                fail(path.name, f"seed_results[{seed}].{name}", f"{value} but {log.name} has {want}")


def knob_float(log: Log, name: str, default: float) -> float:
    try:
        return float(log.knobs[name])
    except (KeyError, ValueError):
        return default


def check_log(log: Log, shipped: bytes | None, args, fail) -> None:
    f = log.name
    if log.runs > 1:
        fail(f, "runs", f"the file holds {log.runs} runs (an appended log): keep one run per file")
    if log.seed is None:
        fail(f, "seed", "no 'seed:N' line")
    if log.val_bpb is None:
        fail(f, "val_bpb", "no '<label>_exact val_loss:... val_bpb:...' line")
    else:
        if "partial" in log.headline_label:
            fail(f, "val_bpb", f"the headline {log.headline_label}_exact scores a subset of the validation set")
        if not (math.isfinite(log.val_bpb) and math.isfinite(log.val_loss)):
            fail(f, "val_bpb", f"{log.headline_label}_exact is not finite")
    if log.bytes_total is None:
        fail(f, "bytes_total", "no 'Total submission size <label>: N bytes' line")
    elif log.bytes_total > ARTIFACT_CAP_BYTES:
        fail(f, "bytes_total", f"Total submission size {log.total_label}: {log.bytes_total} bytes > "
             f"{ARTIFACT_CAP_BYTES} (over by {log.bytes_total - ARTIFACT_CAP_BYTES})")
    if log.train_ms is None:
        fail(f, "train_time", "no 'stopping_early: ... train_time:' or 'step:... train_time:' line")
    elif log.train_ms > args.train_cap * 1000:
        fail(f, "train_time", f"{log.train_ms}ms ({log.train_time_from}) > the {args.train_cap:g}s cap")
    if log.eval_s is None:
        fail(f, "eval_time", "no 'total_eval_time:' line")
    elif log.eval_s > args.eval_budget:
        ttt = f", TTT timer {log.ttt_s:.1f}s" if log.ttt_s is not None else ""
        fail(f, "eval_time", f"total_eval_time:{log.eval_s:.1f}s > the {args.eval_budget:g}s budget{ttt}")
    for line in log.hessian_warnings:
        fail(f, "gptq", f"calibration ran past the training budget: '{line[:120]}'")
    # Runs without a wallclock cap print no such warning: the Hessian pass reads training data, so it
    # counts against the training budget too.
    if (not log.hessian_warnings and log.hessian_s is not None and log.train_ms is not None
            and log.knobs.get("GPTQ_CALIBRATION", "train") == "train"
            and knob_float(log, "MAX_WALLCLOCK_SECONDS", 1.0) <= 0
            and log.train_ms / 1000 + log.hessian_s > args.train_cap):
        fail(f, "gptq", f"training {log.train_ms / 1000:.1f}s + the Hessian pass on training data "
             f"{log.hessian_s:.1f}s > the {args.train_cap:g}s cap (MAX_WALLCLOCK_SECONDS=0: no reserve)")
    if shipped is not None:
        logged = log.source.encode("utf-8")
        if logged != shipped:
            hint = ""
            if shipped.startswith(b"import brotli,") and not logged.startswith(b"import brotli,"):
                hint = "; it is the packed stub, the log ran the readable source"
            fail("train_gpt.py", "source", f"differs from the source logged in {f} ({len(shipped)} vs "
                 f"{len(logged)} bytes, first difference at line {first_difference(shipped, logged)}{hint})")
        elif log.bytes_code is not None and log.bytes_code != len(shipped):
            fail(f, "bytes_code", f"the run counted Code size: {log.bytes_code} bytes, but the train_gpt.py it "
                 f"ran and ships is {len(shipped)} bytes (CODE_PACKING counted the packed stub: run with "
                 "CODE_PACKING=raw, or run the stub and ship it as train_gpt.py)")


def mixed_outputs(folder: Path) -> list[str]:
    """train_gpt.py's outputs.sha256 (renamed after the set): a file that no longer matches it was replaced
    by an export stopped between its renames, beside the previous set's other files."""
    listing = folder / "outputs.sha256"
    lines = listing.read_text(encoding="utf-8", errors="replace").splitlines() if listing.is_file() else []
    pairs = [line.partition("  ")[::2] for line in lines if line.strip()]
    return [name for digest, name in pairs if (folder / name).is_file()
            and hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]


def cmd_check(args) -> int:
    folder = Path(args.dir)
    failures = []

    def fail(where: str, what: str, detail: str) -> None:
        failures.append(f"{where}: {what}: {detail}")

    if not folder.is_dir():
        print(f"{folder}: not a directory")
        return 1
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            fail(name, "file", f"missing from {folder}")
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".log", ".txt"))
    logs, ignored = [], []
    for p in candidates:
        try:
            logs.append(parse_log(p))
        except LogError:
            ignored.append(p.name)
    if not logs:
        fail(str(folder), "logs", "no train_gpt.py log (*.log or *.txt starting with the script source)")
    if len(logs) < args.min_seeds:
        fail(str(folder), "logs", f"{len(logs)} log(s), fewer than --min-seeds {args.min_seeds}")
    seeds = [g.seed for g in logs if g.seed is not None]
    for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
        fail(str(folder), "seed", f"seed {seed} has more than one log: "
             f"{', '.join(g.name for g in logs if g.seed == seed)}")
    for name in mixed_outputs(folder):
        fail(name, "outputs", "does not match its sha256 in outputs.sha256: a mixed set (an export stopped "
             "between its renames); export again")
    shipped = (folder / "train_gpt.py").read_bytes() if (folder / "train_gpt.py").is_file() else None
    for log in logs:
        check_log(log, shipped, args, fail)
    if (folder / "submission.json").is_file():
        check_submission(folder / "submission.json", logs, fail)
    if (folder / "README.md").is_file():
        check_readme(folder / "README.md", logs, fail)
    if failures:
        print("\n".join(failures))
        print(f"FAILED {folder}: {len(failures)} problem(s)")
        return 1
    bpbs = [g.val_bpb for g in logs]
    s = std(bpbs)
    ttt = [g.ttt_s for g in logs if g.ttt_s is not None]
    print(f"OK {folder}: {len(logs)} log(s), seeds {','.join(str(g.seed) for g in logs)}; val_bpb mean "
          f"{fmt8(mean(bpbs))}{f' std {s:.8f}' if s is not None else ''}; largest total "
          f"{max(g.bytes_total for g in logs)} bytes (cap {ARTIFACT_CAP_BYTES}); train <= "
          f"{max(g.train_ms for g in logs) / 1000:.1f}s (cap {args.train_cap:g}s); eval <= "
          f"{max(g.eval_s for g in logs):.1f}s (budget {args.eval_budget:g}s)"
          f"{f'; TTT timer <= {max(ttt):.1f}s' if ttt else ''}"
          f"{f'; not logs: {chr(44).join(ignored)}' if ignored else ''}")
    return 0


# -----------------------------------------------------------------------------------------------
# summarize, table
# -----------------------------------------------------------------------------------------------


def load_logs(paths: list[str]) -> list[Log]:
    logs, problems = [], []
    for p in paths:
        try:
            log = parse_log(Path(p))
        except (OSError, LogError) as e:
            problems.append(f"{p}: {e}")
            continue
        for name, what in (("val_bpb", "_exact line"), ("seed", "seed: line"), ("bytes_total", "Total submission size")):
            if getattr(log, name) is None:
                problems.append(f"{p}: {name}: no {what}")
        logs.append(log)
    seeds = [g.seed for g in logs if g.seed is not None]
    for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
        problems.append(f"seed {seed}: more than one log ({', '.join(g.name for g in logs if g.seed == seed)})")
    if problems:
        raise LogError("\n".join(problems))
    return logs


def seed_result(log: Log) -> dict:
    return dict(log=log.name, seed=log.seed, headline=f"{log.headline_label}_exact", val_bpb=log.val_bpb,
                val_loss=log.val_loss, bytes_total=log.bytes_total, bytes_code=log.bytes_code, steps=log.steps,
                iterations=log.iterations, stopped_early=log.train_time_from == "stopping_early",
                train_time_s=None if log.train_ms is None else log.train_ms / 1000, eval_time_s=log.eval_s,
                ttt_time_s=log.ttt_s, hardware=log.hardware, world_size=log.world_size, device=log.device,
                python=log.python, pytorch=log.pytorch)


def one_or_all(values: list):
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else distinct


def summary(logs: list[Log], existing: dict, args) -> dict:
    logs = sorted(logs, key=lambda g: g.seed)
    bpbs = [g.val_bpb for g in logs]
    out = dict(existing)
    for name in ("name", "author", "github_id", "blurb"):
        value = getattr(args, name)
        out[name] = value if value is not None else existing.get(name, "")
    out["date"] = args.date or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = std(bpbs)
    out.update(
        val_bpb=round(mean(bpbs), 8), val_bpb_std=None if s is None else round(s, 8),
        val_loss=round(mean([g.val_loss for g in logs]), 8),
        bytes_total=max(g.bytes_total for g in logs),
        bytes_code=max((g.bytes_code for g in logs if g.bytes_code is not None), default=None),
        seeds=[g.seed for g in logs],
        seed_results={str(g.seed): seed_result(g) for g in logs},
        hardware=one_or_all([g.hardware for g in logs]), world_size=one_or_all([g.world_size for g in logs]),
        python=one_or_all([g.python for g in logs]), pytorch=one_or_all([g.pytorch for g in logs]),
        train_time_s=max((g.train_ms / 1000 for g in logs if g.train_ms is not None), default=None),
        eval_time_s=max((g.eval_s for g in logs if g.eval_s is not None), default=None),
    )
    return out


def cmd_summarize(args) -> int:
    try:
        logs = load_logs(args.logs)
    except LogError as e:
        print(e, file=sys.stderr)
        return 1
    existing = {}
    if args.output and Path(args.output).is_file():  # keep the metadata and extra fields written before
        try:
            existing = json.loads(Path(args.output).read_text(encoding="utf-8"))
        except ValueError:
            existing = {}
    text = json.dumps(summary(logs, existing if isinstance(existing, dict) else {}, args), indent=2) + "\n"
    if args.output:
        atomic_write_text(Path(args.output), text)
        print(f"wrote {args.output}: {len(logs)} seed(s), val_bpb {json.loads(text)['val_bpb']:.8f}")
    else:
        sys.stdout.write(text)
    return 0


def results_table(logs: list[Log]) -> str:
    logs = sorted(logs, key=lambda g: g.seed)
    rows = ["| seed | val_loss | val_bpb | bytes_total | steps | train_time | eval_time |",
            "|---|---|---|---|---|---|---|"]
    for g in logs:
        rows.append(f"| {g.seed} | {fmt8(g.val_loss)} | {fmt8(g.val_bpb)} | {g.bytes_total} | {g.steps} | "
                    f"{g.train_ms / 1000:.1f}s | {g.eval_s:.1f}s |")
    if len(logs) > 1:
        s = std([g.val_bpb for g in logs])
        rows.append(f"| mean | {fmt8(mean([g.val_loss for g in logs]))} | {fmt8(mean([g.val_bpb for g in logs]))} "
                    f"| | | | |")
        rows.append(f"| std | | {s:.8f} | | | | |")
    return "\n".join(rows) + "\n"


def cmd_table(args) -> int:
    try:
        logs = load_logs(args.logs)
    except LogError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.write(results_table(logs))
    return 0


# -----------------------------------------------------------------------------------------------
# significance
# -----------------------------------------------------------------------------------------------


def values_of(items: list[str]) -> list[float]:
    """Numbers, or train_gpt.py logs (their headline val_bpb)."""
    out = []
    for item in items:
        try:
            out.append(float(item))
        except ValueError:
            path = Path(item)
            if not path.is_file():
                raise LogError(f"{item}: neither a number nor a log file")
            log = parse_log(path)
            if log.val_bpb is None:
                raise LogError(f"{item}: no _exact line")
            out.append(log.val_bpb)
    return out


def require(package: str, command: str):
    """Import an optional package, or None after one line naming the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        print(f"error: {command} needs {package}: .venv/bin/python -m pip install {package}", file=sys.stderr)
        return None


def cmd_significance(args) -> int:
    import numpy as np

    if require("scipy", "significance") is None:
        return 2
    from scipy import stats

    try:
        values = values_of(args.values)
        against = values_of(args.against) if args.against else None
    except LogError as e:
        print(e, file=sys.stderr)
        return 2
    if args.threshold is None and against is None:
        print("error: give --threshold T and/or --against V1 V2 ...", file=sys.stderr)
        return 2
    if len(values) < 2 or (against is not None and len(against) < 2):
        print("error: a t-test needs at least 2 values per sample", file=sys.stderr)
        return 2
    x = np.asarray(values, dtype=np.float64)
    print(f"n:{len(x)} mean:{x.mean():.8f} std:{x.std(ddof=1):.8f}")
    if args.threshold is not None:
        alpha = 0.01 if args.alpha is None else args.alpha
        r = stats.ttest_1samp(x, args.threshold, alternative="less")
        print(f"one-sample t-test, H1: mean < {args.threshold:.8f}: t:{r.statistic:.4f} df:{int(r.df)} "
              f"p:{r.pvalue:.6f} -> {'significant' if r.pvalue < alpha else 'NOT significant'} at p < {alpha:g}")
    if against is not None:
        alpha = 0.25 if args.alpha is None else args.alpha
        y = np.asarray(against, dtype=np.float64)
        r = stats.ttest_ind(x, y, equal_var=False, alternative="less")
        print(f"Welch's t-test, H1: mean < other mean {y.mean():.8f} (n:{len(y)} std:{y.std(ddof=1):.8f}): "
              f"t:{r.statistic:.4f} df:{float(r.df):.2f} p:{r.pvalue:.6f} -> "
              f"{'significant' if r.pvalue < alpha else 'NOT significant'} at p < {alpha:g}")
    return 0


# -----------------------------------------------------------------------------------------------
# plot
# -----------------------------------------------------------------------------------------------


def cmd_plot(args) -> int:
    matplotlib = require("matplotlib", "plot")
    if matplotlib is None:
        return 2
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = []
    for p in args.logs:
        try:
            logs.append(parse_log(Path(p)))
        except (OSError, LogError) as e:
            print(f"{p}: {e}", file=sys.stderr)
            return 1
    labels = [g.label for g in logs]
    labels = [f"{lab} ({g.path.parent.name}/{g.path.stem})" if labels.count(lab) > 1 else lab
              for lab, g in zip(labels, logs)]
    fig, (ax_train, ax_val) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for log, label in zip(logs, labels):
        line = None
        if log.train_points:
            (line,) = ax_train.plot([ms / 1000 for _, _, ms in log.train_points],
                                    [loss for _, loss, _ in log.train_points], label=label, lw=1)
        color = line.get_color() if line is not None else None
        if log.val_points:
            (vline,) = ax_val.plot([ms / 1000 for *_, ms in log.val_points], [p[2] for p in log.val_points],
                                   marker=".", label=label, color=color)
            color = vline.get_color()
        if log.val_bpb is not None and log.train_ms is not None:  # the score, after export
            ax_val.plot([log.train_ms / 1000], [log.val_bpb], marker="*", ms=10, color=color, ls="none")
    ax_train.set_ylabel("train loss")
    ax_val.set_ylabel("val_bpb (* = headline score)")
    ax_val.set_xlabel("training time (s)")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}: {len(logs)} log(s)")
    return 0


# -----------------------------------------------------------------------------------------------
# CLI
# -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="records/tool.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a record folder against its logs")
    p.add_argument("dir")
    p.add_argument("--train-cap", type=float, default=600.0, help="training time cap, seconds (600)")
    p.add_argument("--eval-budget", type=float, default=600.0, help="total_eval_time budget, seconds (600)")
    p.add_argument("--min-seeds", type=int, default=1, help="fewest logs the folder must hold (1)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summarize", help="write submission.json from logs")
    p.add_argument("logs", nargs="+", metavar="LOG")
    p.add_argument("-o", "--output", help="write here (atomically; fields it already has are kept); "
                   "default: print to stdout")
    p.add_argument("--name")
    p.add_argument("--author")
    p.add_argument("--github-id", dest="github_id")
    p.add_argument("--blurb")
    p.add_argument("--date", help="ISO 8601 (default: now, UTC)")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("table", help="print the README results table (markdown) from logs")
    p.add_argument("logs", nargs="+", metavar="LOG")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("significance", help="one-sided t-tests that the mean val_bpb is lower",
                       description="VALUES are numbers or logs (their headline val_bpb). Give VALUES before "
                       "--against, whose list runs to the end.")
    p.add_argument("values", nargs="+", metavar="VALUES")
    p.add_argument("--threshold", type=float, help="one-sample test: mean < T (the records' SOTA - 0.005, p < 0.01)")
    p.add_argument("--against", nargs="+", metavar="V", help="Welch's test: mean < the mean of these (p < 0.25)")
    p.add_argument("--alpha", type=float, help="significance level (default 0.01 for --threshold, 0.25 for --against)")
    p.set_defaults(func=cmd_significance)

    p = sub.add_parser("plot", help="train loss and val_bpb against training time")
    p.add_argument("logs", nargs="+", metavar="LOG")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
