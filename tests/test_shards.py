"""The official shard format: our reader against the data tools' writer, and clear errors on bad files."""

import numpy as np
import pytest
import torch

import shard_io
import train_gpt as tg
from conftest import run_script, tiny_env

CPU = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), autocast=False)


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
        tg.TokenStream(str(tmp_path / "fineweb_train_*.bin"))


def test_train_loader_gives_each_rank_a_disjoint_span_and_wraps(tmp_path):
    shard_io.write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(0, 300, dtype=np.uint16))
    shard_io.write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(300, 500, dtype=np.uint16))
    pattern = str(tmp_path / "fineweb_train_*.bin")
    loaders = [tg.TrainLoader(pattern, tg.Runtime(r, 2, r, CPU.device, False)) for r in range(2)]
    # 2 ranks x 4 accumulation steps: each micro-batch is 64 tokens per rank = 2 rows of 32.
    for step in range(3):
        batches = [loader.next_batch(global_tokens=512, seq_len=32) for loader in loaders]
        for rank, (x, y) in enumerate(batches):
            start = (step * 2 + rank) * 65
            expected = (torch.arange(start, start + 65) % 500)  # the stream wraps after 500 tokens
            assert torch.equal(x.reshape(-1), expected[:-1]) and torch.equal(y.reshape(-1), expected[1:])
            assert x.shape == (2, 32)


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
