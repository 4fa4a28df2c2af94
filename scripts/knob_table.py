"""Print the Markdown table of train_gpt.py's knobs (env var, default, meaning) for the README.

    python scripts/knob_table.py        (the same table as python train_gpt.py --help)
The README's table is this output; tests/test_readme.py checks that every knob appears there."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt  # noqa: E402

if __name__ == "__main__":
    print(train_gpt.knob_table())
