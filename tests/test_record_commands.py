"""The records' own run commands, on top of our recipe for each system: every variable the records' scripts
read either means the same thing here (same model: parameter count and layer plan of the record's log) or
stops the run at startup with one line naming what we do instead. The commands run through the launcher,
scripts/record_env.py, which translates the records' own names (RECORD_ENV) before train_gpt.py reads the env."""

import importlib.util
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import train_gpt as tg
from records.tool import read_env_file

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "records" / "recipes"
spec = importlib.util.spec_from_file_location("record_env", REPO / "scripts" / "record_env.py")
record_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_env)


def recipe(name: str) -> dict:
    return read_env_file(RECIPES / name)


def words(spec: str) -> dict:
    """'A=1 B=x' -> {'A': '1', 'B': 'x'}, as a shell passes it."""
    return dict(item.split("=", 1) for item in spec.split())


# The README commands, exactly as published (placeholders such as <seed> filled with the first value used).
# records/track_10min_16mb/2026-03-17_NaiveBaseline/README.md
BASELINE = words("NCCL_IB_DISABLE=1 RUN_ID=hf_verify_sp1024_8gpu "
                 "DATA_PATH=/root/code/parameter-golf/data/datasets/fineweb10B_sp1024 "
                 "TOKENIZER_PATH=/root/code/parameter-golf/data/tokenizers/fineweb_1024_bpe.model "
                 "VOCAB_SIZE=1024 MAX_WALLCLOCK_SECONDS=600 TRAIN_LOG_EVERY=50 VAL_LOSS_EVERY=200")
# records/track_10min_16mb/2026-03-19_TrainingOptSeq4096/README.md
SEQ4096 = words("RUN_ID=training_opt_seq4096_v1 DATA_PATH=./data/datasets/fineweb10B_sp1024 "
                "TOKENIZER_PATH=./data/tokenizers/fineweb_1024_bpe.model VOCAB_SIZE=1024 MAX_WALLCLOCK_SECONDS=600")
# #895 10-minute variant: its script's defaults are that run (the PR's README shows only the 4-hour command)
PR895 = {}
# records/track_non_record_16mb/2026-03-26_ProgressiveDepth_4hour/README.md (PR #895)
PR895_4H = words("MAX_WALLCLOCK_SECONDS=14400 ITERATIONS=200000 NUM_REPEATS=5 PROG_DEPTH=0.3:2,0.5:3,0.75:4,1.0:5 "
                 "WARMDOWN_ITERS=15000 SWA_EVERY=100 MATRIX_LR=0.015 SCALAR_LR=0.015 TIED_EMBED_LR=0.018 "
                 "VAL_LOSS_EVERY=5000 TRAIN_LOG_EVERY=1000 USE_HEDGE=1")
# records/track_10min_16mb/2026-04-14_MultiPhaseGlobalSGD_PhasedTTT/README.md (seed 42 of the loop)
PR1626 = words("NCCL_NET=Socket SEED=42 PHASED_TTT_ENABLED=1 PHASED_TTT_PREFIX_DOCS=2000 PHASED_TTT_NUM_PHASES=3 "
               "MLP_CLIP_SIGMAS=12.0 ATTN_CLIP_SIGMAS=13.0 EMBED_BITS=7 EMBED_CLIP_SIGMAS=15.0 MATRIX_LR=0.026 "
               "GPTQ_RESERVE_SECONDS=4 GPTQ_CALIBRATION_BATCHES=16")
# records/track_10min_16mb/2026-04-22_SP8192_NoGates_MPSGD_3phase_1.0729/README.md (PR #1775)
PR1775 = words("SEED=1337 TTT_ENABLED=1 PHASED_TTT_ENABLED=1 PHASED_TTT_NUM_PHASES=3 PHASED_TTT_PREFIX_DOCS=2000 "
               "GLOBAL_TTT_LR=0.001 GLOBAL_TTT_EPOCHS=1 SMEAR_GATE=0 GATE_ATTN_OUT=0 "
               "DATA_DIR=/workspace/track-a/data/ ARTIFACT_DIR=runs/pr1775 RUN_ID=pr1775_seed1337")
# records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/README.md (PR #1855)
PR1855 = words(
    "DATA_DIR=./data VOCAB_SIZE=8192 DATA_PATH=./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved "
    "TOKENIZER_PATH=./data/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model CASEOPS_ENABLED=1 "
    "ITERATIONS=20000 MAX_WALLCLOCK_SECONDS=600 PHASED_TTT_ENABLED=1 PHASED_TTT_PREFIX_DOCS=2500 "
    "PHASED_TTT_NUM_PHASES=3 EMBED_BITS=7 MATRIX_LR=0.026 MIN_LR=0.1 MLP_CLIP_SIGMAS=11.5 ATTN_CLIP_SIGMAS=13.0 "
    "EMBED_CLIP_SIGMAS=14.0 GRAD_CLIP_NORM=0.3 TTT_CHUNK_SIZE=48 WARMUP_STEPS=20 MUON_BACKEND_STEPS=5 "
    "GLOBAL_TTT_MOMENTUM=0.9 WARMDOWN_FRAC=0.85 BETA2=0.99 TTT_BETA2=0.99 TTT_WEIGHT_DECAY=0.5 TTT_LORA_RANK=80 "
    "SPARSE_ATTN_GATE_SCALE=0.5 GPTQ_RESERVE_SECONDS=0.5 GPTQ_CALIBRATION_BATCHES=16 VAL_LOSS_EVERY=0 "
    "GATED_ATTN_QUANT_GATE=1 SPARSE_ATTN_GATE_ENABLED=1 GATE_WINDOW=12 SMEAR_GATE_ENABLED=1 LQER_ENABLED=1 "
    "LQER_ASYM_ENABLED=1 LQER_RANK=4 LQER_FACTOR_BITS=4 LQER_ASYM_GROUP=64 LQER_TOP_K=3 FUSED_CE_ENABLED=1 "
    "COMPRESSOR=pergroup NCCL_NET=Socket SEED=42")
# records/track_10min_16mb/2026-04-29_PerGroupLRZIP_ComplianceFix_1.06003/README.md: the #1950 recipe, which
# #2008 (records/track_non_record_16mb/2026-04-30_PR1950_LongTrainArtifactScaling) trains unchanged
PR1950 = words("SEED=42 CASEOPS_ENABLED=1 PHASED_TTT_PREFIX_DOCS=2000 PHASED_TTT_NUM_PHASES=3 MATRIX_CLIP_SIGMAS=12.85 "
               "ATTN_CLIP_SIGMAS=12.0 MLP_CLIP_SIGMAS=12.0 EMBED_BITS=7 EMBED_CLIP_SIGMAS=12.0 MATRIX_LR=0.026 "
               "MIN_LR=0.1 FUSED_CE_ENABLED=1 SPARSE_ATTN_GATE_ENABLED=1 SMEAR_GATE_ENABLED=1 GATE_WINDOW=12 "
               "LQER_ENABLED=1 LQER_RANK=4 LQER_TOP_K=3 LQER_FACTOR_BITS=4 LQER_ASYM_ENABLED=1 LQER_ASYM_GROUP=64 "
               "TTT_WARM_START_A=1 GPTQ_RESERVE_SECONDS=5.5 GPTQ_CALIBRATION_BATCHES=16 EMBED_WD=0.06 "
               "COMPRESSOR=pergroup NCCL_NET=Socket")

LOOPED = (0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10)  # #1626 lineage: layers 3-5 three times, 17 applications
# record: (recipe, command, model_params of its log, order, XSA applications, parallel applications)
RECORDS = {
    "baseline": ("baseline.env", BASELINE, 17_059_912, tuple(range(9)), (), ()),
    "seq4096": ("seq4096.env", SEQ4096, 17_059_912, tuple(range(9)), (), ()),
    # 10-minute: the 4-hour log's 17,150,040 less one repeat of loop embeddings, value scales and cross-repeat
    # scales (12 x 832); PR #1384, the same system, reports 17.14M
    "pr895": ("pr895.env", PR895, 17_140_056, (0, 1, 2) * 4, range(8, 12), ()),
    "pr895_4h": ("pr895_4h.env", PR895_4H, 17_150_040, (0, 1, 2) * 5, range(11, 15), ()),
    "pr1626": ("pr1626.env", PR1626, 35_944_602, LOOPED, range(17), range(14, 17)),
    "pr1775": ("pr1775.env", PR1775, 35_944_602, LOOPED, range(17), range(14, 17)),
    "pr1855": ("top.env", PR1855, 35_945_671, LOOPED, range(17), range(14, 17)),
    "pr1950": ("pr2008.env", PR1950, 35_945_671, LOOPED, range(17), range(14, 17)),
}
# the eval each command asks for, as our knobs read it
PHASED = {"ttt_enabled": True, "phased_ttt_enabled": True, "phased_ttt_num_phases": 3}
EVALS = {
    "pr895_4h": {"use_hedge": True},
    "pr1626": {**PHASED, "phased_ttt_prefix_docs": 2000},
    "pr1775": {**PHASED, "phased_ttt_prefix_docs": 2000, "global_ttt_lr": 0.001, "global_ttt_epochs": 1},
    "pr1855": {**PHASED, "phased_ttt_prefix_docs": 2500, "ttt_chunk_size": 48, "global_ttt_momentum": 0.9,
               "ttt_beta2": 0.99, "ttt_weight_decay": 0.5, "ttt_lora_rank": 80},
    "pr1950": {**PHASED, "phased_ttt_prefix_docs": 2000, "ttt_warm_start_a": True},
}


def command_env(record: str) -> dict:
    recipe_file, command, *_ = RECORDS[record]
    return {**recipe(recipe_file), **command}


def launched(environ: dict) -> tg.Hyperparameters:
    """What train_gpt.py reads when scripts/record_env.py runs it: the translated environment."""
    env, _ = record_env.translate(environ)
    return tg.Hyperparameters.from_env(env)


@pytest.mark.parametrize("record", RECORDS)
def test_published_command_runs_with_every_knob_it_names(record):
    """Nothing in the commands is refused any more; each of our knobs it names holds the command's value."""
    hp = launched(command_env(record))
    kinds = {f.name.upper(): f for f in tg.fields(tg.Hyperparameters)}
    named = {k: v for k, v in RECORDS[record][1].items() if k in kinds and k not in record_env.RECORD_ENV}
    for name, raw in named.items():
        f = kinds[name]
        assert getattr(hp, f.name) == tg.parse_knob(name, raw, type(f.default), ()), name
    assert {k: getattr(hp, k) for k in EVALS.get(record, {})} == EVALS.get(record, {})


@pytest.mark.parametrize("record", RECORDS)
def test_command_builds_the_records_model(record):
    _, _, params, order, xsa, parallel = RECORDS[record]
    hp = launched(command_env(record))
    with torch.device("meta"):  # shapes only: the count and the plans, without initializing 36M weights
        model = tg.GPT(hp)
    plan = model.plans[-1]
    assert sum(p.numel() for p in model.parameters()) == params
    assert plan.order == order
    assert [i for i, on in enumerate(plan.xsa) if on] == list(xsa)
    assert [i for i, on in enumerate(plan.parallel) if on] == list(parallel)


def test_895_progressive_depth_runs_the_records_stages():
    hp = launched(command_env("pr895_4h"))
    with torch.device("meta"):
        plans = tg.GPT(hp).plans
    assert [len(p.order) for p in plans] == [6, 9, 12, 15]  # 2 -> 3 -> 4 -> 5 repeats of 3 blocks
    assert [[i for i, on in enumerate(p.xsa) if on] for p in plans][0] == [2, 3, 4, 5]  # last 4 of the current depth


def test_record_paths_follow_the_records_derivation():
    hp = launched(command_env("pr1775"))
    assert hp.data_path == "/workspace/track-a/data/datasets/fineweb10B_sp8192"  # #1775 reads DATA_DIR only
    assert hp.tokenizer_path == "/workspace/track-a/data/tokenizers/fineweb_8192_bpe.model"
    assert (hp.smear_gate_enabled, hp.attn_out_gate_enabled, hp.val_bytes_path) == (False, False, "")
    hp = launched(command_env("pr1855"))
    assert hp.data_path == "./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"  # given: wins
    assert hp.val_bytes_path == hp.data_path + "/fineweb_val_bytes_*.bin"
    assert (hp.compressor, hp.rans_coding, hp.gptq_reserve_seconds) == ("brotli", True, 0.5)
    hp = launched(command_env("pr1950"))
    root = "./data/datasets/fineweb10B_sp8192_caseops/datasets"  # #1855/#1950's CaseOps default layout
    assert hp.data_path == f"{root}/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    assert hp.tokenizer_path == f"{root}/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    assert hp.val_bytes_path == f"{root}/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved/" \
                                "fineweb_val_bytes_*.bin"


def test_default_paths_resolve_and_are_logged():
    hp = tg.Hyperparameters.from_env({})
    assert (hp.data_path, hp.tokenizer_path) == ("./data/datasets/fineweb10B_sp8192",
                                                 "./data/tokenizers/fineweb_8192_bpe.model")
    assert "  DATA_PATH=./data/datasets/fineweb10B_sp8192" in tg.describe_hyperparameters(hp)
    hp = tg.Hyperparameters.from_env({"VOCAB_SIZE": "1024", "DATA_DIR": "/d"})
    assert hp.data_path == "/d/datasets/fineweb10B_sp1024"
    assert hp.tokenizer_path == "/d/tokenizers/fineweb_1024_bpe.model"
    hp = tg.Hyperparameters.from_env({"DATA_PATH": "/x", "CASEOPS_ENABLED": "1", "VAL_BYTES_PATH": "/y/*.bin"})
    assert (hp.data_path, hp.val_bytes_path) == ("/x", "/y/*.bin")
    assert tg.Hyperparameters.from_env({"DATA_PATH": "/x", "CASEOPS_ENABLED": "1"}).val_bytes_path == \
        "/x/fineweb_val_bytes_*.bin"


def test_every_variable_of_the_records_scripts_is_a_knob_or_in_the_table():
    """The names each script reads (from the records' code; #895's from its PR description and fork)."""
    scripts = {
        "baseline/seq4096": "ADAM_EPS BETA1 BETA2 DATA_PATH EMBED_LR GRAD_CLIP_NORM HEAD_LR ITERATIONS LOGIT_SOFTCAP "
        "MATRIX_LR MAX_WALLCLOCK_SECONDS MLP_MULT MODEL_DIM MUON_BACKEND_STEPS MUON_MOMENTUM "
        "MUON_MOMENTUM_WARMUP_START MUON_MOMENTUM_WARMUP_STEPS NUM_HEADS NUM_KV_HEADS NUM_LAYERS QK_GAIN_INIT "
        "ROPE_BASE RUN_ID SCALAR_LR SEED TIED_EMBED_INIT_STD TIED_EMBED_LR TIE_EMBEDDINGS TOKENIZER_PATH "
        "TRAIN_BATCH_TOKENS TRAIN_LOG_EVERY TRAIN_SEQ_LEN VAL_BATCH_SIZE VAL_LOSS_EVERY VOCAB_SIZE WARMDOWN_ITERS WARMUP_STEPS "
        "CONTROL_TENSOR_NAME_PATTERNS INT8_KEEP_FLOAT_FP32_NAME_PATTERNS",
        "#895": "NUM_REPEATS PROG_DEPTH NUM_VALUE_EMBEDS XSA_LAST_N MUON_WD SWA_ENABLED SWA_START_FRAC SWA_EVERY "
        "EVAL_SEQ_LEN EVAL_STRIDE EVAL_BATCH_SEQS USE_HEDGE HEDGE_ETA QUANT_LEVELS MLP_QUANT_LEVELS ZSTD_LEVEL "
        "TTT_STEPS TTT_LR",
        "#1626/#1667/#1775": "ADAM_WD ARTIFACT_DIR ATTN_CLIP_SIGMAS COMPRESSOR DATA_DIR DISABLE_COMPILE EMA_DECAY "
        "EMBEDDING_DIM EMBED_BITS EMBED_CLIP_SIGMAS EMBED_WD ENABLE_LOOPING_AT EVAL_ONLY_PATH FORCE_FA2 GATE_ATTN_OUT "
        "GATE_ATTN_SRC GATE_MLP_OUT GATE_WIDTH GPTQ_CALIBRATION_BATCHES GPTQ_RESERVE_SECONDS LN_SCALE LOOP_END "
        "LOOP_START MATRIX_BITS MATRIX_CLIP_SIGMAS MIN_LR MLP_CLIP_SIGMAS MUON_BETA2 MUON_ROW_NORMALIZE NUM_LOOPS "
        "PARALLEL_FINAL_LANE PARALLEL_START_LAYER ROPE_DIMS ROPE_TRAIN_SEQ_LEN ROPE_YARN SKIP_GATES_ENABLED "
        "SLIDING_WINDOW_ENABLED SMEAR_GATE SMEAR_GATE_WIDTH VAL_BATCH_TOKENS VAL_DOC_FRACTION WARMDOWN_FRAC "
        "WD_TAPER_FINAL_MULT WD_TAPER_START_FRAC TTT_BATCH_SIZE TTT_BETA1 TTT_BETA2 TTT_CHUNK_SIZE TTT_DEBUG_BYPASS "
        "TTT_ENABLED TTT_EVAL_BATCHES TTT_EVAL_SEQ_LEN TTT_GRAD_STEPS TTT_K_LORA TTT_LORA_LR TTT_LORA_RANK "
        "TTT_MLP_LORA TTT_OPTIMIZER TTT_OUTPUT_DIR TTT_O_LORA TTT_WEIGHT_DECAY PHASED_TTT_ENABLED "
        "PHASED_TTT_NUM_PHASES PHASED_TTT_PREFIX_DOCS GLOBAL_TTT_BATCH_SEQS GLOBAL_TTT_CHUNK_TOKENS GLOBAL_TTT_EPOCHS "
        "GLOBAL_TTT_GRAD_CLIP GLOBAL_TTT_LR GLOBAL_TTT_MOMENTUM GLOBAL_TTT_RESPECT_DOC_BOUNDARIES "
        "GLOBAL_TTT_WARMUP_CHUNKS GLOBAL_TTT_WARMUP_START_LR",
        "#1855/#2008": "ATTN_OUT_GATE_ENABLED ATTN_OUT_GATE_SRC CASEOPS_ENABLED FUSED_CE_ENABLED GATED_ATTN_ENABLED "
        "GATED_ATTN_INIT_STD GATED_ATTN_QUANT_GATE GATE_WINDOW LQER_ASYM_ENABLED LQER_ASYM_GROUP LQER_ENABLED "
        "LQER_FACTOR_BITS LQER_RANK LQER_TOP_K PREQUANT_ONLY SMEAR_GATE_ENABLED SPARSE_ATTN_GATE_ENABLED "
        "SPARSE_ATTN_GATE_INIT_STD SPARSE_ATTN_GATE_SCALE TTT_EVAL_ONLY TTT_LORA_ALPHA TTT_WARM_START_A TTT_Q_LORA "
        "TTT_V_LORA RESUME_ENABLED RESUME_SAVE_MINUTES RESUME_DIR RESUME_KEEP_LAST RESUME_FROM "
        "SCHEDULE_HORIZON_SECONDS NON_RECORD_LONGTRAIN LONGTRAIN_EXPORT_MINUTES EXPORT_MODE "
        "LOAD_QUANTIZED_MODEL_PATH SLIDING_EVAL SLIDING_EVAL_OUTPUT_JSON OUTPUT_DIR TTT_EVAL_OUTPUT_JSON "
        "TTT_VARIANT_ID PREQUANT_EVAL_OUTPUT_JSON RESUME_DECOMPOSE_ONLY RESUME_DECOMPOSE_SKIP_TTT "
        "RESUME_DECOMPOSE_LIVE_TRACE_JSONL RESUME_DECOMPOSE_EMA_TRACE_JSONL RESUME_DECOMPOSE_QUANT_TRACE_JSONL "
        "RESUME_DECOMPOSE_BATCH_JSONL RESUME_DECOMPOSE_OUTPUT_JSON",
        # the names #2014's and #2135's scripts add (unmerged; their train_gpt.py in refs/pull/N/head)
        "#2014": "ASYM_LOGIT_RESCALE AWQ_LITE_BITS AWQ_LITE_ENABLED AWQ_LITE_GROUP_SIZE AWQ_LITE_GROUP_TOP_K "
        "COMPILE_SHAPE_WARMUP COMPILE_SHAPE_WARMUP_ITERS COMPILE_SHAPE_WARMUP_LOOP_MODES "
        "DYNAMO_ACCUMULATED_CACHE_SIZE_LIMIT DYNAMO_CACHE_SIZE_LIMIT EVAL_INCLUDE_TAIL FORCE_STOP_STEP "
        "LQER_GAIN_SELECT LQER_SCOPE MIDRUN_CAP_LOG_UPDATES MIDRUN_CAP_SCHEDULE QUANTIZE_ONLY "
        "SEQ_CHANGE_WARMUP_STEPS TRAIN_SEQ_SCHEDULE TRAIN_SEQ_SCHEDULE_MODE TTT_LOCAL_LR_MULT TTT_MASK "
        "TTT_SHORT_BETA2 TTT_SHORT_CHUNK_SIZE TTT_SHORT_DOC_LEN TTT_SHORT_LORA_ENABLED TTT_SHORT_LORA_LR "
        "TTT_SHORT_LORA_RANK TTT_SHORT_SCORE_FIRST_ENABLED TTT_SHORT_SCORE_FIRST_STEPS TTT_SHORT_WEIGHT_DECAY "
        "TTT_TRAIN_MAX_DOC_LEN TTT_TRAIN_MIN_DOC_LEN TTT_WARM_START_MEAN_DOC_LEN TTT_WARM_START_MEAN_ENABLED "
        "TTT_WARM_START_MEAN_MOMENTUM",
        "#2135": "AGREE_ADD_BOOST GLOBAL_TTT_MUON_NESTEROV GLOBAL_TTT_MUON_NS_STEPS GLOBAL_TTT_OPTIMIZER "
        "MUON_HUBER_DELTA MUON_HUBER_WD NGRAM_HINT_PRECOMPUTE_OUTSIDE NGRAM_TILT_ENABLED OPTROT_ENABLED "
        "PERGROUP_ROUNDTRIP_CHECK QK_GAIN_INIT_SCHEDULE SMEAR_GATE_BOS_FIX TOKEN_BOOST TOKEN_ORDER "
        "TOKEN_THRESHOLD TTT_GRAD_STEPS_CLEAN TTT_LORA_EMA_DECAY TTT_UPDATE_EVERY WITHIN_BOOST WITHIN_TAU "
        "WORD_BOOST WORD_NORMALIZE WORD_ORDER WORD_TAU",
    }
    knobs = {f.name.upper() for f in tg.fields(tg.Hyperparameters)}
    table = set(record_env.RECORD_ENV)
    missing = [n for names in scripts.values() for n in names.split() if n not in knobs and n not in table]
    assert missing == []
    # a record name that is also a knob is one only for record-specific values (COMPRESSOR=pergroup, a .pt path),
    # or means other math there (AsymLogit's caps train here, not there)
    assert knobs & table == {"COMPRESSOR", "EVAL_ONLY_PATH", "ASYM_LOGIT_RESCALE"}
    assert {e.kind for e in record_env.RECORD_ENV.values()} == {"renamed", "same_math", "no_equivalent"}


def test_top_caseops_recipe_is_top_on_caseops_data():
    """records/recipes/top_caseops.env layered on top.env: #1855 as it ran, the same model on CaseOps data."""
    top = tg.Hyperparameters.from_env(recipe("top.env"))
    caseops = tg.Hyperparameters.from_env({**recipe("top.env"), **recipe("top_caseops.env")})
    assert caseops.model_config() == top.model_config()
    assert caseops.data_path.endswith("fineweb10B_sp8192_lossless_caps_caseops_v1_reserved")
    assert caseops.val_bytes_path == caseops.data_path + "/fineweb_val_bytes_*.bin"


def test_top_recipe_sets_the_records_numerics():
    """top.env is #1855: the knobs that turn each of our on-purpose differences back into its computation."""
    hp = tg.Hyperparameters.from_env(recipe("top.env"))
    assert (hp.grad_clip_per_rank, hp.rope_bf16_freqs, hp.muon_keep_warmup_momentum, hp.eval_rows_by_doc,
            hp.global_ttt_stream) == (True, True, True, True, "record")


def test_top_recipe_pauses_for_global_sgd_where_the_records_logs_do():
    """#1855's logs (all three seeds, 8 ranks): 'ttpp: phase:k/3 pd:1296|2128|2960 gd:833|1666|2500', the documents
    scored when each phase began: the batches holding 833/1666/2500 documents (14, 27, 40) and the 7 the other
    ranks held in flight; #2135's one phase: pd:2960 at 8 ranks as well."""
    hp = tg.Hyperparameters.from_env(recipe("top.env"))
    sizes = [50_000 % hp.ttt_batch_size] + [hp.ttt_batch_size] * (50_000 // hp.ttt_batch_size)  # 16 longest first
    phases = tg.phase_plan(sizes, hp, 8)
    assert [(sum(sizes[:bound]), docs) for bound, docs in phases] == [(1296, 833), (2128, 1666), (2960, 2500)]
    assert tg.phase_plan(sizes, hp, 1) == [(14, 833), (27, 1666), (40, 2500)]
    queue = tg.phase_plan(sizes, tg.Hyperparameters.from_env({**recipe("top.env"), "GLOBAL_TTT_STREAM": "queue"}), 8)
    assert queue == [(14, 833), (27, 1666), (40, 2500)]  # the first documents need no more batches scored


# The frontier after #1855 (unmerged, 2026-05), layered on top.env. Both logs give model_params:35945673, #1855's
# 35,945,671 and the two AsymLogit caps, which never get a gradient there (the scalar cap: off here, see the recipes).
FRONTIER = {
    "pr2014.env": dict(
        stages=[tg.Stage(0, 1024), tg.Stage(0, 2048), tg.Stage(1, 2048), tg.Stage(1, 3072)],
        knobs={"train_seq_len": 3072, "ttt_eval_seq_len": 3072, "qk_gain_init": 5.25, "asym_logit_rescale": False,
               "ttt_q_lora": False, "ttt_k_lora": True, "ttt_v_lora": False, "ttt_batch_size": 24,
               "phased_ttt_num_phases": 1, "phased_ttt_prefix_docs": 2500, "ngram_tilt_enabled": False,
               "ttt_lora_lr": 0.000075},  # its 0.0001 x TTT_LOCAL_LR_MULT=0.75
        chunks={255: 8, 256: 24, 1999: 24, 2000: 48}, phases=[(112, 2500)]),  # 105 batches of 24 hold 2500, +7
    "pr2135.env": dict(
        stages=[tg.Stage(0, 2048), tg.Stage(1, 2048)],
        knobs={"ngram_tilt_enabled": True, "ngram_tilt_order": 16, "ngram_tilt_threshold": 0.8,
               "ngram_tilt_beta": 2.625, "asym_logit_rescale": False, "gptq_calibration_batches": 32,
               "ttt_lora_rank": 80, "ttt_lora_lr": 8e-5, "ttt_weight_decay": 2.0, "ttt_k_lora": False,
               "ttt_q_lora": True, "ttt_v_lora": True, "matrix_lr": 0.028, "lqer_asym_group": 32,
               "ttt_eval_seq_len": 2560, "smear_gate_enabled": True},
        chunks={1: 48, 256: 48, 5000: 48}, phases=[(47, 2500)]),  # 40 batches of 64 hold 2500, +7: its pd:2960
}


@pytest.mark.parametrize("name", FRONTIER)
def test_frontier_recipe_builds_the_records_model_and_plan(name):
    """#2014 and #2135 on top.env: #1855's model (AsymLogit off: a no-op there), its layer plan, and each record's context stages,
    TTT chunk sizes by document length and global-SGD phases (one, on a 2,500-document prefix)."""
    want = FRONTIER[name]
    hp = tg.Hyperparameters.from_env({**recipe("top.env"), **recipe(name)})
    with torch.device("meta"):
        model = tg.GPT(hp)
    plan = model.plans[-1]
    assert sum(p.numel() for p in model.parameters()) == 35_945_671
    assert plan.order == LOOPED and all(plan.xsa)
    assert [i for i, on in enumerate(plan.parallel) if on] == list(range(14, 17))
    assert tg.schedule_stages(hp) == want["stages"]
    assert {k: getattr(hp, k) for k in want["knobs"]} == want["knobs"]
    # a batch whose longest document has n targets: n + 1 tokens in #2014's count, its BOS too
    assert {n: tg.chunk_size_of([(0, 1), (5, 5 + n)], hp) for n in want["chunks"]} == want["chunks"]
    sizes = [50_000 % hp.ttt_batch_size] + [hp.ttt_batch_size] * (50_000 // hp.ttt_batch_size)  # #1855's queue
    assert tg.phase_plan(sizes, hp, 8) == want["phases"]  # at 8 ranks: 7 batches in flight join the pool
    # top.env's #1855 numerics come along
    assert hp.grad_clip_per_rank and hp.rope_bf16_freqs and hp.muon_keep_warmup_momentum and hp.eval_rows_by_doc


# records/track_10min_16mb/2026-04-30_SP8192_CaseOps_Progressive3k_ShortDocTTT/README.md (PR #2014, seed 42)
PR2014 = words(
    "NCCL_NET=Socket DATA_DIR=./data "
    "DATA_PATH=./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved "
    "TOKENIZER_PATH=./data/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model "
    "CASEOPS_ENABLED=1 VOCAB_SIZE=8192 ITERATIONS=20000 MAX_WALLCLOCK_SECONDS=600 EVAL_INCLUDE_TAIL=1 "
    "TRAIN_SEQ_LEN=3072 ROPE_TRAIN_SEQ_LEN=3072 TRAIN_SEQ_SCHEDULE=1024@0.100,2048@0.700,3072@1.000 "
    "TRAIN_SEQ_SCHEDULE_MODE=wallclock SEQ_CHANGE_WARMUP_STEPS=32 EVAL_SEQ_LEN=3072 EVAL_STRIDE=1536 "
    "TTT_ENABLED=1 TTT_EVAL_SEQ_LEN=3072 TTT_BATCH_SIZE=24 TTT_CHUNK_SIZE=48 TTT_SHORT_SCORE_FIRST_ENABLED=1 "
    "TTT_SHORT_DOC_LEN=2000 TTT_SHORT_CHUNK_SIZE=24 TTT_SHORT_SCORE_FIRST_STEPS=256:8,2000:24 "
    "TTT_LORA_RANK=80 TTT_LORA_LR=0.0001 TTT_LOCAL_LR_MULT=0.75 TTT_MASK=no_qv TTT_Q_LORA=0 TTT_V_LORA=0 "
    "TTT_WEIGHT_DECAY=0.5 TTT_BETA2=0.99 PHASED_TTT_PREFIX_DOCS=2500 PHASED_TTT_NUM_PHASES=1 "
    "WARMDOWN_FRAC=0.85 BETA2=0.99 QK_GAIN_INIT=5.25 SPARSE_ATTN_GATE_ENABLED=1 SPARSE_ATTN_GATE_SCALE=0.5 "
    "GATED_ATTN_QUANT_GATE=1 SMEAR_GATE_ENABLED=1 GATE_WINDOW=12 FUSED_CE_ENABLED=1 MATRIX_LR=0.026 "
    "MIN_LR=0.1 GRAD_CLIP_NORM=0.3 EMBED_BITS=7 EMBED_CLIP_SIGMAS=14.0 MATRIX_CLIP_SIGMAS=12.85 "
    "ATTN_CLIP_SIGMAS=13.0 MLP_CLIP_SIGMAS=11.5 LQER_ENABLED=1 LQER_RANK=4 LQER_TOP_K=3 LQER_FACTOR_BITS=4 "
    "LQER_ASYM_ENABLED=1 LQER_ASYM_GROUP=64 AWQ_LITE_ENABLED=1 AWQ_LITE_BITS=8 AWQ_LITE_GROUP_TOP_K=1 "
    "AWQ_LITE_GROUP_SIZE=64 ASYM_LOGIT_RESCALE=1 GPTQ_RESERVE_SECONDS=4.0 GPTQ_CALIBRATION_BATCHES=16 "
    "COMPRESSOR=pergroup VAL_LOSS_EVERY=0 SEED=42")
# records/track_10min_16mb/2026-05-01_SP8192_PR2130Base_Calib32/README.md (PR #2135, seed 42)
PR2135 = words(
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True NCCL_NET=Socket DATA_DIR=./data "
    "DATA_PATH=./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved "
    "TOKENIZER_PATH=./data/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model "
    "CASEOPS_ENABLED=1 VOCAB_SIZE=8192 ASYM_LOGIT_RESCALE=1 NGRAM_TILT_ENABLED=1 "
    "NGRAM_HINT_PRECOMPUTE_OUTSIDE=0 TOKEN_ORDER=16 TOKEN_THRESHOLD=0.800 TOKEN_BOOST=2.625 WITHIN_TAU=99.0 "
    "WITHIN_BOOST=0.0 WORD_TAU=99.0 WORD_BOOST=0.0 AGREE_ADD_BOOST=0.0 SMEAR_GATE_BOS_FIX=0 "
    "TTT_LORA_EMA_DECAY=0.0 TTT_UPDATE_EVERY=1 PHASED_TTT_PREFIX_DOCS=2500 PHASED_TTT_NUM_PHASES=1 "
    "EVAL_SEQ_LEN=2560 TTT_EVAL_SEQ_LEN=2560 COMPRESSOR=pergroup MATRIX_CLIP_SIGMAS=12.85 "
    "ATTN_CLIP_SIGMAS=13.0 MLP_CLIP_SIGMAS=11.5 EMBED_BITS=7 EMBED_CLIP_SIGMAS=14.0 MATRIX_LR=0.028 "
    "MIN_LR=0.1 WARMDOWN_FRAC=0.85 BETA2=0.99 FUSED_CE_ENABLED=1 SPARSE_ATTN_GATE_ENABLED=1 "
    "SPARSE_ATTN_GATE_SCALE=0.5 SMEAR_GATE_ENABLED=1 GATE_WINDOW=12 LQER_ENABLED=1 LQER_RANK=4 LQER_TOP_K=3 "
    "LQER_FACTOR_BITS=4 LQER_ASYM_ENABLED=1 LQER_ASYM_GROUP=32 TTT_WARM_START_A=1 TTT_LORA_RANK=80 "
    "TTT_BETA2=0.99 TTT_WEIGHT_DECAY=2.0 TTT_LORA_LR=8e-5 GPTQ_RESERVE_SECONDS=0.5 "
    "GPTQ_CALIBRATION_BATCHES=32 TTT_K_LORA=0 TTT_O_LORA=1 TTT_MLP_LORA=1 EMA_DECAY=0.9965 SEED=42")
# recipe: (the published command, what it asks for that we lack, the values it gives that the recipe leaves)
FRONTIER_COMMANDS = {
    "pr2014.env": (PR2014, {"SEQ_CHANGE_WARMUP_STEPS", "AWQ_LITE_ENABLED"}, {"gptq_reserve_seconds": 4.0}),
    "pr2135.env": (PR2135, {"SMEAR_GATE_BOS_FIX"}, {"gptq_reserve_seconds": 0.5}),
}


@pytest.mark.parametrize("name", FRONTIER_COMMANDS)
def test_frontier_command_stops_at_what_we_lack_and_is_its_recipe_without_it(name):
    """#2014's and #2135's commands through the launcher: one line naming exactly what we lack; without those
    variables, the recipe (on top_caseops.env) but for the seed, the paths and the GPTQ reserve the command gives.
    Their EVAL_SEQ_LEN/EVAL_STRIDE land in our sliding window's knobs, which these recipes leave off."""
    command, lacking, own = FRONTIER_COMMANDS[name]
    recipe_env = {**recipe("top.env"), **recipe("top_caseops.env"), **recipe(name)}
    with pytest.raises(tg.HyperparameterError) as err:
        record_env.translate({**recipe_env, **command})
    assert {part.split("=")[0] for part in str(err.value).split("; ") if ": no equivalent here" in part} == lacking
    hp = launched({**recipe_env, **{k: v for k, v in command.items() if k not in lacking}})
    want = asdict(tg.Hyperparameters.from_env(recipe_env))
    differ = {k: v for k, v in asdict(hp).items()  # a float to its last digits: 0.000075 is 0.0001 x 0.75
              if v != (pytest.approx(want[k], rel=1e-12) if isinstance(v, float) else want[k])}
    assert set(differ) == {"seed", "data_path", "tokenizer_path", "val_bytes_path", "eval_seq_len", *own} | (
        {"eval_stride"} if "EVAL_STRIDE" in command else set())
    assert {k: differ[k] for k in own} == own and hp.seed == 42 and not hp.sliding_window_enabled
    assert hp.data_path == "./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    with torch.device("meta"):
        assert sum(p.numel() for p in tg.GPT(hp).parameters()) == 35_945_671
