"""Our artifact container and the shipped code: roundtrips (in process, fresh process, packed code stub),
corruption, config mismatch, and the size cap."""

import ast
import json
import math
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch
from conftest import cpu_runtime, randomized_model, run_script, tiny_env, without_package
from test_faults import one_line_error

import train_gpt as tg
import train_gpt_longrun as longrun
import train_gpt_reference as reference
import train_gpt_tools as tools

CPU = cpu_runtime()
SMALL = {"VOCAB_SIZE": "512", "NUM_LAYERS": "2", "MODEL_DIM": "128", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
         "TRAIN_SEQ_LEN": "16", "TRAIN_BATCH_TOKENS": "128", "NUM_LOOPS": "0",
         "KEEP_FLOAT_MAX_NUMEL": "4096"}  # every block matrix and the embedding get quantized


def trained_like_model(env=SMALL) -> tg.GPT:
    return randomized_model(env, std=0.05)


def test_int8_per_row_is_the_baselines():
    w = torch.randn(300, 256, generator=torch.Generator().manual_seed(0))
    w[:3] *= 1e-4  # rows under the clamp_min(1/127) floor
    q = reference.quantize_int8_per_row(w)
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)  # the 2026-03-17 baseline's quantize_float_tensor, restated
    scale = (clip / 127.0).clamp_min(1.0 / 127.0)
    codes = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / scale[:, None]), -127, 127)
    assert torch.equal(q["q"], codes.to(torch.int8)) and torch.equal(q["scale"], scale.half())


@pytest.mark.parametrize("compressor, rans", [("brotli", True), ("brotli", False), ("zstd", False), ("lzma", False),
                                              ("zlib", True)])
def test_packed_artifact_roundtrips_bit_exactly(compressor, rans):
    model = trained_like_model()
    hp = tg.Hyperparameters.from_env(SMALL)
    quantized = tg.quantize_state_dict(model.state_dict(), hp)
    groups = tg.rans_groups(quantized, rans)
    assert sorted(groups) == (["attn", "mlp"] if rans else [])
    assert sum(scheme == "rows" for scheme, _, _ in quantized.values()) == 2 * 6 + 1 + 2  # + int8 gates
    unpacked, config = tg.unpack_artifact(tg.pack_artifact(quantized, hp.model_config(), compressor, groups))
    assert config == hp.model_config()
    expected, got = tg.dequantize_state_dict(quantized), tg.dequantize_state_dict(unpacked)
    assert expected.keys() == got.keys() == model.state_dict().keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype and torch.equal(got[name], expected[name]), name
    assert expected["tok_emb.weight"].dtype == torch.bfloat16


def test_rans_coding_shrinks_the_artifact():
    hp = tg.Hyperparameters.from_env(SMALL)
    quantized = tg.quantize_state_dict(trained_like_model().state_dict(), hp)
    plain = tg.pack_artifact(quantized, hp.model_config(), "brotli")
    coded = tg.pack_artifact(quantized, hp.model_config(), "brotli", tg.rans_groups(quantized, True))
    assert len(coded) < len(plain) - 500


def test_byte_shuffle_roundtrips_every_dtype():
    for t in (torch.randn(7, 3).half(), torch.randn(5), torch.randint(-31, 32, (4, 9), dtype=torch.int8),
              torch.randn(3, 2).bfloat16()):
        assert torch.equal(tg.byte_unshuffle(tg.byte_shuffle(t), t.dtype, list(t.shape)), t)


def test_the_stub_digits_are_base93_in_quote_free_printable_ascii():
    """base93 against a plain positional decoder over its own alphabet, and the stub holds 4/5 * log2(93)/8 fewer
    bytes than base85 would (leading zero bytes survive: the stub stores the length)."""
    alphabet = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']
    gen = torch.Generator().manual_seed(0)
    for blob in (b"", b"\0\0\1", bytes(range(256)), bytes(torch.randint(0, 256, (3000,), generator=gen).tolist())):
        text = tools.base93(blob)
        number = 0
        for ch in text:
            number = number * 93 + alphabet.index(ch)
        assert number.to_bytes(len(blob), "big") == blob
        if len(blob) > 1000:
            assert len(text) <= math.ceil(8 * len(blob) / math.log2(93)) < 5 * len(blob) / 4 * 0.98


@pytest.fixture
def artifact_blob():
    hp = tg.Hyperparameters.from_env(SMALL)
    quantized = tg.quantize_state_dict(trained_like_model().state_dict(), hp)
    return tg.pack_artifact(quantized, hp.model_config(), "brotli", tg.rans_groups(quantized, True))


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


def sealed(body: bytes, version: int = tg.ARTIFACT_VERSION, compressor_id: int = 1) -> bytes:
    """A container around `body` whose checksum holds: what another version's writer, or a bug in ours, leaves."""
    return tg.ARTIFACT_MAGIC + struct.pack("<BBI", version, compressor_id, zlib.crc32(body)) + body


def with_header(header: dict, data: bytes = b"") -> bytes:
    """A sealed brotli artifact of this JSON header and stored data, with no rANS tail."""
    text = json.dumps(header).encode()
    packed = tg.compress(struct.pack("<I", len(text)) + text + data, "brotli")
    return sealed(struct.pack("<I", len(packed)) + packed)


RAW_W = {"name": "w", "scheme": "raw", "dtype": "float32", "arrays": {"value": ["float32", [4], 0, 16]}, "coded": {}}


@pytest.mark.parametrize("field, message", [
    ({"version": tg.ARTIFACT_VERSION + 1},
     f"unsupported artifact version {tg.ARTIFACT_VERSION + 1} / compressor id 1"),
    ({"compressor_id": 9}, f"unsupported artifact version {tg.ARTIFACT_VERSION} / compressor id 9"),
], ids=["another_version", "unknown_compressor"])
def test_a_whole_artifact_of_another_version_or_compressor_is_an_error(artifact_blob, field, message):
    with pytest.raises(tg.ArtifactError, match=re.escape(message)):
        tg.unpack_artifact(sealed(artifact_blob[10:], **field))


@pytest.mark.parametrize("blob, message", [
    (sealed(struct.pack("<I", 5) + b"abcde"), "artifact is malformed: "),  # not brotli data
    (with_header({"config": {}}), "artifact is malformed: 'rans'"),
    (with_header({"config": {}, "rans": {}, "tensors": [RAW_W]}), "artifact is malformed: "),  # no data
], ids=["not_compressed", "no_tensor_list", "array_past_the_data"])
def test_an_artifact_damaged_inside_its_checksum_is_an_error(blob, message):
    with pytest.raises(tg.ArtifactError, match=re.escape(message)):
        tg.unpack_artifact(blob)


def test_a_tensor_of_an_unknown_scheme_is_an_error():
    quantized, _ = tg.unpack_artifact(with_header({"config": {}, "rans": {}, "tensors": [RAW_W]}, bytes(16)))
    assert torch.equal(tg.dequantize_state_dict(quantized)["w"], torch.zeros(4))  # the same header, whole, loads
    unknown = with_header({"config": {}, "rans": {}, "tensors": [{**RAW_W, "scheme": "int3"}]}, bytes(16))
    with pytest.raises(tg.ArtifactError, match="tensor w: unknown quantization scheme 'int3'"):
        tg.dequantize_state_dict(tg.unpack_artifact(unknown)[0])


def test_artifact_from_another_config_is_an_error(tmp_path, artifact_blob):
    path = tmp_path / "final_model.int6.ptz"
    path.write_bytes(artifact_blob)
    other = tg.Hyperparameters.from_env({**SMALL, "NUM_LAYERS": "3", "MLP_MULT": "3"})
    with pytest.raises(tg.ArtifactError, match="NUM_LAYERS=2 .run has 3., MLP_MULT=4.0 .run has 3.0."):
        tg.load_artifact_into(tg.build_model(other, CPU.device), path, other)


def test_export_over_the_cap_fails_plainly(tiny_dataset, tmp_path, monkeypatch):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path))
    lines = []
    monkeypatch.setattr(tg, "ARTIFACT_CAP_BYTES", 10_000)  # the tiny model + this file are ~50 KB
    with pytest.raises(tg.ArtifactError, match="over the 10000-byte cap by"):
        tg.export_artifact(tg.build_model(hp, CPU.device), hp, CPU, lambda msg, **k: lines.append(msg))
    assert any(line.startswith("error: artifact is") for line in lines)


def test_export_reports_budget_and_writes_atomically(tiny_dataset, tmp_path, numeric_mode):
    hp = tg.Hyperparameters.from_env(tiny_env(tiny_dataset, tmp_path, CODE_PACKING="brotli"))
    lines = []
    path = tg.export_artifact(tg.build_model(hp, CPU.device), hp, cpu_runtime(numeric_mode),
                              lambda msg, **k: lines.append(msg))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["final_model.int6.ptz", "final_model.pt", "outputs.sha256", "train_gpt_packed.py"]  # no temps
    packed = (tmp_path / "train_gpt_packed.py").stat().st_size
    assert f"Code size: {packed} bytes" in lines  # the shipped form is the one counted
    raw = len(tg.Path(tg.__file__).read_bytes())
    assert f"Code size (uncompressed): {raw} bytes" in lines and packed < raw / 2
    total = path.stat().st_size + packed
    assert f"Total submission size int6+brotli: {total} bytes" in lines
    assert f"budget:total code:{packed} model:{path.stat().st_size} total:{total} cap:16000000 " \
           f"headroom:{16_000_000 - total}" in lines
    assert any(re.match(r"GPTQ:collected \d+ Hessians in \d+\.\ds", line) for line in lines)
    assert any(line.startswith("serialize_wallclock:") for line in lines)


def final_exact(text: str) -> str:
    return re.search(r"final_\w+_roundtrip_exact val_loss:\S+ val_bpb:\S+", text).group(0)


def test_fresh_process_and_packed_stub_reproduce_the_score(tiny_run, tmp_path, numeric_mode):
    """Train + export + score once; then (1) a new process that only loads the artifact, (2) the run's packed
    two-line code stub training again from a folder without the modules, and (3) the stub packed for an eval-only
    run (train_gpt_longrun.py inside: the run's own stub refuses EVAL_ONLY_PATH, see the test below) must print
    the identical exact line."""
    env, trained = tiny_run(numeric_mode)
    assert trained.returncode == 0, trained.stderr[-2000:]
    artifact = Path(env["ARTIFACT_DIR"]) / "final_model.int6.ptz"
    model_knobs = {name.upper() for name in tg.Hyperparameters().model_config()}
    eval_env = {**{k: v for k, v in env.items() if k not in model_knobs}, "EVAL_ONLY_PATH": str(artifact),
                "RUN_ID": "eval_only", "ARTIFACT_DIR": str(tmp_path)}  # no model knob: the header holds them
    assert {"NUM_LAYERS", "MODEL_DIM", "VOCAB_SIZE"}.isdisjoint(eval_env)
    fresh = run_script(eval_env)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert f"eval_only: {artifact} (model knobs from its header)" in fresh.stdout
    assert final_exact(fresh.stdout) == final_exact(trained.stdout)
    stub = artifact.parent / "train_gpt_packed.py"  # no module beside it
    assert stub.read_text().count("\n") == 2
    # a stub ships as it is: the machine that runs it needs no python_minifier and no packer (train_gpt_tools.py)
    no_minifier = without_package(tmp_path, "python_minifier") | without_package(tmp_path, "train_gpt_tools")
    packed = run_script({**env, "ARTIFACT_DIR": str(tmp_path / "packed"), **no_minifier}, script=stub)
    assert packed.returncode == 0, packed.stderr[-2000:]
    for pattern in (r"trained_weights_crc32:\w+", r"final_\w+_roundtrip_exact .*", r"Code size: \d+ bytes"):
        assert re.search(pattern, packed.stdout).group(0) == re.search(pattern, trained.stdout).group(0), pattern
    eval_stub = tmp_path / "alone" / "train_gpt_packed.py"
    eval_stub.parent.mkdir()
    eval_stub.write_bytes(tg.shipped_code(tg.Hyperparameters.from_env(eval_env), lambda line: None)[1])
    packed = run_script({**eval_env, "RUN_ID": "packed"}, script=eval_stub)
    assert packed.returncode == 0, packed.stderr[-2000:]
    assert final_exact(packed.stdout) == final_exact(trained.stdout)


def test_eval_only_takes_the_model_knobs_from_the_artifact_and_refuses_another_value(tmp_path):
    hp = tg.Hyperparameters.from_env(SMALL)
    path, newer = tmp_path / "final_model.int6.ptz", tmp_path / "newer.ptz"
    quantized = tg.quantize_state_dict(trained_like_model().state_dict(), hp)
    path.write_bytes(tg.pack_artifact(quantized, hp.model_config(), "zlib"))
    newer.write_bytes(tg.pack_artifact(quantized, {**hp.model_config(), "future_gate": True}, "zlib"))
    env = {"EVAL_ONLY_PATH": str(newer)}  # written by a later train_gpt.py: its weights compute another function
    with pytest.raises(tg.ArtifactError, match="newer.ptz has model knobs this train_gpt.py lacks: future_gate"):
        longrun.eval_only_hyperparameters(tg.Hyperparameters.from_env(env), env)
    env = {"EVAL_ONLY_PATH": str(path), "TTT_LORA_RANK": "4"}
    loaded = longrun.eval_only_hyperparameters(tg.Hyperparameters.from_env(env), env)
    assert loaded.model_config() == hp.model_config() and loaded.ttt_lora_rank == 4
    assert loaded.data_path.endswith("fineweb10B_sp512")  # derived from the artifact's vocabulary
    same = {**env, "MODEL_DIM": "128"}
    assert longrun.eval_only_hyperparameters(tg.Hyperparameters.from_env(same), same).model_dim == 128
    clash = {**env, "MODEL_DIM": "256"}
    with pytest.raises(tg.HyperparameterError, match="MODEL_DIM=256 .artifact: 128.: an eval-only run takes"):
        longrun.eval_only_hyperparameters(tg.Hyperparameters.from_env(clash), clash)


LONG_RUN_KNOBS = {"default": {}, "resume": {"RESUME_ENABLED": "1", "RESUME_SAVE_STEPS": "3"},
                  "exports": {"EXPORT_MINUTES": "10"}, "eval_only": {"EVAL_ONLY_PATH": "1"},
                  "tilt": {"NGRAM_TILT_ENABLED": "1"},
                  "sliding": {"SLIDING_WINDOW_ENABLED": "1"}, "int8": {"QUANT_METHOD": "int8"},
                  "swa": {"EMA_DECAY": "0", "SWA_ENABLED": "1"}, "self": {"GPTQ_CALIBRATION": "self"},
                  "repeats": {"NUM_LOOPS": "0", "NUM_REPEATS": "2"},
                  "value_embeds": {"NUM_LOOPS": "0", "NUM_VALUE_EMBEDS": "2"}}
USES = {"default": (), "resume": ("train_gpt_longrun",), "exports": ("train_gpt_longrun",),
        "eval_only": ("train_gpt_longrun",),
        "tilt": ("train_gpt_mixers",), "sliding": ("train_gpt_mixers",), "int8": ("train_gpt_reference",),
        "swa": ("train_gpt_reference",), "self": ("train_gpt_reference",), "repeats": ("train_gpt_reference",),
        "value_embeds": ("train_gpt_reference",)}


def test_the_default_recipe_code_stays_within_its_budget():
    """The default run counts train_gpt.py packed: at most 32,000 bytes (#1855 logs 31,999 for its own), and no
    function of the trainer or its modules runs over 60 lines."""
    here = Path(tg.__file__).parent
    assert len(tools.packed_code((here / "train_gpt.py").read_text())) <= 32_000
    for name in ("train_gpt", *tg.OPTIONAL_MODULES, "train_gpt_tools"):
        path = here / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name}"


def test_the_counted_code_holds_an_optional_module_only_when_a_run_uses_it(monkeypatch):
    """A default run counts and ships train_gpt.py alone; RESUME_*, EXPORT_MINUTES or EVAL_ONLY_PATH import
    train_gpt_longrun.py, the sliding window, Hedge or the tilt train_gpt_mixers.py, the int8 or GPTQ-lite export,
    SWA, self-generated calibration, #895's recurrence or value embeddings train_gpt_reference.py, whose bytes then
    count too, raw (CODE_PACKING=raw) and packed (about the module's own packed size more)."""
    minify, memo = tools.minified, {}

    def minified_once(source: str, exported: set | None = None) -> str:  # 30 packings of 7 sources: 1 s each
        key = (source, exported if exported is None else frozenset(exported))
        if key not in memo:
            memo[key] = minify(source, exported)
        return memo[key]

    monkeypatch.setattr(tools, "minified", minified_once)
    here = Path(tg.__file__).parent
    raw = {name: len((here / f"{name}.py").read_bytes()) for name in ("train_gpt", *tg.OPTIONAL_MODULES)}
    counted = {}
    for name, env in LONG_RUN_KNOBS.items():
        lines = []
        counted[name], packed = tg.shipped_code(tg.Hyperparameters.from_env(env), lines.append)
        assert f"Code size (uncompressed): {raw['train_gpt'] + sum(raw[m] for m in USES[name])} bytes" in lines
        assert f"Code size (compressed): {counted[name]} bytes" in lines and len(packed) == counted[name]
        raw_form = tg.shipped_code(tg.Hyperparameters.from_env({**env, "CODE_PACKING": "raw"}), lambda line: None)
        assert raw_form == (raw["train_gpt"] + sum(raw[m] for m in USES[name]), None)
        for module in USES[name]:
            module_packed = len(tools.packed_code((here / f"{module}.py").read_text()))
            assert 0.5 * module_packed < counted[name] - counted["default"] < 1.1 * module_packed
    assert counted["resume"] == counted["exports"] == counted["eval_only"] and counted["tilt"] == counted["sliding"]
    assert counted["int8"] == counted["swa"] == counted["self"] == counted["repeats"] == counted["value_embeds"]


def test_a_packed_stub_with_the_optional_modules_trains_saves_and_scores_as_the_source(tiny_dataset, tmp_path):
    """The stub of a run that saves checkpoints, averages weights by SWA, calibrates GPTQ on its own samples and
    scores tilted sliding windows carries train_gpt_longrun.py, train_gpt_reference.py and train_gpt_mixers.py: run
    from a folder without them, it trains, saves and scores exactly as the source did. A stub without the modules
    refuses such a run in one line."""
    env = tiny_env(tiny_dataset, tmp_path / "source", RESUME_ENABLED=1, RESUME_SAVE_STEPS=3, GPTQ_CALIBRATION="self",
                   SWA_ENABLED=1, SWA_START_FRAC=2, SWA_EVERY=2,  # steps 2, 4 and 6 (the LR multiplier stays 1)
                   SLIDING_WINDOW_ENABLED=1, NGRAM_TILT_ENABLED=1, NGRAM_TILT_ORDER=3, EVAL_STRIDE=16,
                   CODE_PACKING="brotli")
    source = run_script(env)
    assert source.returncode == 0, source.stderr[-2000:]
    assert "swa:start step:2" in source.stdout and "swa: averaging 4 checkpoints" in source.stdout
    stub = tmp_path / "alone" / "train_gpt_packed.py"  # no train_gpt_longrun.py beside it
    stub.parent.mkdir()
    shutil.copy(tmp_path / "source" / "train_gpt_packed.py", stub)
    assert stub.read_text().count("\n") == 2 and f"Code size: {stub.stat().st_size} bytes" in source.stdout
    # a stub ships as it is: the machine that runs it needs no python_minifier and no packer (train_gpt_tools.py)
    no_minifier = without_package(tmp_path, "python_minifier") | without_package(tmp_path, "train_gpt_tools")
    packed = run_script({**env, "ARTIFACT_DIR": str(tmp_path / "packed"), **no_minifier}, script=stub)
    assert packed.returncode == 0, packed.stderr[-2000:]
    for pattern in (r"trained_weights_crc32:\w+", r"resume:saved step:3 ", r"swa: averaging \d+",
                    r"final_\w+_roundtrip_exact .*", r"quantized_sliding_window_tilt_exact .*",
                    r"Code size: \d+ bytes"):  # the stub counts itself: the same bytes
        assert re.search(pattern, packed.stdout).group(0) == re.search(pattern, source.stdout).group(0), pattern
    stub.write_text(tools.packed_code((Path(tg.__file__).parent / "train_gpt.py").read_text()))
    one_line_error(run_script({**env, "ARTIFACT_DIR": str(tmp_path / "without")}, script=stub),
                   "RESUME_*, EXPORT_MINUTES and EVAL_ONLY_PATH need train_gpt_longrun.py beside this file")
    # the file beside it cannot import the names this stub shortened: the same line
    shutil.copy(Path(tg.__file__).parent / "train_gpt_longrun.py", stub.parent)
    one_line_error(run_script({**env, "ARTIFACT_DIR": str(tmp_path / "renamed")}, script=stub),
                   "need train_gpt_longrun.py beside this file (or a stub packed with them)")


def test_a_source_without_its_packer_refuses_at_startup_unless_it_ships_raw(tiny_dataset, tmp_path):
    """The packer (train_gpt_tools.py) is a build tool: never in a stub, needed by a source run that packs (and by
    --help, which reads the source's comments: a stub's --help is one line too, the tools beside it or not)."""
    here, lone = Path(tg.__file__).parent, tmp_path / "lone" / "train_gpt.py"
    lone.parent.mkdir()
    shutil.copy(here / "train_gpt.py", lone)
    env = tiny_env(tiny_dataset, tmp_path / "run", ITERATIONS=2, CODE_PACKING="brotli")
    why = "--help and packing need train_gpt_tools.py beside the source train_gpt.py (not a stub), or CODE_PACKING=raw"
    refused = run_script(env, script=lone)
    one_line_error(refused, why)
    assert "step:" not in refused.stdout
    one_line_error(run_script(env, args=["--help"], script=lone), why)
    stub = tmp_path / "stub" / "train_gpt.py"
    stub.parent.mkdir()
    stub.write_text(tools.packed_code((here / "train_gpt.py").read_text()))
    shutil.copy(here / "train_gpt_tools.py", stub.parent)
    one_line_error(run_script(env, args=["--help"], script=stub), why)
    raw = run_script({**env, "CODE_PACKING": "raw"}, script=lone)
    assert raw.returncode == 0, raw.stderr[-2000:]
    assert f"Code size: {lone.stat().st_size} bytes" in raw.stdout


def test_budget_reader_breaks_an_artifact_down_by_group(tmp_path, capsys):
    """scripts/budget.py: every parameter in exactly one group, bytes near the file's, one line for a bad file."""
    import budget

    model, hp = trained_like_model(), tg.Hyperparameters.from_env(SMALL)
    quantized = tg.quantize_state_dict(model.state_dict(), hp)
    path = tmp_path / "final_model.int6.ptz"
    path.write_bytes(tg.pack_artifact(quantized, hp.model_config(), "brotli", tg.rans_groups(quantized, True)))
    assert budget.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    groups = [dict(kv.split(":", 1) for kv in line.split()[1:]) for line in lines if line.startswith("budget:")
              and not line.startswith("budget:matrices")]
    assert sum(int(g["params"]) for g in groups) == sum(t.numel() for t in model.state_dict().values())
    assert 0.9 < sum(int(g["bytes"]) for g in groups) / path.stat().st_size < 1.2
    assert lines[-1].startswith("budget:matrices params:")
    (tmp_path / "junk.ptz").write_bytes(b"not an artifact")
    assert budget.main([str(tmp_path / "junk.ptz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_pack_code_writes_the_stub_a_run_of_the_same_knobs_counts(tmp_path, monkeypatch, capsys):
    import pack_code

    monkeypatch.setenv("NGRAM_TILT_ENABLED", "1")
    out = tmp_path / "train_gpt_packed.py"
    assert pack_code.main([str(out)]) == 0
    counted, stub = tg.shipped_code(tg.Hyperparameters.from_env(), lambda line: None)
    assert out.read_bytes() == stub
    assert f"wrote {out}: {counted} bytes (train_gpt.py + train_gpt_mixers.py)" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # a mistyped option is refused, not taken for the output file's name
    assert pack_code.main(["--out"]) == 2
    assert "unknown option --out" in capsys.readouterr().err and sorted(tmp_path.iterdir()) == [out]


def test_compare_exports_scores_every_method_and_refuses_bad_input_in_one_line(tiny_run, tmp_path, capsys):
    """scripts/compare_exports.py on a run's final_model.pt: a row per export method; bad input is one line."""
    import compare_exports

    env, trained = tiny_run("off")
    assert trained.returncode == 0, trained.stderr[-2000:]
    recipe = tmp_path / "tiny.env"
    recipe.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k != "AUTOCAST"))
    checkpoint = str(Path(env["ARTIFACT_DIR"]) / "final_model.pt")
    assert compare_exports.main([str(recipe), checkpoint, "GPTQ_CALIBRATION_BATCHES=2"]) == 0
    rows = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows == ["export"] + [label for label, _ in compare_exports.METHODS]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"w": torch.zeros(2)}, tmp_path / "foreign.pt")
    for args, why in ([[str(recipe)], "no CHECKPOINT.pt given"],
                      [[str(tmp_path / "nope.env"), checkpoint], "no such file"],
                      [[str(recipe), "MODEL_DIM=x", checkpoint], "MODEL_DIM='x' is not a valid int"],
                      [[str(recipe), str(tmp_path / "missing.pt")], "missing.pt: No such file"],
                      [[str(recipe), str(tmp_path / "junk.pt")], "junk.pt: not a final_model.pt"],
                      [[str(recipe), checkpoint, str(tmp_path / "foreign.pt")], "foreign.pt: not a final_model.pt"],
                      [[str(recipe), "MODEL_DIM=64", checkpoint], "final_model.pt: not a final_model.pt"]):
        assert compare_exports.main(args) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and why in captured.err, (args, captured)
