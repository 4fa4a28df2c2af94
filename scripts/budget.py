"""Where an artifact's bytes go: bytes and bits per parameter of each tensor group, read from the artifact.

    .venv/bin/python scripts/budget.py final_model.int6.ptz

Each group (embed, attn, mlp, ...) is compressed alone with the artifact's compressor, plus its rANS stream,
so the groups need not add up exactly to the file. The run itself logs only the total (`budget:total`); this
reader keeps the breakdown out of the counted code. Exit 2 with one line on a file that is not an artifact.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt as tg  # noqa: E402


def budget_report(quantized: dict, compressor: str, rans: dict) -> list[str]:
    """budget:<group> lines, then budget:matrices (the large matrices' bits per parameter)."""
    groups: dict[str, list] = {}
    for name, (scheme, _, arrays) in quantized.items():
        groups.setdefault(tg.tensor_role(name), []).append((scheme, arrays))
    lines, matrix_bytes, matrix_params = [], 0, 0
    for role, items in sorted(groups.items()):
        params = sum((a["value"] if s == "raw" else a["q"]).numel() for s, a in items)
        rest = (t for _, a in items for k, t in a.items() if not (role in rans and k == "q"))
        size = len(tg.compress(b"".join(map(tg.byte_shuffle, rest)), compressor))
        size += rans[role].states.nbytes + rans[role].words.nbytes if role in rans else 0
        lines.append(f"budget:{role} tensors:{len(items)} params:{params} bytes:{size} "
                     f"bits_per_param:{8 * size / params:.3f}")
        if role in ("embed", "attn", "mlp"):
            matrix_bytes, matrix_params = matrix_bytes + size, matrix_params + params
    if matrix_params:
        lines.append(f"budget:matrices params:{matrix_params} bits_per_param:{8 * matrix_bytes / matrix_params:.3f}")
    return lines


def artifact_budget(path: Path) -> list[str]:
    blob = path.read_bytes()
    header = tg.artifact_parts(blob)[0]
    quantized, _ = tg.unpack_artifact(blob)
    rans = tg.rans_groups(quantized, bool(header["rans"]))
    return [f"artifact:{path} bytes:{len(blob)}"] + budget_report(quantized, tg.COMPRESSORS[blob[5]], rans)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    path = Path(argv[0])
    try:
        print("\n".join(artifact_budget(path)))
    except (OSError, tg.ArtifactError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
