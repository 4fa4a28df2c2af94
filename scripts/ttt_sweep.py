"""Score one saved artifact under several eval (TTT) settings, one fresh eval-only process per variant,
resumably, and collect the headline numbers (the idea of #2008's run_longtrain_ttt_sweep.py; our own code).

    python scripts/ttt_sweep.py --artifact A.ptz --variants variants.json --out DIR \\
        [--base-env RECIPE.env] [--nproc N] [--timeout-minutes M] [--dry-run] [--python PY]

variants.json (or .toml, the same structure):
    {"variants": [{"id": "v0", "description": "rank 96", "env": {"TTT_LORA_RANK": "96"}}, ...]}

The base env (a recipe: VAR=value lines, '#' comments) gives the model and data knobs the artifact was trained
with; a variable also set in this process's environment (the shell) keeps the shell's value, with a note line.
Each variant's env overrides both, and the sweep sets EVAL_ONLY_PATH, EVAL_SUMMARY_JSON=DIR/<id>/eval.json,
ARTIFACT_DIR=DIR/<id> and RUN_ID=<id>. The rest of this process's environment is inherited (as with
scripts/eval_modes.sh), and relative paths in the recipe are read from the current directory. Each variant's
output goes to DIR/<id>/eval.log and its numbers to DIR/<id>/variant_result.json (headline = the last eval
stage). After every variant DIR/sweep_results.csv and DIR/sweep_summary.json are rewritten. Rerunning the same
command skips the variants that succeeded (with the same env and artifact) and reruns the others. Exit status:
0 when every variant succeeded, 1 when one failed or timed out, 2 for bad input, 130/143 when interrupted.
"""

import argparse
import csv
import ctypes
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from records.tool import EnvFileError, atomic_write_text, read_env_file  # noqa: E402
TRAIN_GPT = REPO / "train_gpt.py"
SET_BY_SWEEP = ("EVAL_ONLY_PATH", "EVAL_SUMMARY_JSON", "ARTIFACT_DIR", "RUN_ID")
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
VARIANT_KEYS = {"id", "description", "env"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CSV_COLUMNS = ["variant_id", "status", "headline_label", "val_bpb", "val_loss", "eval_seconds", "ttt_seconds",
               "description", "env_overrides"]
LOG_TAIL_LINES = 40


class SweepError(Exception):
    """Bad input: reported as one line, exit 2."""


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ----------------------------------------------------------------------------------------------- inputs

def env_value(value, where: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SweepError(f"{where}: value must be a string or a number, not {type(value).__name__}")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SweepError(f"{what} {path} is not UTF-8 text (at byte {e.start})") from None
    except OSError as e:
        raise SweepError(f"{what} {path} cannot be read ({e.strerror})") from None


def load_variants(path: Path) -> list[dict]:
    if not path.is_file():
        raise SweepError(f"variants file {path} does not exist")
    text = read_text(path, "variants file")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise SweepError(f"variants file {path}: expected a .json or .toml file")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise SweepError(f"variants file {path} does not parse: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict) or set(data) != {"variants"}:
        extra = sorted(set(data) - {"variants"}) if isinstance(data, dict) else []
        raise SweepError(f"variants file {path}: expected exactly one top-level key 'variants'"
                         + (f" (unknown: {', '.join(extra)})" if extra else ""))
    raw = data["variants"]
    if not isinstance(raw, list) or not raw:
        raise SweepError(f"variants file {path}: 'variants' must be a non-empty list")
    variants, seen = [], set()
    for i, v in enumerate(raw):
        where = f"variants file {path}: variant {i}"
        if not isinstance(v, dict):
            raise SweepError(f"{where} is not a table/object")
        unknown = sorted(set(v) - VARIANT_KEYS)
        if unknown:
            raise SweepError(f"{where} ({v.get('id', '?')}): unknown key(s) {', '.join(unknown)} "
                             f"(allowed: {', '.join(sorted(VARIANT_KEYS))})")
        vid = v.get("id")
        if not isinstance(vid, str) or not ID_RE.match(vid):
            raise SweepError(f"{where}: 'id' must be a string of letters, digits, '.', '_' or '-' (got {vid!r})")
        if vid in seen:
            raise SweepError(f"variants file {path}: duplicate id {vid!r}")
        seen.add(vid)
        description = v.get("description", "")
        if not isinstance(description, str):
            raise SweepError(f"{where} ({vid}): 'description' must be a string")
        env = v.get("env", {})
        if not isinstance(env, dict):
            raise SweepError(f"{where} ({vid}): 'env' must be a table/object of VAR: value")
        overrides = {}
        for key, value in env.items():
            if not VAR_RE.match(key):
                raise SweepError(f"{where} ({vid}): {key!r} is not an environment variable name")
            if key in SET_BY_SWEEP:
                raise SweepError(f"{where} ({vid}): {key} is set by the sweep itself")
            overrides[key] = env_value(value, f"{where} ({vid}) {key}")
        variants.append(dict(id=vid, description=description, env=overrides))
    return variants


def base_env(path: str, shell) -> tuple[dict[str, str], list[str]]:
    """(the base env as the variants get it, the variables whose value the shell changed): the shell wins."""
    try:
        recipe = read_env_file(path)
    except EnvFileError as e:
        raise SweepError(f"base env file {e}") from None
    changed = [k for k, v in recipe.items() if k in shell and shell[k] != v and k not in SET_BY_SWEEP]
    return {k: v if k in SET_BY_SWEEP else shell.get(k, v) for k, v in recipe.items()}, changed


# ----------------------------------------------------------------------------------------------- files

def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------- one variant

class Sweep:
    def __init__(self, args):
        self.artifact = Path(args.artifact).resolve()
        if not self.artifact.is_file():
            raise SweepError(f"artifact {args.artifact} does not exist")
        self.variants = load_variants(Path(args.variants))
        self.variants_path = str(Path(args.variants).resolve())
        self.base_env_path = str(Path(args.base_env).resolve()) if args.base_env else None
        self.base_env, self.shell_wins = base_env(args.base_env, os.environ) if args.base_env else ({}, [])
        if args.nproc < 1:
            raise SweepError(f"--nproc must be >= 1 (got {args.nproc})")
        if not args.timeout_minutes > 0:
            raise SweepError(f"--timeout-minutes must be > 0 (got {args.timeout_minutes})")
        self.out = Path(args.out).resolve()
        self.nproc, self.timeout_s, self.python = args.nproc, 60 * args.timeout_minutes, args.python

    def command(self) -> list[str]:
        if self.nproc == 1:
            return [self.python, str(TRAIN_GPT)]
        return [self.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}",
                str(TRAIN_GPT)]

    def knob_env(self, variant: dict) -> dict[str, str]:
        """The knobs the variant's process gets on top of the inherited environment: base, variant, sweep."""
        vdir = self.out / variant["id"]
        env = {**self.base_env, **variant["env"]}
        env.update(EVAL_ONLY_PATH=str(self.artifact), EVAL_SUMMARY_JSON=str(vdir / "eval.json"),
                   ARTIFACT_DIR=str(vdir), RUN_ID=variant["id"])
        return env

    def command_line(self, variant: dict) -> str:
        env = self.knob_env(variant)
        return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.quote(c) for c in self.command()])

    def result_path(self, variant: dict) -> Path:
        return self.out / variant["id"] / "variant_result.json"

    def done(self, variant: dict) -> tuple[bool, str]:
        """(skip it, why not): a success is reused only if it scored this artifact with these knobs."""
        result = read_json(self.result_path(variant))
        if not isinstance(result, dict) or result.get("status") != "success":
            return False, ""
        same = (result.get("env_overrides") == variant["env"] and result.get("artifact") == str(self.artifact)
                and result.get("base_env") == self.base_env)
        return same, "" if same else "its env, base env or artifact changed since it succeeded"

    def run_variant(self, variant: dict) -> dict:
        vdir = self.out / variant["id"]
        vdir.mkdir(parents=True, exist_ok=True)
        summary_path, log_path = vdir / "eval.json", vdir / "eval.log"
        summary_path.unlink(missing_ok=True)  # a stale summary must not pass for this run's
        env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
        env.update(self.knob_env(variant))
        start = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"# {self.command_line(variant)}\n")
            log.flush()
            proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=die_with_parent(os.getpid()))
            try:
                returncode = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
                kill_group(proc)
            except BaseException:  # Ctrl-C, SIGTERM: take the variant's processes down with the sweep
                kill_group(proc)
                raise
        wall = time.perf_counter() - start
        result = dict(variant_id=variant["id"], description=variant["description"], env_overrides=variant["env"],
                      headline_label=None, val_bpb=None, val_loss=None, eval_seconds=None, ttt_seconds=None,
                      status="error", error=None, artifact=str(self.artifact), base_env=self.base_env,
                      returncode=returncode, wall_seconds=round(wall, 3))
        summary = read_json(summary_path)
        if returncode is None:
            result.update(status="timeout", error=f"timed out after {self.timeout_s / 60:g} min\n" + log_tail(log_path))
        elif returncode != 0:
            result.update(error=f"exit status {returncode}\n" + log_tail(log_path))
        elif not isinstance(summary, dict) or not summary.get("stages"):
            result.update(error=f"exit status 0 but no eval stages in {summary_path}\n" + log_tail(log_path))
        else:
            head, timers = summary["stages"][-1], summary.get("timers", {})
            result.update(status="success", headline_label=head["label"], val_bpb=head["val_bpb"],
                          val_loss=head["val_loss"], eval_seconds=timers.get("total"), ttt_seconds=timers.get("ttt"))
        atomic_write_text(self.result_path(variant), json.dumps(result, indent=1) + "\n")
        return result

    # ------------------------------------------------------------------------------------------- aggregate

    def aggregate(self) -> dict:
        rows = []
        for v in self.variants:
            r = read_json(self.result_path(v))
            if not isinstance(r, dict) or r.get("status") not in ("success", "error", "timeout"):
                r = dict(variant_id=v["id"], description=v["description"], env_overrides=v["env"], status="pending")
            rows.append(r)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**{c: r.get(c) for c in CSV_COLUMNS}, "env_overrides": " ".join(
                f"{k}={val}" for k, val in (r.get("env_overrides") or {}).items())})
        atomic_write_text(self.out / "sweep_results.csv", buf.getvalue())
        ok = sorted((r for r in rows if r["status"] == "success"), key=lambda r: r["val_bpb"])
        counts = {s: sum(r["status"] == s for r in rows) for s in ("success", "error", "timeout", "pending")}
        best = None
        if ok:
            best = {k: ok[0][k] for k in ("variant_id", "description", "env_overrides", "headline_label", "val_bpb",
                                          "val_loss", "eval_seconds", "ttt_seconds")}
        summary = dict(artifact=str(self.artifact), variants_file=self.variants_path,
                       base_env=dict(path=self.base_env_path, env=self.base_env), nproc=self.nproc,
                       counts=counts, best=best, ranking=[r["variant_id"] for r in ok],
                       headline_labels=sorted({r["headline_label"] for r in ok}),
                       results=[{c: r.get(c) for c in CSV_COLUMNS} for r in rows])
        atomic_write_text(self.out / "sweep_summary.json", json.dumps(summary, indent=1) + "\n")
        return summary


def die_with_parent(parent: int):
    """preexec_fn: the variant's process gets SIGTERM if the sweep dies (even by SIGKILL); torchrun passes
    it on to its workers. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook():
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the sweep died before the hook ran
            os._exit(1)

    return hook if sys.platform.startswith("linux") else None


def kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def describe(variant: dict) -> str:
    return f": {variant['description']}" if variant["description"] else ""


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(summary: dict) -> None:
    print(f"| {'variant':16} | status  | val_bpb    | val_loss   | ttt s  | eval s |")
    print("|---|---|---|---|---|---|")
    for r in summary["results"]:
        print(f"| {r['variant_id']:16} | {r['status']:7} | {fmt(r['val_bpb'], '.8f'):10} | "
              f"{fmt(r['val_loss'], '.8f'):10} | {fmt(r['ttt_seconds'], '.1f'):6} | "
              f"{fmt(r['eval_seconds'], '.1f'):6} |")
    best = summary["best"]
    if best:
        print(f"best: {best['variant_id']} {best['headline_label']} val_bpb {best['val_bpb']:.8f}")
    if len(summary["headline_labels"]) > 1:
        print(f"warning: the variants' headlines are different stages ({', '.join(summary['headline_labels'])}): "
              "the ranking compares unlike scores")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ttt_sweep.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True, help="the saved artifact (.ptz) every variant scores")
    p.add_argument("--variants", required=True, help="variants file, .json or .toml")
    p.add_argument("--out", required=True, help="output directory (one subdirectory per variant)")
    p.add_argument("--base-env", help="recipe .env the artifact was trained with (VAR=value lines); a variable "
                   "also set in the shell takes the shell's value (precedence, lowest first: base env, shell, "
                   "variant, the sweep's own)")
    p.add_argument("--nproc", type=int, default=1, help="processes per variant (>1: torch.distributed.run)")
    p.add_argument("--timeout-minutes", type=float, default=60.0, help="per-variant wall-clock limit (default 60)")
    p.add_argument("--dry-run", action="store_true", help="print every variant's command line, run nothing")
    p.add_argument("--python", default=sys.executable, help="interpreter for train_gpt.py (default: this one)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        sweep = Sweep(args)
    except SweepError as e:
        print(f"ttt_sweep: error: {e}", file=sys.stderr)
        return 2
    if sweep.shell_wins:
        print(f"note: the shell's {', '.join(sweep.shell_wins)} win over the base env's (shell < variant < sweep)")
    overridden = [k for k in SET_BY_SWEEP if k in sweep.base_env]
    if overridden:
        print(f"note: the base env's {', '.join(overridden)} are replaced by the sweep's")
    if args.dry_run:
        for v in sweep.variants:
            skip, _ = sweep.done(v)
            print(f"# {v['id']}{describe(v)}" + (" (done: a real run skips it)" if skip else ""))
            print(sweep.command_line(v))
        return 0

    def on_signal(signum, frame):
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    sweep.out.mkdir(parents=True, exist_ok=True)
    summary = sweep.aggregate()
    current = None
    try:
        for i, v in enumerate(sweep.variants, 1):
            skip, why = sweep.done(v)
            if skip:
                print(f"skip {v['id']}: done", flush=True)
                continue
            if why:
                print(f"rerun {v['id']}: {why}", flush=True)
            current = v["id"]
            print(f"run {v['id']} ({i}/{len(sweep.variants)}){describe(v)}", flush=True)
            r = sweep.run_variant(v)
            current = None
            if r["status"] == "success":
                print(f"done {v['id']}: {r['headline_label']} val_bpb {r['val_bpb']:.8f} "
                      f"(ttt {fmt(r['ttt_seconds'], '.1f')} s, eval {fmt(r['eval_seconds'], '.1f')} s)", flush=True)
            else:
                print(f"{r['status']} {v['id']}: see {sweep.out / v['id'] / 'eval.log'}\n"
                      + "\n".join(["  " + line for line in (r["error"] or "").splitlines()
                                    if not line.startswith("# ")][-5:]), flush=True)
            summary = sweep.aggregate()
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        sweep.aggregate()
        print(f"interrupted{f' during {current}' if current else ''}: rerun the same command to resume",
              file=sys.stderr, flush=True)
        return 128 + signum
    print_table(summary)
    print(f"results: {sweep.out / 'sweep_results.csv'} {sweep.out / 'sweep_summary.json'}")
    return 0 if summary["counts"]["success"] == len(sweep.variants) else 1


if __name__ == "__main__":
    sys.exit(main())
