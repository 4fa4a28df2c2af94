"""int8 export and our artifact container: roundtrip, corruption, config mismatch, and the size cap."""

import pytest
import torch

import train_gpt as tg
from conftest import tiny_env

CPU = tg.Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), autocast=False)
SMALL = {"VOCAB_SIZE": "512", "NUM_LAYERS": "2", "MODEL_DIM": "128", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
         "TRAIN_SEQ_LEN": "16", "TRAIN_BATCH_TOKENS": "128"}  # the 512x512 MLP and 512x128 embedding get quantized


def trained_like_model(env=SMALL) -> tg.GPT:
    model = tg.build_model(tg.Hyperparameters.from_env(env), torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_int8_per_row_error_is_at_most_half_a_step():
    w = torch.randn(300, 256, generator=torch.Generator().manual_seed(0))
    q = tg.quantize_int8_per_row(w)
    deq = q["q"].float() * q["scale"].float()[:, None]
    clip = torch.quantile(w.abs(), tg.INT8_CLIP_QUANTILE, dim=1, keepdim=True)
    inside = w.abs() <= clip
    assert ((deq - w).abs() <= q["scale"].float()[:, None] / 2 + 1e-6)[inside].all()
    assert q["q"].dtype == torch.int8 and q["scale"].shape == (300,)


def test_small_and_integer_tensors_pass_through_exactly():
    state = {"gain": torch.randn(512), "ids": torch.arange(10), "big": torch.randn(300, 300)}
    quantized = tg.quantize_state_dict(state)
    assert [quantized[k][0] for k in state] == ["raw", "raw", "int8_row"]
    restored = tg.dequantize_state_dict(quantized)
    assert torch.equal(restored["gain"], state["gain"]) and torch.equal(restored["ids"], state["ids"])


def test_packed_artifact_roundtrips_bit_exactly():
    model = trained_like_model()
    hp = tg.Hyperparameters.from_env(SMALL)
    quantized = tg.quantize_state_dict(model.state_dict())
    unpacked, config = tg.unpack_artifact(tg.pack_artifact(quantized, hp.model_config()))
    assert config == hp.model_config()
    expected, got = tg.dequantize_state_dict(quantized), tg.dequantize_state_dict(unpacked)
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype and torch.equal(got[name], expected[name]), name
    assert expected["tok_emb.weight"].dtype == torch.bfloat16


@pytest.fixture
def artifact_blob():
    hp = tg.Hyperparameters.from_env(SMALL)
    return tg.pack_artifact(tg.quantize_state_dict(trained_like_model().state_dict()), hp.model_config())


def test_corrupt_artifact_is_an_error(artifact_blob):
    corrupt = bytearray(artifact_blob)
    corrupt[len(corrupt) // 2] ^= 0x40
    with pytest.raises(tg.ArtifactError, match="checksum mismatch"):
        tg.unpack_artifact(bytes(corrupt))


def test_truncated_artifact_is_an_error(artifact_blob):
    with pytest.raises(tg.ArtifactError, match="truncated or corrupt"):
        tg.unpack_artifact(artifact_blob[:-100])
    with pytest.raises(tg.ArtifactError, match="bad magic or too short"):
        tg.unpack_artifact(artifact_blob[:6])


def test_foreign_file_is_an_error():
    with pytest.raises(tg.ArtifactError, match="not a train_gpt.py artifact"):
        tg.unpack_artifact(b"PK\x03\x04 a zip file, not ours")


def test_artifact_from_another_config_is_an_error(tmp_path, artifact_blob):
    path = tmp_path / "final_model.int8.ptz"
    path.write_bytes(artifact_blob)
    other = tg.Hyperparameters.from_env({**SMALL, "NUM_LAYERS": "3", "MLP_MULT": "4"})
    with pytest.raises(tg.ArtifactError, match="NUM_LAYERS=2 .run has 3., MLP_MULT=2.0 .run has 4.0."):
        tg.load_artifact_into(tg.build_model(other, CPU.device), path, other)


def test_export_over_the_cap_fails_plainly(tiny_dataset, tmp_path, monkeypatch):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path))
    lines = []
    monkeypatch.setattr(tg, "ARTIFACT_CAP_BYTES", 10_000)  # the tiny model + this file are ~100 KB
    with pytest.raises(tg.ArtifactError, match="over the 10000-byte cap by"):
        tg.export_artifact(tg.build_model(hp, CPU.device), hp, CPU, lambda msg, **k: lines.append(msg))
    assert any(line.startswith("error: artifact is") for line in lines)


def test_export_writes_files_atomically_and_reports_sizes(tiny_dataset, tmp_path):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path))
    lines = []
    path = tg.export_artifact(tg.build_model(hp, CPU.device), hp, CPU, lambda msg, **k: lines.append(msg))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final_model.int8.ptz", "final_model.pt"]  # no temp left
    code = len((tg.Path(tg.__file__)).read_bytes())
    assert f"Code size: {code} bytes" in lines
    assert f"Total submission size int8+zlib: {path.stat().st_size + code} bytes" in lines
