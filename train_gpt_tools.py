"""
train_gpt_tools.py: what a source checkout of train_gpt.py needs beyond the run itself: the packer that builds the
two-line stub records ship (#1412, #1855) and the knob table `--help` prints. A run from the source imports it to
count and write its stub; the stub never does (it is already packed, and has no comments to table), so this file is
a build tool like python_minifier: never inside a stub, never counted.
"""

import ast
import re
from dataclasses import fields

from train_gpt import PACKED_STUB_PREFIX, Hyperparameters, compress, require_module

# The payload's first lines when a run uses more modules than train_gpt.py: a finder that serves their sources to
# `import` from a dict, so they load when imported, as from their files.
PACKED_MODULES_FINDER = """import sys
from importlib.util import spec_from_loader
class PackedModules(dict):
 def find_spec(s,n,*a):return spec_from_loader(n,s)if n in s else None
 def create_module(s,spec):0
 def exec_module(s,m):exec(s[m.__name__],m.__dict__)
sys.meta_path.insert(0,PackedModules(%r))
"""

def packed_code(source: str, modules: dict[str, str] | None = None) -> str:
    """The two-line self-extracting form records ship (#1412, #1855): the source minified, brotli, base93 in an
    exec stub; the modules ({name: source}) the run imports ride inside, minified alike (PACKED_MODULES_FINDER)."""
    modules = modules or {}
    # global names are shortened too, except those the modules import from this file
    source = minified(source, {n.name for text in modules.values() for node in ast.walk(ast.parse(text))
                               if isinstance(node, ast.ImportFrom) and node.module == "train_gpt" for n in node.names})
    if modules:
        source = PACKED_MODULES_FINDER % ({name: minified(text) for name, text in modules.items()},) + source
    blob = compress(source.encode(), "brotli")
    return (f'{PACKED_STUB_PREFIX}exec(brotli.decompress(functools.reduce(lambda n,c:n*93+c-32-(c>34)-(c>92),'
            f'b"{base93(blob)}",0).to_bytes({len(blob)},"big")))\n')

def base93(blob: bytes) -> str:
    """The stub's digits: one big number in printable ASCII but " and \\ (0x20-0x7E), 6.54 bits a character against the
    records' base85's 6.4 (2% fewer code bytes); the stub's reduce reads it back in ~0.5 s."""
    number, digits = int.from_bytes(blob, "big"), bytearray()
    while number:
        number, digit = divmod(number, 93)
        digits.append(digit + 32 + (digit > 1) + (digit > 58))  # skips 34 (") and 92 (\\)
    return digits[::-1].decode()

def minified(source: str, exported: set | None = None) -> str:
    """#1855's minifier settings (doc strings, comments and asserts dropped, local names shortened); global names
    too unless exported is None (a module's, read by train_gpt.py)."""
    return require_module("python_minifier").minify(
        source, remove_literal_statements=True, remove_asserts=True, prefer_single_line=True, hoist_literals=False,
        rename_globals=exported is not None, preserve_globals=sorted(exported or ()))

def knob_table(source: str) -> str:
    """Markdown table of every knob (--help, docs/knobs.md): meanings are the source's line comments (not packed)."""
    docs = dict(re.findall(r"^    (\w+): \w+ = (?:knob|choice)\(.*\)  # (.*)$", source, re.M))
    rows = ["| env var | default | meaning |", "|---|---|---|"]
    for f in fields(Hyperparameters):
        choices, bounds = f.metadata["choices"], f.metadata["bounds"]
        allowed = f"; one of {' / '.join(choices)}" if choices else f"; in {bounds}" if bounds else ""
        rows.append(f"| `{f.name.upper()}` | `{f.default}` | {(docs.get(f.name, '') + allowed).replace('|', '/')} |")
    return "\n".join(rows)
