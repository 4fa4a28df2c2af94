"""scripts/record_env.py, the launcher of the records' published commands: each of the records' own variable
names (RECORD_ENV) is renamed to our knob, accepted with a note, or refused in one line; the command then runs
with the translated environment, in which train_gpt.py never sees the records' names."""

import importlib.util
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

import train_gpt as tg

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "record_env.py"
spec = importlib.util.spec_from_file_location("record_env", SCRIPT)
record_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_env)
DEFAULT = tg.Hyperparameters.from_env({})


def launched(environ: dict) -> tg.Hyperparameters:
    """What train_gpt.py reads when the launcher runs it: the translated environment."""
    env, _ = record_env.translate(environ)
    return tg.Hyperparameters.from_env(env)


def notes(environ: dict) -> list[str]:
    return record_env.translate(environ)[1]


# --- one mutation-sensitive check per category --------------------------------------------------------------
@pytest.mark.parametrize("env, changed", [
    ({"SMEAR_GATE": "0"}, {"smear_gate_enabled": False}),
    ({"GATE_WIDTH": "8"}, {"gate_window": 8}),
    ({"SMEAR_GATE_WIDTH": "16"}, {"gate_window": 16}),
    ({"GATE_ATTN_OUT": "1", "SPARSE_ATTN_GATE_ENABLED": "0"},
     {"attn_out_gate_enabled": True, "sparse_attn_gate_enabled": False}),
    ({"GATE_ATTN_SRC": "q"}, {"attn_out_gate_src": "q"}),
    ({"VAL_BATCH_TOKENS": "131072"}, {"val_batch_size": 131072}),
    ({"DISABLE_COMPILE": "1"}, {"compile": "0"}),
    ({"DISABLE_COMPILE": "0"}, {}),
    ({"QUANT_LEVELS": "127"}, {"matrix_bits": 8, "embed_bits": 8}),
    ({"FORCE_FA2": "1"}, {"attn_backend": "sdpa"}),
    ({"LOAD_QUANTIZED_MODEL_PATH": "x"}, {"eval_only_path": "x"}),
    ({"TTT_EVAL_OUTPUT_JSON": "y"}, {"eval_summary_json": "y"}),
    ({"TOKEN_ORDER": "8", "TOKEN_THRESHOLD": "0.5", "TOKEN_BOOST": "1.5"},
     {"ngram_tilt_order": 8, "ngram_tilt_threshold": 0.5, "ngram_tilt_beta": 1.5}),
    ({"TTT_MASK": "no_qv"}, {"ttt_q_lora": False, "ttt_v_lora": False}),
    ({"TTT_MASK": "NO_V"}, {"ttt_v_lora": False}),
    ({"TTT_MASK": "no_q", "TTT_Q_LORA": "1"}, {}),  # #2014: the mask sets defaults; a given TTT_Q_LORA wins
    ({"TTT_MASK": "all"}, {}),
    ({"TTT_LOCAL_LR_MULT": "0.5"}, {"ttt_lora_lr": 5e-5}),  # #2014: lr = TTT_LORA_LR * TTT_LOCAL_LR_MULT
    ({"TTT_LOCAL_LR_MULT": "0.75", "TTT_LORA_LR": "0.0002"}, {"ttt_lora_lr": 0.0002 * 0.75}),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_SCORE_FIRST_STEPS": "2000:24, 256=8"},
     {"ttt_short_doc_chunks": "24@2000,8@256"}),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_DOC_LEN": "300", "TTT_SHORT_CHUNK_SIZE": "16"},
     {"ttt_short_doc_chunks": "16@300"}),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_CHUNK_SIZE": "32"},  # its defaults: TTT_CHUNK_SIZE up to 512
     {"ttt_short_doc_chunks": "32@512", "ttt_chunk_size": 32}),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "0", "TTT_SHORT_SCORE_FIRST_STEPS": "256:8"}, {}),
])
def test_renamed_variable_sets_our_knob(env, changed):
    hp, default = asdict(launched(env)), asdict(DEFAULT)
    assert {k: v for k, v in hp.items() if v != default[k]} == changed


@pytest.mark.parametrize("env, message", [
    ({"SMEAR_GATE": "1", "SMEAR_GATE_ENABLED": "0"},
     "SMEAR_GATE=1 means SMEAR_GATE_ENABLED=1 here, but SMEAR_GATE_ENABLED=0 is also given: set one"),
    ({"GATE_WIDTH": "8", "SMEAR_GATE_WIDTH": "12"}, "GATE_WINDOW=12 here, but GATE_WIDTH=8 is also given"),
    ({"COMPRESSOR": "pergroup", "RANS_CODING": "0"}, "COMPRESSOR=pergroup means RANS_CODING=1 here"),
    ({"DISABLE_COMPILE": "1", "COMPILE": "1"}, "DISABLE_COMPILE=1 means COMPILE=0 here, but COMPILE=1"),
    ({"SMEAR_GATE": "maybe"}, "SMEAR_GATE='maybe' is not a valid bool"),
    ({"QUANT_LEVELS": "100"}, "QUANT_LEVELS=100: no equivalent here"),
    ({"LOAD_QUANTIZED_MODEL_PATH": "x", "EVAL_ONLY_PATH": "y"},
     "LOAD_QUANTIZED_MODEL_PATH=x means EVAL_ONLY_PATH=x here, but EVAL_ONLY_PATH=y is also given: set one"),
    ({"TTT_MASK": "no_k"}, "TTT_MASK=no_k: expected one of all, no_q, no_v, no_qv"),
    ({"TTT_LOCAL_LR_MULT": "-1"}, "TTT_LOCAL_LR_MULT=-1: expected a number >= 0"),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_SCORE_FIRST_STEPS": "256"},
     "TTT_SHORT_SCORE_FIRST_STEPS='256': expected 'doclen:chunk,...'"),
    ({"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_DOC_CHUNKS": "8@100"},
     "TTT_SHORT_SCORE_FIRST_ENABLED=1 means TTT_SHORT_DOC_CHUNKS=48@512 here, but TTT_SHORT_DOC_CHUNKS=8@100"),
])
def test_conflicting_or_bad_record_spellings_fail(env, message):
    with pytest.raises(tg.HyperparameterError, match=message.replace("(", r"\(")):
        launched(env)


def test_both_spellings_with_the_same_value_are_fine():
    hp = launched({"SMEAR_GATE": "0", "SMEAR_GATE_ENABLED": "false", "GATE_WIDTH": "12",
                                      "SMEAR_GATE_WIDTH": "12", "GATE_WINDOW": "12"})
    assert (hp.smear_gate_enabled, hp.gate_window) == (False, 12)


def test_same_math_variables_are_accepted_with_a_note():
    hp = launched({"FUSED_CE_ENABLED": "1", "COMPRESSOR": "pergroup"})
    assert dict(asdict(hp), compressor="brotli") == asdict(DEFAULT)
    lines = notes({"FUSED_CE_ENABLED": "1", "COMPRESSOR": "pergroup"})
    assert any(line.startswith("FUSED_CE_ENABLED=1") and "same loss" in line for line in lines)
    assert any(line.startswith("COMPRESSOR=pergroup") and "rANS" in line for line in lines)
    assert notes({"FUSED_CE_ENABLED": "0", "COMPRESSOR": "lzma"}) == []
    assert notes({"SLIDING_EVAL": "1"})[0].startswith("SLIDING_EVAL=1 (#2008): ")
    assert launched({"ASYM_LOGIT_RESCALE": "1"}) == DEFAULT  # the records' caps never train: the scalar cap
    assert "never get a gradient" in notes({"ASYM_LOGIT_RESCALE": "1"})[0]
    quiet = {"SLIDING_EVAL": "0", "TTT_OUTPUT_DIR": "/x", "TTT_VARIANT_ID": "v1"}  # its outputs go to our log
    assert launched(quiet) == DEFAULT
    assert notes(quiet) == []


def test_2008_eval_only_sweep_scores_the_named_artifact():
    """#2008's sweep: TTT_EVAL_ONLY=1 with the artifact in LOAD_QUANTIZED_MODEL_PATH, results to a JSON."""
    hp = launched({"TTT_EVAL_ONLY": "1", "LOAD_QUANTIZED_MODEL_PATH": "x",
                                      "TTT_EVAL_OUTPUT_JSON": "y"})
    assert (hp.eval_only_path, hp.eval_summary_json, hp.ttt_enabled) == ("x", "y", True)
    assert launched({"TTT_EVAL_ONLY": "1", "EVAL_ONLY_PATH": "1"}).eval_only_path == "1"


def test_2008_long_run_exports_map_onto_export_minutes():
    hp = launched({"NON_RECORD_LONGTRAIN": "1", "LONGTRAIN_EXPORT_MINUTES": "60,120",
                                      "EXPORT_MODE": "full"})
    assert (hp.export_minutes, hp.export_eval) == ("60,120", True)
    assert launched({"EXPORT_MODE": "light"}).export_eval is False


@pytest.mark.parametrize("env", [
    {"TTT_EVAL_ONLY": "0", "PREQUANT_ONLY": "0"},
    {"OUTPUT_DIR": "/x", "SLIDING_EVAL_OUTPUT_JSON": "a.json", "PREQUANT_EVAL_OUTPUT_JSON": "b.json"},
    {"TTT_STEPS": "0", "TTT_LR": "0.01", "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES": "1", "TTT_DEBUG_BYPASS": "0"},
    {"RESUME_DECOMPOSE_ONLY": "0", "NON_RECORD_LONGTRAIN": "0"},
    {"ROPE_YARN": "0", "GATE_MLP_OUT": "0", "EMBEDDING_DIM": "512"},
    # #2014 and #2135: their published values that ask for nothing we lack
    {"EVAL_INCLUDE_TAIL": "1", "TRAIN_SEQ_SCHEDULE_MODE": "wallclock", "SEQ_CHANGE_WARMUP_STEPS": "0",
     "AWQ_LITE_ENABLED": "0", "AWQ_LITE_BITS": "8", "LQER_SCOPE": "all", "TTT_SHORT_LORA_ENABLED": "0"},
    {"SMEAR_GATE_BOS_FIX": "1", "WITHIN_TAU": "99.0", "WITHIN_BOOST": "0.0", "WORD_TAU": "99.0", "WORD_BOOST": "0.0",
     "AGREE_ADD_BOOST": "0.0", "TTT_LORA_EMA_DECAY": "0.0", "TTT_UPDATE_EVERY": "1",
     "NGRAM_HINT_PRECOMPUTE_OUTSIDE": "1",
     "GLOBAL_TTT_OPTIMIZER": "sgd", "TTT_GRAD_STEPS_CLEAN": "0", "QK_GAIN_INIT_SCHEDULE": ""},
    {"TRAIN_SEQ_SCHEDULE_MODE": "step"},  # without TRAIN_SEQ_SCHEDULE there is no schedule to follow
])
def test_off_values_of_features_we_lack_are_accepted_silently(env):
    assert launched(env) == DEFAULT and notes(env) == []


def test_2135_leak_and_illegal_channels_are_refused_only_where_they_would_act():
    env = {"SMEAR_GATE_BOS_FIX": "0", "SMEAR_GATE_ENABLED": "0", "WITHIN_TAU": "0.45"}  # no SmearGate, no tilt
    assert launched(env) == tg.Hyperparameters.from_env({"SMEAR_GATE_ENABLED": "0"}) and notes(env) == []


@pytest.mark.parametrize("env, message", [
    ({"TTT_STEPS": "1"}, "TTT_STEPS=1: no equivalent here; it trained on each batch before scoring it"),
    ({"GLOBAL_TTT_RESPECT_DOC_BOUNDARIES": "0"}, "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES=0: no equivalent here; global "
                                                 "SGD cuts attention at documents"),
    ({"TTT_EVAL_ONLY": "1"}, "TTT_EVAL_ONLY=1: no equivalent here; name the artifact to score with EVAL_ONLY_PATH"),
    ({"TTT_DEBUG_BYPASS": "1"}, "TTT_DEBUG_BYPASS=1: no equivalent here; no debug bypass of TTT"),
    ({"PREQUANT_ONLY": "1"}, "PREQUANT_ONLY=1: no equivalent here; every run logs the average's score before "
                             "quantization"),
    ({"RESUME_DECOMPOSE_ONLY": "1"}, "RESUME_DECOMPOSE_ONLY=1: no equivalent here; resume its checkpoint with "
                                     "RESUME_FROM and ITERATIONS=<the checkpoint's step>"),
    ({"TTT_STEPS": "1", "PREQUANT_ONLY": "1"}, "TTT_STEPS=1: no equivalent here; it trained on each batch before "
                                               "scoring it (not score-first); TTT_ENABLED is score-first LoRA TTT; "
                                               "PREQUANT_ONLY=1: no equivalent here"),
    ({"NON_RECORD_LONGTRAIN": "1"}, "NON_RECORD_LONGTRAIN=1: no equivalent here; periodic exports happen at "
                                    "EXPORT_MINUTES"),
    ({"ROPE_YARN": "1"}, "ROPE_YARN=1: no equivalent here; no YaRN"),
    ({"CONTROL_TENSOR_NAME_PATTERNS": "attn_scale"}, "CONTROL_TENSOR_NAME_PATTERNS=attn_scale: no equivalent here"),
    ({"EMBEDDING_DIM": "256"}, "EMBEDDING_DIM=256: no equivalent here; no factorised embedding"),
    ({"EVAL_ONLY_PATH": "final_model.pt"}, "EVAL_ONLY_PATH=final_model.pt: no equivalent here"),
    ({"SMEAR_GATE_BOS_FIX": "0"}, "SMEAR_GATE_BOS_FIX=0: no equivalent here; SmearGate here always masks BOS"),
    ({"WORD_TAU": "0.65", "NGRAM_TILT_ENABLED": "1"},
     "WORD_TAU=0.65: no equivalent here; its within-word and word-start hint channels read the scored token's word"),
    ({"WITHIN_TAU": "1", "NGRAM_TILT_ENABLED": "1"}, "WITHIN_TAU=1: no equivalent here"),  # fires at share 1
    ({"AWQ_LITE_ENABLED": "1"}, "AWQ_LITE_ENABLED=1: no equivalent here; no AWQ-lite"),
    ({"SEQ_CHANGE_WARMUP_STEPS": "32"}, "SEQ_CHANGE_WARMUP_STEPS=32: no equivalent here; no learning-rate re-warm-up"),
    ({"EVAL_INCLUDE_TAIL": "0"}, "EVAL_INCLUDE_TAIL=0: no equivalent here; every target is scored here"),
    ({"TRAIN_SEQ_SCHEDULE_MODE": "step", "TRAIN_SEQ_SCHEDULE": "1024@0.5,2048@1"},
     "TRAIN_SEQ_SCHEDULE_MODE=step: no equivalent here; TRAIN_SEQ_SCHEDULE follows the training clock"),
    ({"TTT_GRAD_STEPS_CLEAN": "0", "TTT_GRAD_STEPS": "2"}, ("TTT_GRAD_STEPS_CLEAN=0: no equivalent here; each of "
                                                            "TTT_GRAD_STEPS steps sees only its own gradient")),
    ({"LQER_SCOPE": "mlp"}, "LQER_SCOPE=mlp: no equivalent here"),
    ({"TTT_LORA_EMA_DECAY": "0.9"}, "TTT_LORA_EMA_DECAY=0.9: no equivalent here; no average of the adapters"),
    ({"TTT_UPDATE_EVERY": "2"}, "TTT_UPDATE_EVERY=2: no equivalent here"),
    ({"QK_GAIN_INIT_SCHEDULE": "5,5.25"}, "QK_GAIN_INIT_SCHEDULE=5,5.25: no equivalent here"),
])
def test_features_we_lack_are_refused_naming_them(env, message):
    with pytest.raises(tg.HyperparameterError) as err:
        launched(env)
    assert str(err.value).startswith(message)


def score_first_chunk_2014(max_doc_len: int, env: dict) -> int:
    """#2014's _score_first_chunk_for_doc restated (its max_doc_len counts the BOS)."""
    chunk = int(env.get("TTT_CHUNK_SIZE", 48))
    if env.get("TTT_SHORT_SCORE_FIRST_ENABLED", "0") != "1":
        return chunk
    steps = sorted((int(a), int(b)) for a, b in (item.split(":") for item in env.get(
        "TTT_SHORT_SCORE_FIRST_STEPS", "").split(",") if item))
    if steps:
        return next((c for limit, c in steps if max_doc_len <= limit), chunk)
    short = int(env.get("TTT_SHORT_CHUNK_SIZE", chunk))
    return short if max_doc_len <= int(env.get("TTT_SHORT_DOC_LEN", 512)) and short > 0 else chunk


@pytest.mark.parametrize("env", [
    {"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_SCORE_FIRST_STEPS": "256:8,2000:24"},  # #2014's command
    {"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_DOC_LEN": "2000", "TTT_SHORT_CHUNK_SIZE": "24"},
    {"TTT_SHORT_SCORE_FIRST_ENABLED": "1", "TTT_SHORT_CHUNK_SIZE": "0"},
    {"TTT_SHORT_SCORE_FIRST_ENABLED": "0", "TTT_SHORT_SCORE_FIRST_STEPS": "256:8"},
])
def test_2014_short_document_chunks_are_its_chunks_at_every_length(env):
    hp = launched(env)
    for length in [2, 3, 100, 255, 256, 257, 511, 512, 513, 1999, 2000, 2001, 5000]:  # tokens with the BOS
        assert tg.chunk_size_of([(0, length - 1)], hp) == score_first_chunk_2014(length, env), length


def test_typos_still_get_did_you_mean_and_process_variables_are_ignored():
    for typo, meant in [("TTT_ENABLE", "TTT_ENABLED"), ("SMEAR_GATES", "SMEAR_GATE"), ("DATA_DIRS", "DATA_DIR")]:
        with pytest.raises(tg.HyperparameterError, match=f"{typo} is not a knob of train_gpt.py; did you mean {meant}"):
            launched({typo: "1"})
    process = {"NCCL_NET": "Socket", "NCCL_IB_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "0", "TORCH_LOGS": "+dynamo",
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": "/tmp/x"}
    assert launched(process) == DEFAULT


def test_records_doc_names_every_record_variable():
    readme = (REPO / "docs" / "records.md").read_text()
    section = readme.split("## Running a record's own command", 1)[1].split("\n## ", 1)[0]
    families = [w.strip("`,") for w in section.split() if w.strip("`,").endswith("_*")]  # TTT_*, RESUME_*
    for name in record_env.RECORD_ENV:
        named = f"`{name}`" in section or f"`{name}=" in section
        assert named or any(name.startswith(f[:-1]) for f in families), name


def test_the_command_sees_our_knobs_and_not_the_records_names():
    env, _ = record_env.translate({"SMEAR_GATE": "0", "COMPRESSOR": "pergroup", "TTT_OUTPUT_DIR": "/x",
                                   "EVAL_ONLY_PATH": "a.ptz", "PATH": "/bin"})
    assert env == {"SMEAR_GATE_ENABLED": "0", "COMPRESSOR": "brotli", "RANS_CODING": "1", "EVAL_ONLY_PATH": "a.ptz",
                   "PATH": "/bin"}


def test_a_records_name_given_to_train_gpt_directly_is_refused_naming_the_launcher():
    for name in ("SMEAR_GATE", "GATE_ATTN_OUT", "VAL_BATCH_TOKENS", "TTT_EVAL_ONLY"):
        with pytest.raises(tg.HyperparameterError, match=f"{name} is not a knob of train_gpt.py; a record's name"):
            tg.Hyperparameters.from_env({name: "0"})


def run_launcher(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, **env}, timeout=120, check=False)


def test_cli_runs_the_command_with_the_translated_env_and_prints_the_notes(tmp_path):
    show = "import os; e = os.environ; print(e['SMEAR_GATE_ENABLED'], 'SMEAR_GATE' in e, 'FUSED_CE_ENABLED' in e)"
    result = run_launcher(["--", sys.executable, "-c", show], tmp_path, SMEAR_GATE="0", FUSED_CE_ENABLED="1")
    assert (result.returncode, result.stdout) == (0, "0 False False\n"), result.stderr
    assert result.stderr == ("record_env: SMEAR_GATE=0 is #1667/#1775's name: SMEAR_GATE_ENABLED=0\n"
                             "record_env: FUSED_CE_ENABLED=1 (#1855/#2008): its Triton fused softcapped cross-entropy "
                             "is a speed kernel; we compute the same loss eagerly\n")


def test_cli_prints_the_refusal_and_exits_2_without_running_the_command(tmp_path):
    result = run_launcher([sys.executable, "-c", "open('ran', 'w')"], tmp_path, PREQUANT_ONLY="1")
    assert result.returncode == 2 and result.stdout == "" and not (tmp_path / "ran").exists()
    assert result.stderr == ("error: PREQUANT_ONLY=1: no equivalent here; every run logs the average's score "
                             "before quantization ('diagnostic pre-quantization'); of a saved run, resume "
                             "its checkpoint with RESUME_FROM and ITERATIONS=<the checkpoint's step>: the "
                             "log scores the live weights, the average, the quantized artifact and every "
                             "eval stage\n")


def test_cli_help_and_bad_usage_in_one_line(tmp_path):
    result = run_launcher(["--help"], tmp_path)
    assert result.returncode == 0 and "python scripts/record_env.py [--] COMMAND..." in result.stdout
    for args, message in [([], "error: no command to run"), (["--"], "error: no command to run"),
                          (["no-such-command-h1"], "error: cannot run no-such-command-h1: ")]:
        result = run_launcher(args, tmp_path)
        assert result.returncode == 2 and result.stderr.startswith(message), (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
