"""The README and docs/ hold up: links resolve, the knob table is --help's, every command block runs as written,
and a missing optional package is one line naming its install command."""

import importlib.util
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import train_gpt as tg

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(markdown: str) -> str:
    """The text outside fenced code blocks (where a link is a link)."""
    return re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", prose(markdown), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = page.read_text()
    for target in LINK.findall(prose(text)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to missing {target}"
        assert REPO in file.parents or file == REPO, f"{page.name}: link outside the repository: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file.read_text()), f"{page.name}: no heading for #{anchor} in {path or page.name}"


def test_pages_name_no_file_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "frontier.md" not in text, page.name


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_knob_doc_is_what_help_prints(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_gpt.py", "--help"])
    assert tg.run_cli() == 0
    knob_table = load_script("knob_table")
    expected = knob_table.knobs_doc(knob_table.table_of(capsys.readouterr().out))
    assert (REPO / "docs" / "knobs.md").read_text() == expected, \
        "docs/knobs.md is stale: regenerate it with .venv/bin/python scripts/knob_table.py --write"


def test_every_knob_is_in_the_knob_doc_with_its_default():
    doc = (REPO / "docs" / "knobs.md").read_text()
    for f in fields(tg.Hyperparameters):
        assert f"| `{f.name.upper()}` | `{f.default}` |" in doc, f.name


def test_quick_start_commands_exist():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/quickstart.sh", ".venv/bin/python -m pytest -q"]
    assert (REPO / "scripts" / "quickstart.sh").exists()
    assert commands[1] in (REPO / ".ci" / "run").read_text()  # CI runs exactly the README's test command


def test_every_command_block_is_classified_and_uses_the_venv():
    checker = load_script("check_readme_commands")
    listed = subprocess.run([sys.executable, str(REPO / "scripts" / "check_readme_commands.py"), "--list"],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stdout
    blocks = checker.readme_blocks((REPO / "README.md").read_text())
    assert {b.kind for b in blocks} >= {"fast", "cpu", "gpu"}
    fences = re.findall(r"^```(\w+)", (REPO / "README.md").read_text(), re.M)
    assert set(fences) == {"bash"}, "a command block in another language would go unchecked"
    for b in blocks:
        assert not re.search(r"(^|[\s;&|(])(python|torchrun) ", b.text), f"README.md:{b.line}: use .venv/bin/python"


def test_fast_readme_blocks_run_as_written(tmp_path):
    checker = load_script("check_readme_commands")
    work = checker.scratch_copy(tmp_path)
    fast = [b for b in checker.readme_blocks((REPO / "README.md").read_text()) if b.kind == "fast"]
    assert fast
    for b in fast:
        done = checker.run_block(b, work, timeout=120)
        assert done.returncode == 0, f"README.md:{b.line}: {(done.stdout + done.stderr)[-2000:]}"


def test_troubleshooting_quotes_messages_the_code_prints():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    sources = "".join(p.read_text() for p in [REPO / "train_gpt.py", *REPO.glob("scripts/*"),
                                               *REPO.glob("records/*.py"), *REPO.glob("data/*.py")] if p.is_file())
    for row in table.splitlines()[2:]:
        if not row.startswith("| `"):
            continue
        for quoted in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
            for piece in re.split(r"\.\.\.|\bN\b|\bM\b|\bX\b|\bY\b", quoted):
                assert piece.strip(" .") in sources, f"troubleshooting quotes {quoted!r}: no such message"


def run_without(module: str, code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter in which `import module` fails, as on a machine without the package."""
    return subprocess.run([sys.executable, "-c", f"import sys; sys.modules[{module!r}] = None\n{code}"],
                          cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("module,args,line", [
    ("matplotlib", ["plot", "x.txt", "-o", "x.png"],
     "error: plot needs matplotlib: .venv/bin/python -m pip install matplotlib"),
    ("scipy", ["significance", "1", "2", "--threshold", "3"],
     "error: significance needs scipy: .venv/bin/python -m pip install scipy"),
])
def test_records_tool_names_a_missing_package_in_one_line(module, args, line):
    done = run_without(module, f"import runpy; sys.argv = ['records/tool.py', *{args!r}]\n"
                               "runpy.run_path('records/tool.py', run_name='__main__')")
    assert (done.returncode, done.stderr) == (2, line + "\n")


@pytest.mark.parametrize("module", ["tqdm", "huggingface_hub"])
def test_downloader_names_a_missing_package_in_one_line(module, tmp_path):
    """No traceback, and nothing fetched or created: the check comes before the manifest is downloaded."""
    done = run_without(module, "import runpy; sys.path.insert(0, 'data'); "
                               f"sys.argv = ['cached_challenge_fineweb.py', '--data-root', {str(tmp_path / 'd')!r}]\n"
                               "runpy.run_path('data/cached_challenge_fineweb.py', run_name='__main__')")
    assert done.returncode == 1
    assert done.stderr == (f"cached_challenge_fineweb: error: the download needs the {module} package: "
                           f".venv/bin/python -m pip install {module}\n")
    assert not (tmp_path / "d").exists()
