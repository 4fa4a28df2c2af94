"""CaseOps: the lossless case transform the leaderboard top (#1855, lineage #1729/#1736) applies to the text
before SentencePiece, and the per-token byte counts that keep val_bpb on the ORIGINAL text.

The transform rewrites every maximal run of ASCII letters [A-Za-z]+:

    lowercase  "golf"      -> "golf"                       unchanged
    TitleCase  "Golf"      -> TITLE "golf"                 (also a single capital: "A" -> TITLE "a")
    ALLCAPS    "NASA"      -> ALLCAPS "nasa"               (two letters or more)
    mixed      "McDonald"  -> TITLE "mc" CAPNEXT "donald"  (TITLE if the first letter is a capital,
               "iPhone"    -> "i" CAPNEXT "phone"           then CAPNEXT before every later capital)

and escapes a literal operator character of the text as ESC + that character. Nothing else changes:
digits, punctuation, whitespace and non-ASCII text (Zürich, ÉCOLE, 日本語) pass through, so only ASCII
letters are lowercased. The operators are private-use characters, the record's assignment
(lossless_caps_caseops_v1), reserved as SentencePiece user-defined pieces right after the special ids:

    TITLE   U+E001  id 4        pad 0, <s> (BOS) 1, </s> 2, <unk> 3,
    ALLCAPS U+E002  id 5        then the four operators 4-7,
    CAPNEXT U+E003  id 6        then the 256 byte-fallback pieces 8-263,
    ESC     U+E004  id 7        then the BPE pieces.

`decode(encode(text)) == text` for every string; `decode` rejects what `encode` never produces (a stray or
dangling operator, an uppercase ASCII letter, ESC before anything but an operator).

Byte rule of the val sidecar (`token_original_bytes`): every byte of the transformed text counts as one
original byte, except the three UTF-8 bytes of each operator that the transform inserted, which count 0
(an escaped literal operator counts its own 3 bytes; its ESC counts 0). A token is credited with the
bytes of the transformed text it spells out, so a token mixing operators and letters counts only its
letters, an operator token and BOS count 0, and the byte-fallback pieces of a multi-byte character count
one byte each (the k pieces of a k-byte character sum to k). The dummy-prefix space SentencePiece puts
before a document counts 0. The per-document sum is len(original.encode("utf-8")), exactly.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
OPERATOR_NAMES = ("TITLE", "ALLCAPS", "CAPNEXT", "ESC")
FIRST_OPERATOR_ID = 4  # after pad 0, BOS 1, EOS 2, UNK 3
OPERATOR_IDS = {op: FIRST_OPERATOR_ID + i for i, op in enumerate(OPERATORS)}
TRANSFORM_NAME = "caseops_v1"  # = the records' lossless_caps_caseops_v1
SPACE_PIECE = "\u2581"

_ENCODE_RE = re.compile(r"[\ue001-\ue004]|[A-Za-z]+")
_DECODE_RE = re.compile(r"\ue004(.)|([\ue001\ue002])?([a-z](?:\ue003?[a-z])*)|([\ue001-\ue004])", re.S)
_CAPNEXT_RE = re.compile(r"\ue003([a-z])")
_OPERATOR_BYTES_RE = re.compile(rb"\xee\x80[\x81-\x84]")
_ESC_BYTES = ESC.encode("utf-8")


class CaseOpsError(ValueError):
    """A string that `encode` cannot have produced."""


def _encode_match(match: re.Match) -> str:
    run = match.group()
    if run in OPERATORS:
        return ESC + run
    if run.islower():
        return run
    lower = run.lower()
    if len(run) >= 2 and run.isupper():
        return ALLCAPS + lower
    if run[0].isupper() and run[1:].islower():
        return TITLE + lower
    if len(run) == 1:
        return TITLE + lower
    out = [TITLE if run[0].isupper() else "", lower[0]]
    for original, low in zip(run[1:], lower[1:]):
        out.append(CAPNEXT + low if original.isupper() else low)
    return "".join(out)


def encode(text: str) -> str:
    """The CaseOps transform of `text` (see the module docstring)."""
    return _ENCODE_RE.sub(_encode_match, text)


def _decode_match(match: re.Match) -> str:
    escaped, mode, body, stray = match.groups()
    if stray is not None:
        raise CaseOpsError(f"operator U+{ord(stray):04X} at {match.start()} does not start a word or an escape")
    if escaped is not None:
        if escaped not in OPERATORS:
            raise CaseOpsError(f"ESC at {match.start()} is followed by {escaped!r}, not an operator")
        return escaped
    text = match.string
    if match.start() and "a" <= text[match.start() - 1] <= "z":
        raise CaseOpsError(f"a word starts inside a word at {match.start()}")  # encode never splits a run
    if mode == ALLCAPS:
        if CAPNEXT in body:
            raise CaseOpsError(f"CAPNEXT inside an ALLCAPS word at {match.start()}")
        return body.upper()
    word = _CAPNEXT_RE.sub(lambda m: m.group(1).upper(), body)
    return word[0].upper() + word[1:] if mode == TITLE else word


def decode(text: str) -> str:
    """The exact inverse of `encode`; raises CaseOpsError on a string `encode` cannot produce."""
    upper = re.search(r"[A-Z]", text)
    if upper:
        raise CaseOpsError(f"uppercase ASCII letter {upper.group()!r} at {upper.start()} in transformed text")
    return _DECODE_RE.sub(_decode_match, text)


# ----------------------------------------------------------------------------
# Per-token original bytes (the val sidecar)
# ----------------------------------------------------------------------------

def check_operator_pieces(sp, name: str) -> None:
    """The tokenizer must hold the operators as user-defined pieces at ids 4-7 (the records' layout)."""
    for op, op_name in zip(OPERATORS, OPERATOR_NAMES):
        expected = OPERATOR_IDS[op]
        got = sp.piece_to_id(op)
        if got != expected or sp.is_control(got) or sp.is_unknown(got) or sp.is_byte(got):
            raise ValueError(f"{name}: CaseOps needs {op_name} (U+{ord(op):04X}) as a user-defined piece with "
                             f"id {expected}, found id {got}; train the tokenizer with --caseops")
        if expected not in sp.encode(f"a{op}a"):
            raise ValueError(f"{name}: {op_name} (U+{ord(op):04X}) is not encoded as its own piece "
                             "(it must be a user-defined symbol)")


PROBE_TEXT = "A Probe:  two spaces,\n\ta tab, a ligature \ufb01, x\u00b2, \u65e5\u672c, \U0001f642 \ue001 end "


def check_spells_text(sp, name: str) -> None:
    """The sidecar is exact only if the pieces spell the transformed text byte for byte: refuse a tokenizer
    that normalizes (NFKC, collapsed or stripped whitespace) before any document is processed."""
    probe = encode(PROBE_TEXT)
    try:
        token_original_bytes(sp.encode(probe), probe, piece_surfaces(sp), len(PROBE_TEXT.encode("utf-8")))
    except ValueError:
        spelled = sp.decode(sp.encode(probe))
        try:
            spelled = decode(spelled)
        except CaseOpsError:
            pass
        raise ValueError(
            f"{name}: the tokenizer does not reproduce the text ({PROBE_TEXT!r} comes back as {spelled!r}), so "
            "no exact per-token byte count exists; CaseOps needs a tokenizer with identity normalization, "
            "whitespace kept and byte fallback, as build_shards.py --caseops trains (the #1855 record's "
            "published tokenizer normalizes with NFKC and collapses whitespace)") from None


def piece_surfaces(sp) -> list[bytes]:
    """For every id, the bytes of text it spells: "▁" is a space, a byte piece its byte, control ids nothing."""
    surfaces = []
    for i in range(sp.get_piece_size()):
        if sp.is_control(i):
            surfaces.append(b"")
        elif sp.is_byte(i):
            surfaces.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]))  # "<0xE2>"
        elif sp.is_unknown(i):
            surfaces.append(b"\x00unk")  # never matches text: an <unk> in a document is reported below
        else:
            surfaces.append(sp.id_to_piece(i).replace(SPACE_PIECE, " ").encode("utf-8"))
    return surfaces


def _stream_and_weights(transformed: str) -> tuple[bytes, np.ndarray]:
    """The transformed text as SentencePiece's pieces spell it (a literal "▁" reads back as a space) and the
    original bytes each of those bytes stands for (0 for the operators the transform inserted)."""
    if SPACE_PIECE in transformed:
        parts = [part.encode("utf-8") for part in transformed.split(SPACE_PIECE)]
        stream = b" ".join(parts)
        weights = np.ones(len(stream), dtype=np.int64)
        offset = 0
        for part in parts[:-1]:
            offset += len(part)
            weights[offset] = len(SPACE_PIECE.encode("utf-8"))  # the space stands for the 3-byte "▁"
            offset += 1
    else:
        stream = transformed.encode("utf-8")
        weights = np.ones(len(stream), dtype=np.int64)
    escape_end = -1  # end of the last inserted ESC: an operator starting there is a literal
    for match in _OPERATOR_BYTES_RE.finditer(stream):
        if match.start() == escape_end:
            escape_end = -1
            continue
        weights[match.start() : match.end()] = 0
        escape_end = match.end() if match.group() == _ESC_BYTES else -1
    return stream, weights


def token_original_bytes(ids: Sequence[int], transformed: str, surfaces: Sequence[bytes],
                         original_length: int | None = None) -> np.ndarray:
    """Original UTF-8 bytes covered by each token of one document (see the byte rule above).

    `ids` encode `transformed` (without BOS); raises ValueError when the pieces do not spell the text
    (a normalizing tokenizer, an <unk>), since no exact count exists then."""
    stream, weights = _stream_and_weights(transformed)
    lengths = np.fromiter((len(surfaces[i]) for i in ids), dtype=np.int64, count=len(ids))
    spelled = b"".join(surfaces[i] for i in ids)
    if spelled == b" " + stream and lengths.size and lengths[0] >= 1:
        lengths[0] -= 1  # SentencePiece's dummy-prefix space is not in the text
    elif spelled != stream:
        raise ValueError("the tokenizer's pieces do not spell the transformed text (a normalizing tokenizer or "
                         "an <unk> piece); the byte sidecar needs identity normalization and byte fallback")
    ends = np.cumsum(lengths)
    cumulative = np.concatenate([[0], np.cumsum(weights)])
    counts = cumulative[ends] - cumulative[ends - lengths]
    if original_length is not None and int(counts.sum()) != original_length:
        raise ValueError(f"byte sidecar sums to {int(counts.sum())} for a {original_length}-byte document")
    return counts
