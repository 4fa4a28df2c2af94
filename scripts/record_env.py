"""Run a record's published command here: the records' own variable names become our knobs.

    python scripts/record_env.py [--] COMMAND...
    env $(grep -v '^#' records/recipes/pr1775.env | xargs) SEED=1337 SMEAR_GATE=0 GATE_ATTN_OUT=0 \
      python scripts/record_env.py -- torchrun --standalone --nproc_per_node=8 train_gpt.py

It reads the environment, translates the records' own env vars (the official baseline and Seq4096, #895,
#1626, #1667/#1775, #1855, #1950/#2008, #2014, #2135) that are not a knob of train_gpt.py of the same name and
meaning, prints one `record_env:` line on stderr for each variable it translated or accepted, and runs COMMAND (exec)
with our knobs set and the records' names removed, so train_gpt.py never sees them. Each variable in
RECORD_ENV is one of:
  renamed        our knob under another name: set it (with a value translation where the meaning differs);
                 both spellings with different values is an error
  same_math      a speed kernel or lossless packing we compute identically, or a variable the record's own
                 code never reads: accepted, one note line says what we do instead
  no_equivalent  refused, naming what we do instead (values that ask for nothing we lack are accepted)
A refusal, a conflict, a bad value or an invalid knob prints one `error:` line and exits 2; COMMAND never runs.
"""

import difflib
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_gpt as tg


@dataclass(frozen=True)
class RecordEnv:
    kind: str
    records: str  # whose variable it is
    ours: str  # renamed: a remark for the log; same_math: the note; no_equivalent: why
    translate: object = None  # renamed/same_math: (name, raw, environ) -> {KNOB: raw} to set, None = left to the knob
    off: object = None  # (raw, hp) -> True where the value is accepted silently
    scales: str = ""  # the knob whose given value the translation multiplies (no conflict with it)


def _is_off(raw: str, hp=None) -> bool:
    return raw.strip().lower() in ("0", "false", "")


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _sets(**knobs):
    """A 0/1 record flag: on sets these knobs (maybe none), off sets nothing."""
    return lambda name, raw, env: {k: str(v) for k, v in knobs.items()} if tg.parse_knob(name, raw, bool, ()) else {}


def _renamed(target: str, records: str, remark: str = "") -> RecordEnv:
    return RecordEnv("renamed", records, remark, translate=lambda name, raw, env: {target: raw})


def _quant_levels(name: str, raw: str, env) -> dict:
    """#895: integer levels per sign (127 = int8) for every large matrix, embeddings included."""
    bits = {2 ** (b - 1) - 1: b for b in range(2, 9)}.get(_number(raw))
    if bits is None:
        raise tg.HyperparameterError(f"{name}={raw}: no equivalent here; we quantize to 2^(b-1)-1 levels, "
                                  "b = MATRIX_BITS and EMBED_BITS in 2..8 (127 levels = 8 bits)")
    return {"MATRIX_BITS": str(bits), "EMBED_BITS": str(bits)}


def _no_equivalent(records: str, why: str, off=None) -> RecordEnv:
    return RecordEnv("no_equivalent", records, why, off=off)


def _nothing(name: str, raw: str, env) -> dict:
    return {}


def _given_or_default(env, knob: str) -> str:
    return env.get(knob, str(tg.Hyperparameters.__dataclass_fields__[knob.lower()].default))


def _scaled_lora_lr(name: str, raw: str, env) -> dict:
    """#2014: each document's adapters train at TTT_LORA_LR x TTT_LOCAL_LR_MULT (global SGD has its own rate)."""
    mult = tg.parse_knob(name, raw, float, ())
    if not 0 <= mult < float("inf"):
        raise tg.HyperparameterError(f"{name}={raw}: expected a number >= 0")
    return {"TTT_LORA_LR": repr(tg.parse_knob("TTT_LORA_LR", _given_or_default(env, "TTT_LORA_LR"), float, ()) * mult)}


def _short_doc_chunks(name: str, raw: str, env) -> dict:
    """#2014's short-document chunks: TTT_SHORT_SCORE_FIRST_STEPS 'doclen:chunk,...', else one step
    TTT_SHORT_CHUNK_SIZE for documents up to TTT_SHORT_DOC_LEN (512), as TTT_SHORT_DOC_CHUNKS 'chunk@doclen,...'."""
    if not tg.parse_knob(name, raw, bool, ()):
        return {}
    steps = env.get("TTT_SHORT_SCORE_FIRST_STEPS", "").strip()
    if not steps:
        chunk = env.get("TTT_SHORT_CHUNK_SIZE") or _given_or_default(env, "TTT_CHUNK_SIZE")
        if _number(chunk) == 0:  # no short chunks there
            return {}
        steps = f"{env.get('TTT_SHORT_DOC_LEN', '512')}:{chunk}"
    pairs = [item.replace("=", ":").split(":") for item in steps.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise tg.HyperparameterError(f"TTT_SHORT_SCORE_FIRST_STEPS={steps!r}: expected 'doclen:chunk,...'")
    return {"TTT_SHORT_DOC_CHUNKS": ",".join(f"{c.strip()}@{n.strip()}" for n, c in pairs)}


_TTT_MASKS = {"": (), "all": (), "baseline_all": (), "no_q": ("TTT_Q_LORA",), "no_v": ("TTT_V_LORA",),
              "no_qv": ("TTT_Q_LORA", "TTT_V_LORA")}


def _ttt_mask(name: str, raw: str, env) -> dict:
    """#2014: the adapters a mask turns off, unless TTT_Q_LORA/TTT_V_LORA is given (which wins there too)."""
    off = _TTT_MASKS.get(raw.strip().lower())
    if off is None:
        raise tg.HyperparameterError(f"{name}={raw}: expected one of all, no_q, no_v, no_qv")
    return {knob: "0" for knob in off if knob not in env}


def _any(raw: str, hp) -> bool:  # an output location of a feature that is off: nothing is written there
    return True


def _asks_nothing_at(unset: float | str):
    """off where the value is `unset`: a number compared as a number (0 = 0.0), a word case-blind ("all")."""
    if isinstance(unset, float):
        return lambda raw, hp: _number(raw) == unset
    return lambda raw, hp: raw.strip().lower() == unset


def _silent(records: str, names: str) -> dict:
    """Variables read only by a feature that is off, or refused on its own: accepted without a note."""
    return {name: RecordEnv("same_math", records, "", translate=_nothing, off=_any) for name in names.split()}


_INERT = "read but never used by that record's code: no effect there or here"
_DECOMPOSE = ("resume its checkpoint with RESUME_FROM and ITERATIONS=<the checkpoint's step>: the log scores the "
              "live weights, the average, the quantized artifact and every eval stage")
RECORD_ENV: dict[str, RecordEnv] = {
    # renamed
    "SMEAR_GATE": _renamed("SMEAR_GATE_ENABLED", "#1667/#1775", "ours is BOS-masked as #1851 fixed it"),
    "SMEAR_GATE_WIDTH": _renamed("GATE_WINDOW", "#1667/#1775"),
    "GATE_WIDTH": _renamed("GATE_WINDOW", "#1667/#1775"),
    "GATE_ATTN_OUT": _renamed("ATTN_OUT_GATE_ENABLED", "#1667/#1775"),
    "GATE_ATTN_SRC": _renamed("ATTN_OUT_GATE_SRC", "#1667/#1775"),
    "VAL_BATCH_TOKENS": _renamed("VAL_BATCH_SIZE", "#1626-#2008"),
    "DISABLE_COMPILE": RecordEnv("renamed", "#1775", "", translate=_sets(COMPILE=0)),
    "QUANT_LEVELS": RecordEnv("renamed", "#895", "", translate=_quant_levels),
    # same math
    "FUSED_CE_ENABLED": RecordEnv("same_math", "#1855/#2008", "its Triton fused softcapped cross-entropy is a "
                                  "speed kernel; we compute the same loss eagerly", translate=_sets(), off=_is_off),
    "COMPRESSOR": RecordEnv("same_math", "#1855/#2008", "its per-group lrzip packing is replaced by our lossless "
                            "rANS + brotli packing (COMPRESSOR=brotli RANS_CODING=1; no lrzip binary)",
                            translate=lambda name, raw, env: {"COMPRESSOR": "brotli", "RANS_CODING": "1"}
                            if raw.strip() == "pergroup" else None, off=lambda raw, hp: raw.strip() != "pergroup"),
    "ASYM_LOGIT_RESCALE": RecordEnv("same_math", "#1923/#1945/#2014/#2135", "its two logit caps never get a gradient "
                                    "(training and global SGD run the scalar-cap forward): at LOGIT_SOFTCAP they are "
                                    "the scalar cap, so ours, which trains them, stays off",
                                    translate=lambda name, raw, env: {name: "0"}, off=_is_off),
    "FORCE_FA2": RecordEnv("same_math", "#1775", "there is no FA2 path here; attention runs on SDPA "
                           "(ATTN_BACKEND=sdpa, the same attention)", translate=_sets(ATTN_BACKEND="sdpa"),
                           off=_is_off),
    "ROPE_TRAIN_SEQ_LEN": RecordEnv("same_math", "#1626-#2008", "only YaRN reads it, which is off there and "
                                    "absent here: no effect", translate=_nothing),
    "MUON_BETA2": RecordEnv("same_math", "#1667/#1775", _INERT, translate=_nothing),
    "WD_TAPER_START_FRAC": RecordEnv("same_math", "#1775", _INERT, translate=_nothing),
    "WD_TAPER_FINAL_MULT": RecordEnv("same_math", "#1775", _INERT, translate=_nothing),
    # evaluation: the records' names for our eval knobs, and what has no counterpart
    "TTT_EVAL_OUTPUT_JSON": _renamed("EVAL_SUMMARY_JSON", "#2008", "ours lists every eval stage"),
    "LOAD_QUANTIZED_MODEL_PATH": _renamed("EVAL_ONLY_PATH", "#2008"),
    "TTT_EVAL_ONLY": _no_equivalent("#1787/#2008", "name the artifact to score with EVAL_ONLY_PATH (1 = this "
                                    "ARTIFACT_DIR's) or LOAD_QUANTIZED_MODEL_PATH",
                                    off=lambda raw, hp: _is_off(raw) or bool(hp.eval_only_path)),
    "SLIDING_EVAL": RecordEnv("same_math", "#2008", "an eval-only run always scores the round-trip diagnostic "
                              "(and the sliding window with SLIDING_WINDOW_ENABLED=1)", translate=_nothing,
                              off=_is_off),
    "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES": _no_equivalent("#1626-#2008", "global SGD cuts attention at documents "
                                                        "as DOC_ISOLATION does", off=lambda raw, hp: not _is_off(raw)),
    "TTT_STEPS": _no_equivalent("#895 (early)", "it trained on each batch before scoring it (not score-first); "
                                "TTT_ENABLED is score-first LoRA TTT", off=_asks_nothing_at(0.0)),
    "TTT_LR": _no_equivalent("#895 (early)", "see TTT_STEPS; the adapters' rate is TTT_LORA_LR", off=_any),
    "TTT_DEBUG_BYPASS": _no_equivalent("#1855", "no debug bypass of TTT", off=_is_off),
    "VAL_DOC_FRACTION": _no_equivalent("#1626-#1775", "sample the val split once with data/sample_val.py and point "
                                       "DATA_PATH at it (its scores are labelled _partial)",
                                       off=_asks_nothing_at(1.0)),
    **_silent("#1855/#2008",  # their output files: results go to the log and EVAL_SUMMARY_JSON here
              "TTT_OUTPUT_DIR TTT_VARIANT_ID OUTPUT_DIR SLIDING_EVAL_OUTPUT_JSON PREQUANT_EVAL_OUTPUT_JSON "
              "RESUME_DECOMPOSE_LIVE_TRACE_JSONL RESUME_DECOMPOSE_EMA_TRACE_JSONL RESUME_DECOMPOSE_QUANT_TRACE_JSONL "
              "RESUME_DECOMPOSE_BATCH_JSONL RESUME_DECOMPOSE_OUTPUT_JSON"),
    "PREQUANT_ONLY": _no_equivalent("#1855/#2008", "every run logs the average's score before quantization "
                                    f"('diagnostic pre-quantization'); of a saved run, {_DECOMPOSE}", off=_is_off),
    # long runs: RESUME_ENABLED, RESUME_SAVE_MINUTES, RESUME_DIR, RESUME_KEEP_LAST, RESUME_FROM are our knobs
    "RESUME_DECOMPOSE_ONLY": _no_equivalent("#2008", _DECOMPOSE, off=_is_off),
    "RESUME_DECOMPOSE_SKIP_TTT": _no_equivalent("#2008", "TTT_ENABLED=0 skips TTT", off=_any),
    "LONGTRAIN_EXPORT_MINUTES": _renamed("EXPORT_MINUTES", "#2008"),
    "EXPORT_MODE": RecordEnv("renamed", "#2008", "", translate=lambda name, raw, env: {
        "EXPORT_EVAL": {"full": "1", "light": "0"}.get(raw.strip(), raw)}),
    "NON_RECORD_LONGTRAIN": _no_equivalent("#2008", "periodic exports happen at EXPORT_MINUTES (or "
                                           "LONGTRAIN_EXPORT_MINUTES); set the minutes",
                                           off=lambda raw, hp: _is_off(raw) or bool(hp.export_minutes)),
    # #2014 and #2135 (unmerged, after #1855): their recipes are pr2014.env and pr2135.env
    "TTT_SHORT_SCORE_FIRST_ENABLED": RecordEnv("renamed", "#2014", "from its TTT_SHORT_* steps",
                                               translate=_short_doc_chunks),
    "TTT_LOCAL_LR_MULT": RecordEnv("renamed", "#2014", "its documents' adapters train at TTT_LORA_LR times it",
                                   translate=_scaled_lora_lr, scales="TTT_LORA_LR"),
    "TTT_MASK": RecordEnv("renamed", "#2014", "", translate=_ttt_mask),
    "TOKEN_ORDER": _renamed("NGRAM_TILT_ORDER", "#2135"),
    "TOKEN_THRESHOLD": _renamed("NGRAM_TILT_THRESHOLD", "#2135"),
    "TOKEN_BOOST": _renamed("NGRAM_TILT_BETA", "#2135"),
    "NGRAM_HINT_PRECOMPUTE_OUTSIDE": RecordEnv("same_math", "#2135", "the same hints are computed once before the "
                                               "TTT timer (eval_timers: ngram_hints), counted in total_eval_time",
                                               translate=_nothing, off=lambda raw, hp: raw.strip() == "1"),
    **_silent("#2014/#2135",  # read only with a variable above, by a feature refused below when on, or for speed
              "TTT_SHORT_SCORE_FIRST_STEPS TTT_SHORT_DOC_LEN TTT_SHORT_CHUNK_SIZE "
              "AWQ_LITE_BITS AWQ_LITE_GROUP_TOP_K AWQ_LITE_GROUP_SIZE "
              "TTT_SHORT_LORA_RANK TTT_SHORT_LORA_LR TTT_SHORT_WEIGHT_DECAY TTT_SHORT_BETA2 "
              "TTT_WARM_START_MEAN_DOC_LEN TTT_WARM_START_MEAN_MOMENTUM MIDRUN_CAP_LOG_UPDATES "
              "GLOBAL_TTT_MUON_NESTEROV GLOBAL_TTT_MUON_NS_STEPS MUON_HUBER_DELTA "
              "WITHIN_BOOST WORD_BOOST WORD_ORDER WORD_NORMALIZE AGREE_ADD_BOOST "
              "COMPILE_SHAPE_WARMUP COMPILE_SHAPE_WARMUP_ITERS COMPILE_SHAPE_WARMUP_LOOP_MODES "
              "DYNAMO_CACHE_SIZE_LIMIT DYNAMO_ACCUMULATED_CACHE_SIZE_LIMIT PERGROUP_ROUNDTRIP_CHECK"),
    **{name: _no_equivalent("#2135", "its within-word and word-start hint channels read the scored token's word "
                            "boundary, ruled illegal (C1: #1967, #2018); the tilt here is token-only",
                            off=lambda raw, hp: (_number(raw) or 0) > 1 or not hp.ngram_tilt_enabled)
       for name in ("WITHIN_TAU", "WORD_TAU")},  # above 1 a channel's gate never opens
    "SMEAR_GATE_BOS_FIX": _no_equivalent("#2135", "SmearGate here always masks BOS (#1851); without it a "
                                         "document's first token sees the previous document's last (pr2135.env is "
                                         "#2135 with the fix)",
                                         off=lambda raw, hp: raw.strip() == "1" or not hp.smear_gate_enabled),
    "EVAL_INCLUDE_TAIL": _no_equivalent("#2014", "every target is scored here, the tail too (its 1)",
                                        off=lambda raw, hp: not _is_off(raw)),
    "TRAIN_SEQ_SCHEDULE_MODE": _no_equivalent("#2014", "TRAIN_SEQ_SCHEDULE follows the training clock under a "
                                              "wallclock cap and the steps without one (its wallclock mode)",
                                              off=lambda raw, hp: raw.strip().lower() == "wallclock"
                                              or not hp.train_seq_schedule),
    "TTT_GRAD_STEPS_CLEAN": _no_equivalent("#2135", "each of TTT_GRAD_STEPS steps sees only its own gradient (its 1, "
                                           "#1855's)", off=lambda raw, hp: not _is_off(raw) or hp.ttt_grad_steps == 1),
    **{name: _no_equivalent(records, why, off=_asks_nothing_at(unset))
       for name, records, unset, why in (
        ("SEQ_CHANGE_WARMUP_STEPS", "#2014", 0.0, ("no learning-rate re-warm-up after a context change "
                                                  "(pr2014.env is #2014 without it)")),
        ("AWQ_LITE_ENABLED", "#1945/#2014", 0.0, "no AWQ-lite: GPTQ with LQER (pr2014.env is #2014 without it)"),
        ("FORCE_STOP_STEP", "#2014", 0.0, "ITERATIONS stops training at a step"),
        ("LQER_SCOPE", "#2014", "all", "LQER considers every quantized matrix (its all)"),
        ("LQER_GAIN_SELECT", "#2014", 0.0, "LQER corrects the LQER_TOP_K largest errors"),
        ("MIDRUN_CAP_SCHEDULE", "#2014", "", "no mid-run learning-rate cap"),
        ("QUANTIZE_ONLY", "#2014", 0.0, f"of a saved run, {_DECOMPOSE}"),
        ("TTT_TRAIN_MIN_DOC_LEN", "#2014", 0.0, "every scored document's adapters train on it"),
        ("TTT_TRAIN_MAX_DOC_LEN", "#2014", 0.0, "every scored document's adapters train on it"),
        ("TTT_SHORT_LORA_ENABLED", "#2014", 0.0, "one adapter rank and rate for every document"),
        ("TTT_WARM_START_MEAN_ENABLED", "#2014", 0.0, "no mean warm start (TTT_WARM_START_A keeps the last A)"),
        ("TTT_LORA_EMA_DECAY", "#2135", 0.0, "no average of the adapters: the live ones score each chunk"),
        ("TTT_UPDATE_EVERY", "#2135", 1.0, "the adapters step after every chunk"),
        ("GLOBAL_TTT_OPTIMIZER", "#2135", "sgd", "global SGD is SGD with momentum (its sgd)"),
        ("MUON_HUBER_WD", "#2135", 0.0, "Muon's weight decay is decoupled (MUON_WD)"),
        ("OPTROT_ENABLED", "#2135", 0.0, "no rotation of the weights before GPTQ"),
        ("QK_GAIN_INIT_SCHEDULE", "#2135", "", "one QK_GAIN_INIT for every layer"))},
    # no equivalent
    "CONTROL_TENSOR_NAME_PATTERNS": _no_equivalent("all", "tensors go to optimizer groups and export schemes by "
                                                   "role (tensor_role) and size (KEEP_FLOAT_MAX_NUMEL)"),
    "INT8_KEEP_FLOAT_FP32_NAME_PATTERNS": _no_equivalent("baseline, #895", "small tensors are kept by size "
                                                         "(KEEP_FLOAT_MAX_NUMEL), as fp16 under QUANT_METHOD=gptq"),
    "ROPE_YARN": _no_equivalent("#1626-#2008", "no YaRN: RoPE keeps ROPE_BASE at every length", off=_is_off),
    "GATE_MLP_OUT": _no_equivalent("#1667/#1775", "no MLP output gate (attention gates: SPARSE_ATTN_GATE_*, "
                                   "ATTN_OUT_GATE_*, GATED_ATTN_*)", off=_is_off),
    "EMBEDDING_DIM": _no_equivalent("#1667/#1775", "no factorised embedding: its width is MODEL_DIM",
                                    off=lambda raw, hp: _number(raw) == hp.model_dim),
    "MLP_QUANT_LEVELS": _no_equivalent("#895", "one width for every block matrix (MATRIX_BITS)",
                                       off=lambda raw, hp: _number(raw) in (0, 2 ** (hp.matrix_bits - 1) - 1)),
    "ZSTD_LEVEL": _no_equivalent("#895", "COMPRESSOR=zstd compresses at level 22",
                                 off=_asks_nothing_at(22.0)),
    "EVAL_ONLY_PATH": _no_equivalent("#1667/#1775", "theirs evaluates a raw checkpoint (.pt); ours scores one of "
                                     "our artifacts (final_model.int6.ptz)",
                                     off=lambda raw, hp: not raw.strip().endswith(".pt")),
}


def apply_record_env(environ) -> tuple[dict[str, str], list[str], list[tuple[str, str, RecordEnv]]]:
    """The raw value of every knob given, the records' renamed and same-math variables applied; the note
    lines for the log; and the variables to judge once the knobs are parsed (no_equivalent)."""
    kinds = {f.name.upper(): f for f in fields(tg.Hyperparameters)}
    raw = {k: v for k, v in environ.items() if k in kinds}
    source = {k: k for k in raw}  # knob -> the variable that set it
    notes, held = [], []
    for name, value in environ.items():
        entry = RECORD_ENV.get(name)
        if entry is None:
            continue
        if entry.kind == "no_equivalent":
            held.append((name, value, entry))
            continue
        mapped = entry.translate(name, value, environ)
        if mapped is None:  # a value the knob of that name reads as usual
            continue
        for knob_name, knob_raw in mapped.items():
            f = kinds[knob_name]
            new = tg.parse_knob(name, knob_raw, type(f.default), f.metadata["choices"])
            other = source.get(knob_name, name)
            if other not in (name, entry.scales) and tg.parse_knob(other, raw[knob_name], type(f.default), ()) != new:
                raise tg.HyperparameterError(f"{name}={value} means {knob_name}={knob_raw} here, but {other}="
                                          f"{environ[other]} is also given: set one")
            raw[knob_name], source[knob_name] = knob_raw, name
        sets = " ".join(f"{k}={v}" for k, v in mapped.items())
        if entry.kind == "renamed" and mapped:
            remark = f"; {entry.ours}" if entry.ours and not _is_off(value) else ""  # a remark on the feature, if on
            notes.append(f"{name}={value} is {entry.records}'s name: {sets}{remark}")
        elif entry.kind == "same_math" and not (entry.off and entry.off(value, None)):
            notes.append(f"{name}={value} ({entry.records}): {entry.ours}")
    return raw, notes, held


def refuse_record_env(held: list[tuple[str, str, RecordEnv]], hp: tg.Hyperparameters) -> None:
    """One line naming every variable refused and what to do instead."""
    lines = [f"{name}={value}: no equivalent here; {entry.ours}" for name, value, entry in held
             if not (entry.off and entry.off(value, hp))]
    if lines:
        raise tg.HyperparameterError("; ".join(lines))


def check_spelling(environ) -> None:
    """train_gpt.py's near-miss check with the records' names among the candidates (SMEAR_GATES: SMEAR_GATE)."""
    known = [f.name.upper() for f in fields(tg.Hyperparameters)] + list(RECORD_ENV)
    for key in environ:
        if key in known or key.startswith(tg.PROCESS_ENV_PREFIXES):
            continue
        if key.upper() in known:  # env names are case-sensitive: smear_gate=0 would be ignored
            raise tg.HyperparameterError(f"{key} is not read: knob names are upper case, set {key.upper()}")
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.88)
        if close:
            raise tg.HyperparameterError(f"{key} is not a knob of train_gpt.py; did you mean {close[0]}?")


def translate(environ) -> tuple[dict[str, str], list[str]]:
    """The environment COMMAND runs with (our knobs set, the records' names removed) and the note lines.
    Raises HyperparameterError naming every variable refused, or what train_gpt.py would refuse."""
    check_spelling(environ)
    raw, notes, held = apply_record_env(environ)
    env = {k: v for k, v in environ.items() if k not in RECORD_ENV} | raw  # COMPRESSOR, EVAL_ONLY_PATH: knobs too
    refuse_record_env(held, tg.Hyperparameters.from_env(env))  # some judgements need the knobs (MODEL_DIM)
    return env, notes


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("error: no command to run; usage: python scripts/record_env.py [--] COMMAND... (see --help)",
              file=sys.stderr)
        return 2
    try:
        env, notes = translate(os.environ)
    except tg.HyperparameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"record_env: {note}", file=sys.stderr)
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:  # exec returns only on failure: a command that is not there or not executable
        print(f"error: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
