"""data/audit.py: val documents found in train shards, planted or not, and one clear line for bad input."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import audit
import build_shards
import shard_io
from conftest import make_documents

REPO = Path(__file__).resolve().parents[1]
BOS = audit.BOS_ID


def random_docs(rng: np.random.Generator, count: int, low: int = 8, high: int = 80) -> list[np.ndarray]:
    """Documents of BOS + random ids 2..999: distinct, and none shorter than MIN_DOC_TOKENS."""
    return [np.concatenate([[BOS], rng.integers(2, 1000, int(rng.integers(low, high)))]).astype(np.uint16)
            for _ in range(count)]


def write_set(directory: Path, val: list[np.ndarray], train: list[np.ndarray], cuts=()) -> Path:
    """One val shard; the train stream cut into shards at the given token offsets."""
    directory.mkdir(parents=True, exist_ok=True)
    shard_io.write_shard(directory / shard_io.shard_name("val", 0), np.concatenate(val))
    stream = np.concatenate(train)
    for index, (a, b) in enumerate(zip([0, *cuts], [*cuts, stream.size])):
        shard_io.write_shard(directory / shard_io.shard_name("train", index), stream[a:b])
    return directory


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "data" / "audit.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_iter_documents_joins_documents_across_any_shard_cut(tmp_path):
    rng = np.random.default_rng(0)
    docs = random_docs(rng, 60, low=0, high=40) + random_docs(rng, 1, low=500, high=501)  # short and long ones
    rng.shuffle(docs)
    stream = np.concatenate(docs)
    # random cuts, a repeated cut (an empty shard) and cuts inside the long document (a shard without BOS)
    long_start = sum(d.size for d in docs[: next(i for i, d in enumerate(docs) if d.size == 501)])
    cuts = sorted([*rng.integers(1, stream.size, 8).tolist(), 5, 5, long_start + 100, long_start + 300])
    write_set(tmp_path, docs[:1], docs, cuts)
    got = list(audit.iter_documents(shard_io.list_shards(tmp_path, "train")))
    assert [d.tolist() for d in got] == [d.tolist() for d in docs]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A clean CaseOps build by our own builder: val and train disjoint, several train shards, a sidecar."""
    out = tmp_path_factory.mktemp("audit_build") / "out"
    docs = [f"Doc {i}: {text}" for i, text in enumerate(make_documents(seed=3, count=400))]
    info = build_shards.build_dataset(docs, out, val_docs=60, vocab_size=320, tokens_per_shard=2000,
                                      use_caseops=True)
    assert info["train_shards"] >= 3 and info["train_docs_equal_to_a_val_doc"] == 0
    return out, info


def test_clean_build_has_no_overlap_and_counts_match_build_info(built, capsys):
    out, info = built
    assert audit.main([str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"shards: val {info['val_shards']}  train {info['train_shards']}" in lines
    assert f"tokens: val {info['val_tokens']:,}  train {info['train_tokens']:,}" in lines
    assert f"documents: val {info['val_docs']:,}  train {info['train_docs']:,}" in lines
    assert f"tokenizer_sha256: {info['tokenizer_sha256']}" in lines
    assert any(line.startswith("byte_sidecar: present") and "matches val tokens" in line for line in lines)
    assert lines[-1].startswith("val_docs_in_train: 0/")


def test_sidecar_length_mismatch_and_unknown_tokenizer_are_reported(built, tmp_path):
    copy = shutil.copytree(built[0], tmp_path / "copy")
    sidecar = build_shards.sidecar_paths(copy)[-1]
    shard_io.write_shard(sidecar, shard_io.read_shard(sidecar)[:-1])
    (copy / "build_info.json").unlink()
    lines = audit.report_lines(audit.audit(copy))
    assert "tokenizer_sha256: unknown" in lines
    assert any("MISMATCH" in line for line in lines if line.startswith("byte_sidecar:"))
    for path in build_shards.sidecar_paths(copy):
        path.unlink()
    assert "byte_sidecar: absent" in audit.report_lines(audit.audit(copy))


def test_planted_exact_copies_are_found_and_near_copies_and_short_docs_are_not(tmp_path):
    rng = np.random.default_rng(1)
    val = random_docs(rng, 50)
    val[20] = val[30] = np.array([BOS, 5, 6], dtype=np.uint16)  # short: a lone repeat is no evidence
    val[41] = val[40].copy()  # a val document that occurs twice: both occurrences count
    train = random_docs(rng, 200)
    planted = [val[3], val[7], val[20], val[40], val[9][:-1], np.concatenate([val[11], [7]])]
    for offset, doc in enumerate(planted):
        train.insert(10 + 20 * offset, doc.copy())
    write_set(tmp_path, val, train, cuts=[3000, 6000])
    result = audit.audit(tmp_path)
    assert result.overlapping == [3, 7, 40, 41]
    assert result.val_compared == 48 and result.docs == {"val": 50, "train": 206}
    assert "val_docs_in_train: 4/48 (8.33%; documents under 8 tokens not compared)" in audit.report_lines(result)


@pytest.mark.parametrize("shards_spanned", [2, 3])
def test_copy_straddling_train_shards_is_found(tmp_path, shards_spanned):
    rng = np.random.default_rng(2)
    val = random_docs(rng, 30) + random_docs(rng, 1, low=400, high=401)
    train = random_docs(rng, 100)
    train.insert(50, val[-1].copy())
    start = sum(d.size for d in train[:50])
    cuts = [start + 150] if shards_spanned == 2 else [start + 100, start + 300]  # 3: a shard without any BOS
    write_set(tmp_path, val, train, cuts)
    assert len(shard_io.list_shards(tmp_path, "train")) == shards_spanned
    assert audit.audit(tmp_path).overlapping == [30]


def test_cli_exit_codes_and_output(tmp_path):
    rng = np.random.default_rng(4)
    val, train = random_docs(rng, 10), random_docs(rng, 40)
    clean = run_cli(write_set(tmp_path / "clean", val, train, cuts=[500]))
    assert clean.returncode == 0, clean.stderr
    assert "val_docs_in_train: 0/10 (0.00%" in clean.stdout
    train[5], train[25] = val[2], val[6]
    dirty = run_cli(write_set(tmp_path / "dirty", val, train, cuts=[500]))
    assert dirty.returncode == 1, dirty.stderr
    assert "val_docs_in_train: 2/10 (20.00%" in dirty.stdout
    assert "first_val_docs_in_train: 2, 6" in dirty.stdout
    assert run_cli("--help").returncode == 0


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])


def _bad_magic(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))


BAD_INPUTS = {
    "missing folder": (lambda d: shutil.rmtree(d), "no such folder"),
    "no val shards": (lambda d: (d / "fineweb_val_000000.bin").unlink(), "no fineweb_val_*.bin shards"),
    "no train shards": (lambda d: [p.unlink() for p in d.glob("fineweb_train_*")], "no fineweb_train_*.bin"),
    "truncated train shard": (lambda d: _truncate(d / "fineweb_train_000001.bin"), "fineweb_train_000001.bin"),
    "bad magic in val": (lambda d: _bad_magic(d / "fineweb_val_000000.bin"), "bad magic"),
    "only short val docs": (lambda d: shard_io.write_shard(d / "fineweb_val_000000.bin", [BOS, 4, BOS]),
                            "no document of 8 or more tokens"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    rng = np.random.default_rng(5)
    directory = write_set(tmp_path / "set", random_docs(rng, 5), random_docs(rng, 20), cuts=[300])
    damage, message = BAD_INPUTS[case]
    damage(directory)
    assert audit.main([str(directory)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and message in captured.err


def test_cli_bad_input_has_no_traceback(tmp_path):
    rng = np.random.default_rng(6)
    directory = write_set(tmp_path, random_docs(rng, 5), random_docs(rng, 20), cuts=[300])
    _truncate(directory / "fineweb_train_000000.bin")
    proc = run_cli(directory)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "truncated or corrupt" in proc.stderr
