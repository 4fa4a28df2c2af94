"""data/sample_val.py: a seeded sample of whole val documents, each target scored with the bytes it has in the
full split, and a folder that train_gpt.py labels partial."""

import json

import numpy as np
import torch

import sample_val
import train_gpt as tg
from shard_io import read_shard, write_shard


def stream(rng: np.random.Generator, docs: int) -> np.ndarray:
    return np.concatenate([np.r_[1, rng.integers(2, 50, rng.integers(1, 9))] for _ in range(docs)]).astype(np.uint16)


def test_the_sample_keeps_whole_documents_and_each_targets_bytes():
    tokens = stream(np.random.default_rng(0), 40)
    positions, kept, total = sample_val.sampled_positions(tokens, 0.25, seed=3)
    assert (kept, total) == (10, 40)
    docs = {tuple(tokens[s:e]) for s, e in tg.val_documents(torch.from_numpy(tokens.astype(np.int32)))}
    sampled = torch.from_numpy(tokens[positions].astype(np.int32))
    assert {tuple(sampled[s:e].tolist()) for s, e in tg.val_documents(sampled)} <= docs
    assert len(tg.val_documents(sampled)) == kept
    # a target's bytes (the LUT rule looks at the token before) are the same in the sample and in the full split
    luts = tg.ByteLUTs(torch.arange(60, dtype=torch.int16) % 4, torch.arange(60) % 3 == 0, torch.arange(60) < 2)
    full = tg.token_bytes_from_luts(torch.from_numpy(tokens.astype(np.int32)), luts)
    assert torch.equal(tg.token_bytes_from_luts(sampled, luts)[1:], full[torch.from_numpy(positions[1:])])


def test_the_folder_links_train_shards_and_is_labelled_a_sample(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    rng = np.random.default_rng(1)
    write_shard(src / "fineweb_val_000000.bin", stream(rng, 30))
    write_shard(src / "fineweb_train_000000.bin", stream(rng, 5))
    (src / "build_info.json").write_text(json.dumps({"tokenizer_sha256": "ab"}))
    assert sample_val.main([str(src), str(dst), "--fraction", "0.5", "--seed", "2"]) == 0
    assert "sampled 15 of 30 val documents" in capsys.readouterr().out
    assert (dst / "fineweb_train_000000.bin").resolve() == (src / "fineweb_train_000000.bin").resolve()
    assert read_shard(dst / "fineweb_val_000000.bin")[0] == 1
    info = tg.build_info(str(dst))
    assert info["tokenizer_sha256"] == "ab" and info["val_sample"]["documents"] == 15
    assert sample_val.main([str(src), str(dst), "--fraction", "1.5"]) == 2
    assert sample_val.main([str(tmp_path / "nowhere"), str(dst), "--fraction", "0.5"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
