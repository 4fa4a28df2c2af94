"""The built-in demo on the synthetic corpus: the trainer's byte count equals the floor's denominator,
and a trained model's val_bpb falls with training but stays above the exact entropy floor."""

import json
import re

import sentencepiece as spm

import synthetic_corpus
import train_gpt as tg
from conftest import run_script


def test_demo_val_bpb_falls_but_stays_above_the_floor(tmp_path, numeric_mode):
    data = tmp_path / "synthetic"
    report = synthetic_corpus.build_corpus(data, seed=3, train_docs=600, val_docs=40, vocab_size=512)
    floor = json.loads((data / "floor.json").read_text())["val_floor_bpb"]
    assert floor == report["val_floor_bpb"]

    # The floor divides by the val text's UTF-8 bytes; the trainer must count exactly those bytes.
    sp = spm.SentencePieceProcessor(model_file=str(data / "tokenizer.model"))
    val_tokens = tg.read_shard(data / "fineweb_val_000000.bin")
    lut_bytes = int(tg.token_bytes_from_luts(val_tokens, tg.build_byte_luts(sp, 512))[1:].sum())
    assert lut_bytes == report["val_bytes"]

    # The default recipe, scaled down: loop on from 35%, two lanes, XSA, gates, Polar Express, EMA.
    env = dict(DATA_PATH=data, TOKENIZER_PATH=data / "tokenizer.model", VOCAB_SIZE=512, NUM_LAYERS=3,
               MODEL_DIM=64, NUM_HEADS=2, NUM_KV_HEADS=1, LOOP_START=1, LOOP_END=1, PARALLEL_START_LAYER=2,
               TRAIN_SEQ_LEN=128, TRAIN_BATCH_TOKENS=2048, ITERATIONS=30, VAL_LOSS_EVERY=15, WARMUP_STEPS=0,
               MAX_WALLCLOCK_SECONDS=0, GPTQ_RESERVE_SECONDS=0, EMA_DECAY=0.8, MUON_MOMENTUM_WARMUP_STEPS=10,
               VAL_BATCH_SIZE=65536, TRAIN_LOG_EVERY=0, TTT_ENABLED=0, RUN_ID="demo", ARTIFACT_DIR=tmp_path,
               AUTOCAST=numeric_mode, CODE_PACKING="raw")  # not what it tests, and packing takes 3.6 s
    result = run_script({k: str(v) for k, v in env.items()})
    assert result.returncode == 0, result.stderr[-2000:]
    curve = [float(v) for v in re.findall(r"step:\d+/30 val_loss:\S+ val_bpb:(\S+)", result.stdout)]
    final = float(re.search(r"final_\w+_roundtrip_exact val_loss:\S+ val_bpb:(\S+)", result.stdout).group(1))
    assert len(curve) == 3 and curve[0] > curve[1] > curve[2]
    assert final > floor
