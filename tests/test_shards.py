"""The official shard format: our reader against the data tools' writer, and clear errors on bad files."""

import numpy as np
import pytest

import shard_io
import train_gpt as tg
from conftest import cpu_runtime, run_script, tiny_env

CPU = cpu_runtime()


def test_roundtrip_including_the_largest_id(tmp_path):
    tokens = np.array([0, 1, 65535, 12345, 7], dtype=np.uint16)
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", tokens)
    assert tg.read_shard(tmp_path / "fineweb_val_000000.bin").tolist() == tokens.tolist()


def test_truncated_shard_is_an_error(tmp_path):
    path = tmp_path / "fineweb_train_000000.bin"
    shard_io.write_shard(path, np.arange(100, dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(tg.DataError, match="header says 100 tokens .* truncated or corrupt"):
        tg.read_shard(path)


def test_file_shorter_than_header_is_an_error(tmp_path):
    path = tmp_path / "fineweb_train_000000.bin"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(tg.DataError, match="shorter than the 1024-byte shard header"):
        tg.read_shard(path)


def test_wrong_magic_is_an_error(tmp_path):
    path = tmp_path / "fineweb_train_000000.bin"
    shard_io.write_shard(path, np.arange(10, dtype=np.uint16))
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(tg.DataError, match="bad shard header"):
        tg.read_shard(path)


def test_missing_glob_is_an_error(tmp_path):
    with pytest.raises(tg.DataError, match="no files match"):
        tg.TrainLoader(str(tmp_path / "fineweb_train_*.bin"), CPU, 1024)


def test_val_token_out_of_vocab_is_an_error(tmp_path):
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", np.array([1, 5, 400, 2] * 20, dtype=np.uint16))
    with pytest.raises(tg.DataError, match="token id 400 >= VOCAB_SIZE 320"):
        tg.load_val_tokens(str(tmp_path / "fineweb_val_*.bin"), seq_len=8, vocab_size=320)


def test_cli_reports_a_truncated_val_shard_and_exits_nonzero(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in tiny_dataset.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    val = data / "fineweb_val_000000.bin"
    val.write_bytes(val.read_bytes()[:-100])
    result = run_script(tiny_env(tiny_dataset, tmp_path, DATA_PATH=data))
    assert result.returncode == 2
    assert "error:" in result.stderr and "truncated or corrupt shard" in result.stderr
    assert "Traceback" not in result.stderr


def test_val_loader_skips_the_byte_sidecar_that_shares_its_glob(tmp_path):
    """fineweb_val_bytes_*.bin (CaseOps) matches fineweb_val_*.bin: read as tokens it would double the split."""
    shard_io.write_shard(tmp_path / "fineweb_val_000000.bin", np.array([1, 5, 6, 7, 8], dtype=np.uint16))
    shard_io.write_shard(tmp_path / "fineweb_val_bytes_000000.bin", np.array([0, 1, 2, 1, 3], dtype=np.uint16))
    tokens = tg.load_val_tokens(str(tmp_path / "fineweb_val_*.bin"), seq_len=2, vocab_size=320)
    assert tokens.tolist() == [1, 5, 6, 7, 8]


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(tg.DataError, match="cached_challenge_fineweb.py"):
        tg.load_val_tokens(str(tmp_path / "fineweb_val_*.bin"), seq_len=2, vocab_size=320)
    with pytest.raises(tg.DataError, match="not found: get the official data"):
        tg.load_tokenizer(str(tmp_path / "missing.model"), 320)
