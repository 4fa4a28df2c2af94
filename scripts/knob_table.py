"""Print the Markdown table of train_gpt.py's knobs (env var, default, meaning) for the README.

    python scripts/knob_table.py
The README's table is this output; tests/test_readme.py checks that every knob appears there."""

import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt  # noqa: E402


def knob_table() -> str:
    rows = ["| env var | default | meaning |", "|---|---|---|"]
    for f in fields(train_gpt.Hyperparameters):
        doc = f.metadata["doc"] + (f" ({' / '.join(f.metadata['choices'])})" if f.metadata["choices"] else "")
        rows.append(f"| `{f.name.upper()}` | `{f.default}` | {doc.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(knob_table())
