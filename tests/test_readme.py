"""The README documents every knob with its real default, and its quick start names real files."""

import re
from dataclasses import fields
from pathlib import Path

import train_gpt as tg

REPO = Path(__file__).resolve().parents[1]


def test_every_knob_is_in_the_readme_table_with_its_default():
    readme = (REPO / "README.md").read_text()
    for f in fields(tg.Hyperparameters):
        assert f"| `{f.name.upper()}` | `{f.default}` |" in readme, f.name


def test_quick_start_commands_exist():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/quickstart.sh", ".venv/bin/python -m pytest -q"]
    assert (REPO / "scripts" / "quickstart.sh").exists()
    assert commands[1] in (REPO / ".ci" / "run").read_text()  # CI runs exactly the README's test command
