"""Run the README's command blocks as written, each by its class.

Every ```bash block of README.md follows a line `<!-- check: CLASS -->` (invisible on GitHub):
  fast  seconds on a CPU; tests/test_readme.py runs these in the test suite
  cpu   minutes on a CPU: the quick start (with the test suite), your own text, eval-only of the quick start's artifact
  net   downloads packages (the install)
  gpu   needs CUDA GPUs (the data download, the smoke test, the 8xH100 run, a record's seeds)

    .venv/bin/python scripts/check_readme_commands.py --list                # every block and its class
    .venv/bin/python scripts/check_readme_commands.py --run cpu [--dry-run] [--keep]
    .venv/bin/python scripts/check_readme_commands.py --run fast,cpu,net    # on a GPU machine add gpu
    .venv/bin/python scripts/check_readme_commands.py --run cpu --block 98   # only the block at README.md:98

Blocks run in README order under `bash -euo pipefail`, in a scratch copy of the repository (its tracked and
untracked, not ignored, files; .venv linked), so a later block finds what an earlier one made (the quick start's
artifact feeds eval-only). Before the cpu blocks it writes my_docs.jsonl, 2,000 documents of the synthetic
corpus's text, for "Your own text". Exit 0 when every block ran with exit 0; --list exits 1 on an unclassified
block.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("fast", "cpu", "net", "gpu")
MARK = re.compile(r"^<!-- check: (\S+) -->$")


@dataclass(frozen=True)
class Block:
    line: int          # 1-based line of the opening fence
    kind: str | None   # the class its marker names, None without one
    text: str

    @property
    def first(self) -> str:
        return self.text.splitlines()[0] if self.text.strip() else ""


def readme_blocks(markdown: str) -> list[Block]:
    """Every ```bash block, with the class named by the marker line above it (blank lines between allowed)."""
    lines, blocks, i = markdown.splitlines(), [], 0
    while i < len(lines):
        if not lines[i].startswith("```bash"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = i - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        mark = MARK.match(lines[above]) if above >= 0 else None
        blocks.append(Block(i + 1, mark.group(1) if mark else None, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return blocks


def scratch_copy(dest: Path, link_venv: bool = True) -> Path:
    """The repository's tracked and untracked (not ignored) files under dest, with .venv linked if asked."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but outputs and the venv
        shutil.copytree(REPO, dest, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "logs", "datasets", "tokenizers", "__pycache__", "*.pt", "*.ptz"))
        listed = []
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    if link_venv and (REPO / ".venv").exists():
        (dest / ".venv").symlink_to((REPO / ".venv").resolve())
    return dest


def write_my_docs(path: Path, n_docs: int = 2000, seed: int = 7) -> None:
    """Stand-in for the reader's own text: n_docs documents of the synthetic corpus as {"text": ...} lines."""
    sys.path.insert(0, str(REPO / "data"))
    import numpy as np
    import synthetic_corpus

    docs = synthetic_corpus.sample_documents(synthetic_corpus.make_source(seed), np.random.default_rng(seed), n_docs)
    path.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs), encoding="utf-8")


def run_block(block: Block, cwd: Path, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=cwd, env=env, timeout=timeout,
                          capture_output=True, text=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run README.md's command blocks as written, by class.")
    p.add_argument("--list", action="store_true", help="list every block and its class; exit 1 if one has none")
    p.add_argument("--run", default="", help=f"comma list of classes to run, of {','.join(CLASSES)}")
    p.add_argument("--block", default="", help="comma list of README lines: run only those blocks")
    p.add_argument("--dry-run", action="store_true", help="print the blocks --run would run, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    p.add_argument("--readme", type=Path, default=REPO / "README.md", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    blocks = readme_blocks(args.readme.read_text(encoding="utf-8"))
    if args.list:
        bad = [b for b in blocks if b.kind not in CLASSES]
        for b in blocks:
            print(f"README.md:{b.line} {b.kind if b.kind in CLASSES else 'UNCLASSIFIED'} {b.first}")
        return 1 if bad else 0
    kinds = [k for k in args.run.split(",") if k]
    unknown = [k for k in kinds if k not in CLASSES]
    if not kinds or unknown:
        print(f"error: --run takes a comma list of {', '.join(CLASSES)} (got {args.run!r})", file=sys.stderr)
        return 2
    chosen = [b for b in blocks if b.kind in kinds]
    if args.block:
        wanted = {int(n) for n in args.block.split(",")}
        chosen = [b for b in chosen if b.line in wanted]
    if args.dry_run:
        for b in chosen:
            print(f"# README.md:{b.line} ({b.kind})\n{b.text}")
        return 0
    # the install blocks make their own .venv: never let them touch this checkout's
    work = scratch_copy(Path(tempfile.mkdtemp(prefix="readme_commands_")), link_venv=not {"net", "gpu"} & set(kinds))
    if "cpu" in kinds and not (work / "my_docs.jsonl").exists():
        write_my_docs(work / "my_docs.jsonl")
    failed = 0
    for b in chosen:
        start = time.monotonic()
        done = run_block(b, work)
        print(f"README.md:{b.line} {b.kind} exit {done.returncode} in {time.monotonic() - start:.0f} s: {b.first}",
              flush=True)
        if done.returncode:
            failed += 1
            print((done.stdout + done.stderr)[-3000:], file=sys.stderr)
    if args.keep:
        print(f"scratch copy kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
