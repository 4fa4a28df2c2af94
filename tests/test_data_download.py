"""The official-data downloader, against a fake dataset repo on disk (the hub is never contacted)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cached_challenge_fineweb as cc
import shard_io

DATASET = "datasets/fineweb10B_sp1024"
VAL = f"{DATASET}/fineweb_val_000000.bin"
TRAIN = [f"{DATASET}/fineweb_train_00000{i}.bin" for i in range(2)]
TOKENIZER = ["tokenizers/fineweb_1024_bpe.model", "tokenizers/fineweb_1024_bpe.vocab"]


class FakeHub:
    """Stands in for `fetch`: copies from a local repo folder and records each call."""

    def __init__(self, repo: Path):
        self.repo, self.calls = repo, []

    def __call__(self, remote: str, local: Path) -> None:
        self.calls.append(remote)
        shutil.copyfile(self.repo / remote, local)


def write_manifest(root: Path, files: list[str], tokens_val: int, with_sizes: bool = True) -> None:
    manifest = {
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024",
                      "stats": {"files_train": 2, "files_val": 1, "tokens_val": tokens_val, "docs_val": 3}}],
        "tokenizers": [{"name": "sp_bpe_1024", "model_path": TOKENIZER[0], "vocab_path": TOKENIZER[1]}],
    }
    if with_sizes:
        manifest["files"] = [{"path": f, "bytes": (root / f).stat().st_size} for f in files]
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def repo(tmp_path) -> Path:
    """The remote root of a fake export: manifest, 1 val shard, 2 train shards, tokenizer."""
    root = tmp_path / "repo" / cc.REMOTE_ROOT
    (root / DATASET).mkdir(parents=True)
    (root / "tokenizers").mkdir()
    shard_io.write_shard(root / VAL, np.arange(1, 31, dtype=np.uint16))
    for i, name in enumerate(TRAIN):
        shard_io.write_shard(root / name, np.full(50 + i, 7 + i, dtype=np.uint16))
    (root / TOKENIZER[0]).write_bytes(b"fake sentencepiece model")
    (root / TOKENIZER[1]).write_text("<pad>\t0\n", encoding="utf-8")
    write_manifest(root, [VAL, *TRAIN, *TOKENIZER], tokens_val=30)
    return root


@pytest.fixture
def hub(repo, tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path / "repo")
    monkeypatch.setattr(cc, "fetch", fake)
    return fake


def local_files(data_root: Path) -> set[str]:
    return {p.relative_to(data_root).as_posix() for p in data_root.rglob("*") if p.is_file()}


def test_downloads_the_requested_shards_into_the_official_layout(hub, repo, tmp_path):
    data = tmp_path / "data"
    result = cc.download("sp1024", train_shards=1, data_root=data)
    expected = {"manifest.json", VAL, TRAIN[0], *TOKENIZER}
    assert local_files(data) == expected
    assert sorted(hub.calls) == sorted(cc.remote_path(p) for p in expected)
    assert all(call.startswith(cc.REMOTE_ROOT) for call in hub.calls)
    for path in expected:
        assert (data / path).read_bytes() == (repo / path).read_bytes()
    assert result["val_tokens"] == 30 and result["skipped"] == []


def test_second_run_fetches_nothing_and_a_damaged_file_is_fetched_again(hub, tmp_path):
    data = tmp_path / "data"
    cc.download("sp1024", train_shards=2, data_root=data)
    hub.calls.clear()
    result = cc.download("sp1024", train_shards=2, data_root=data)
    assert hub.calls == [] and result["fetched"] == []
    assert len(result["skipped"]) == 5
    shard = data / TRAIN[1]
    shard.write_bytes(shard.read_bytes()[:-10])  # an interrupted copy
    result = cc.download("sp1024", train_shards=2, data_root=data)
    assert result["fetched"] == [TRAIN[1]] and hub.calls == [cc.remote_path(TRAIN[1])]
    assert shard_io.read_header(shard) == 51


def test_train_shards_zero_gets_only_val_and_tokenizer(hub, tmp_path, capsys):
    data = tmp_path / "data"
    cc.main(["--variant", "sp1024", "--train-shards", "0", "--data-root", str(data)])
    assert local_files(data) == {"manifest.json", VAL, *TOKENIZER}
    assert "val tokens 30" in capsys.readouterr().out


def test_positional_train_shards_like_the_official_script(hub, tmp_path):
    data = tmp_path / "data"
    cc.main(["1", "--variant", "sp1024", "--data-root", str(data)])
    assert (data / TRAIN[0]).is_file() and not (data / TRAIN[1]).exists()


def test_truncated_download_is_refused_and_removed(hub, repo, tmp_path):
    remote = repo / TRAIN[1]
    remote.write_bytes(remote.read_bytes()[:-4])  # the manifest still lists the full size
    data = tmp_path / "data"
    message = r"fineweb_train_000001\.bin: has 1122 bytes but the manifest says 1126 \(truncated.*deleted"
    with pytest.raises(SystemExit, match=message):
        cc.main(["--variant", "sp1024", "--train-shards", "2", "--data-root", str(data)])
    assert not (data / TRAIN[1]).exists()
    assert (data / TRAIN[0]).is_file()


def test_truncated_shard_is_refused_by_its_header_without_manifest_sizes(hub, repo, tmp_path):
    write_manifest(repo, [], tokens_val=30, with_sizes=False)
    remote = repo / TRAIN[0]
    remote.write_bytes(remote.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"fineweb_train_000000\.bin: header says 50 tokens.*truncated"):
        cc.download("sp1024", train_shards=1, data_root=tmp_path / "data")


def test_incomplete_validation_set_is_refused(hub, repo, tmp_path):
    write_manifest(repo, [], tokens_val=31, with_sizes=False)
    with pytest.raises(ValueError, match="val shards hold 30 tokens, the manifest says 31"):
        cc.download("sp1024", train_shards=0, data_root=tmp_path / "data")


def test_unknown_variant_and_too_many_shards_are_clear_errors(hub, tmp_path):
    data = tmp_path / "data"
    with pytest.raises(ValueError, match=r"'fineweb10B_sp8192' is not in manifest.json.*fineweb10B_sp1024"):
        cc.download("sp8192", train_shards=1, data_root=data)
    with pytest.raises(ValueError, match="unknown variant 'gpt2'"):
        cc.download("gpt2", train_shards=1, data_root=data)
    with pytest.raises(SystemExit, match=r"--train-shards must be in 0\.\.2 for sp1024, got 3"):
        cc.main(["--variant", "sp1024", "--train-shards", "3", "--data-root", str(data)])
    assert local_files(data) == {"manifest.json"}


def test_hub_fetch_asks_for_the_right_file(repo, tmp_path, monkeypatch):
    import huggingface_hub

    asked = {}

    def fake_hf_hub_download(**kwargs):
        asked.update(kwargs)
        return str(repo / VAL)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    local = tmp_path / "val.bin"
    cc.fetch(cc.remote_path(VAL), local)
    assert asked == {"repo_id": cc.REPO_ID, "filename": "fineweb_val_000000.bin",
                     "subfolder": cc.remote_path(DATASET), "repo_type": "dataset"}
    assert local.read_bytes() == (repo / VAL).read_bytes()


def test_repo_id_and_remote_root_come_from_the_environment():
    code = "import cached_challenge_fineweb as c; print(c.REPO_ID, c.remote_path('manifest.json'))"
    data_dir = Path(cc.__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATCHED_FINEWEB")}
    default = subprocess.run([sys.executable, "-c", code], cwd=data_dir, env=env, capture_output=True, text=True)
    assert default.stdout.split() == ["willdepueoai/parameter-golf", "datasets/manifest.json"]
    env.update(MATCHED_FINEWEB_REPO_ID="me/my-export", MATCHED_FINEWEB_REMOTE_ROOT_PREFIX="/custom_root/")
    custom = subprocess.run([sys.executable, "-c", code], cwd=data_dir, env=env, capture_output=True, text=True)
    assert custom.stdout.split() == ["me/my-export", "custom_root/manifest.json"]
