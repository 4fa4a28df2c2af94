"""The knob table of train_gpt.py, exactly as `train_gpt.py --help` prints it: print it, or write docs/knobs.md.

    .venv/bin/python scripts/knob_table.py           # print the table
    .venv/bin/python scripts/knob_table.py --write   # regenerate docs/knobs.md

docs/knobs.md is this script's output, never edited by hand; tests/test_readme.py checks that it equals --help.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KNOBS_DOC = REPO / "docs" / "knobs.md"
HEADER = """# Knobs

Every knob of `train_gpt.py` is an environment variable; a run prints the resolved values at startup. This
table is what `.venv/bin/python train_gpt.py --help` prints, written here by
`.venv/bin/python scripts/knob_table.py --write` (do not edit it by hand: `tests/test_readme.py` checks it
against `--help`). A misspelled knob stops the run with "did you mean ...?".

"""


def table_of(help_text: str) -> str:
    """The Markdown table in `train_gpt.py --help`'s output: its lines from the first one starting with '|'."""
    lines = help_text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    return "\n".join(lines[first:]).rstrip() + "\n"


def help_table() -> str:
    return table_of(subprocess.run([sys.executable, str(REPO / "train_gpt.py"), "--help"], cwd=REPO,
                                   capture_output=True, text=True, check=True).stdout)


def knobs_doc(table: str) -> str:
    return HEADER + table


if __name__ == "__main__":
    table = help_table()
    if sys.argv[1:] == ["--write"]:
        KNOBS_DOC.write_text(knobs_doc(table))
        print(f"wrote {KNOBS_DOC.relative_to(REPO)}")
    elif sys.argv[1:]:
        print("usage: .venv/bin/python scripts/knob_table.py [--write]", file=sys.stderr)
        sys.exit(2)
    else:
        print(table, end="")
