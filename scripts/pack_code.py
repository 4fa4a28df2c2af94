"""Write train_gpt_packed.py: the packed stub of train_gpt.py with the optional modules that the knobs in the
environment use (train_gpt_longrun.py for RESUME_*/EXPORT_MINUTES/EVAL_ONLY_PATH, train_gpt_mixers.py for the
sliding window, Hedge and the n-gram tilt), exactly as a run of those knobs counts and ships it.

    env $(grep -v '^#' records/recipes/top.env | xargs) .venv/bin/python scripts/pack_code.py [OUT]

Train with the stub and ship it as the record's train_gpt.py (docs/artifact.md#shipping-the-code-that-ran).
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt as tg  # noqa: E402


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]) or len(argv) > 1:
        print(__doc__.strip())
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if argv and argv[0].startswith("-"):  # a mistyped option must not become the output file's name
        print(f"error: unknown option {argv[0]} (usage: scripts/pack_code.py [OUT]; --help)", file=sys.stderr)
        return 2
    out = Path(argv[0] if argv else "train_gpt_packed.py")
    try:
        hp = replace(tg.Hyperparameters.from_env(), code_packing="brotli")
        modules = [name for name in tg.OPTIONAL_MODULES if tg.optional_module(name, hp)]
        size, stub = tg.shipped_code(hp, lambda line: None)
        out.write_bytes(stub)
    except (tg.HyperparameterError, tg.ArtifactError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {size} bytes (train_gpt.py{''.join(f' + {m}.py' for m in modules)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
