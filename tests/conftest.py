"""Shared fixtures: a tiny SentencePiece tokenizer trained on awkward text, and shards built with it.

Everything is generated under pytest's tmp dirs; nothing reads ../shared or the network."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

import shard_io

REPO = Path(__file__).resolve().parents[1]

# pytest.ini runs the suite on pytest-xdist workers (-n auto): they share the cores, so each takes its share of
# torch threads, as do the processes its tests start (two workers of two threads each on 2 cores: 678 s, of one
# thread each: 447 s; the suite in one process: 837 s).
if WORKERS := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 0)):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // WORKERS))
    os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())

TINY_VOCAB = 320

WORDS = ["the", "model", "byte", "token", "golf", "naïve", "café", "Zürich", "日本語", "ü", "🙂", "🚀",
         "ﬁ", "Ω", "x²", "naïveté", "𝔘nicode", "tab\there", "a", "an", "of", "to", "in", "data"]


def make_documents(seed: int, count: int) -> list[str]:
    """Documents mixing ASCII, accents, CJK, emoji, a 4-byte math letter, ligatures, tabs, newlines,
    doubled spaces and a leading space: everything the byte count could get wrong."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 40))]
        text = " ".join(words)
        if i % 7 == 3:
            text = " " + text
        if i % 5 == 1:
            text = text.replace(" ", "  ", 1) + "\nsecond line."
        docs.append(text)
    return docs


def train_tiny_tokenizer(docs: list[str], out_dir: Path, vocab_size: int = TINY_VOCAB, **options) -> Path:
    """options: SentencePiece trainer options over ours (a tokenizer the run must refuse)."""
    prefix = out_dir / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for d in docs for line in d.split("\n") if line]), model_prefix=str(prefix),
        **{"model_type": "bpe", "vocab_size": vocab_size, "byte_fallback": True, "character_coverage": 0.98,
           "normalization_rule_name": "identity", "remove_extra_whitespaces": False, "add_dummy_prefix": True,
           "pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, "num_threads": 1, "minloglevel": 2, **options})
    return prefix.with_suffix(".model")


def encode_stream(sp: spm.SentencePieceProcessor, docs: list[str]) -> list[int]:
    """The shard convention: BOS before every document, no EOS."""
    stream = []
    for doc in docs:
        stream += [sp.bos_id()] + sp.encode(doc)
    return stream


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """dir with tokenizer.model, two train shards and one val shard (val = its own documents)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    docs = make_documents(seed=0, count=900)
    model_path = train_tiny_tokenizer(docs, root)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    val_docs, train_docs = docs[:100], docs[100:]
    train_stream = encode_stream(sp, train_docs)
    half = len(train_stream) // 2
    shard_io.write_shard(root / "fineweb_train_000000.bin", train_stream[:half])
    shard_io.write_shard(root / "fineweb_train_000001.bin", train_stream[half:])
    shard_io.write_shard(root / "fineweb_val_000000.bin", encode_stream(sp, val_docs))
    return root


# Every test pins its numeric mode: AUTOCAST=auto would make the suite depend on whether the host CPU has
# native bf16. Tests of the export and training paths run under both modes (bf16 is emulated where the
# CPU lacks it: slower, same results), so a bf16-only bug cannot hide on a host without bf16.
NUMERIC_MODES = ("off", "bf16")


@pytest.fixture(params=NUMERIC_MODES)
def numeric_mode(request) -> str:
    return request.param


def cpu_runtime(autocast: bool | str = False, rank: int = 0, world_size: int = 1):
    """The Runtime of one CPU process (rank of world_size; a real process group only where a test starts one);
    autocast: a bool or a numeric mode ("off", "bf16")."""
    import train_gpt as tg

    return tg.Runtime(rank=rank, world_size=world_size, local_rank=rank, device=tg.torch.device("cpu"),
                      autocast=autocast in (True, "bf16"))


def randomized_model(env: dict, std: float = 0.3, seed: int = 1, device: str = "cpu"):
    """The model of env with every parameter moved off its init by seeded N(0, std) noise: zero-initialized
    gates and projections would hide most bugs."""
    import train_gpt as tg

    model = tg.build_model(tg.Hyperparameters.from_env(env), tg.torch.device(device))
    gen = tg.torch.Generator().manual_seed(seed)
    with tg.torch.no_grad():
        for p in model.parameters():
            p.add_((tg.torch.randn(p.shape, generator=gen) * std).to(p.device, p.dtype))
    return model


def without_package(workdir: Path, name: str) -> dict:
    """Env that hides an installed package from a child process, as on a machine without it: a module of its name
    on PYTHONPATH that raises ImportError."""
    (workdir / "blocked").mkdir(exist_ok=True)
    (workdir / "blocked" / f"{name}.py").write_text("raise ImportError('not installed')\n")
    return {"PYTHONPATH": str(workdir / "blocked")}


def tiny_env(dataset: Path, workdir: Path, **overrides) -> dict:
    """Env for a seconds-long CPU run of train_gpt.py on the tiny dataset (fp32 unless AUTOCAST=bf16). It counts
    the raw source (CODE_PACKING=raw): minifying 2,600 lines takes 3.6 s a run here, a quarter of a tiny run; the
    tests of the shipped stub, and tiny_run, pack as the default recipe does."""
    env = dict(DATA_PATH=str(dataset), TOKENIZER_PATH=str(dataset / "tokenizer.model"), VOCAB_SIZE=TINY_VOCAB,
               AUTOCAST="off", CODE_PACKING="raw",
               NUM_LAYERS=2, MODEL_DIM=32, NUM_HEADS=2, NUM_KV_HEADS=1, TRAIN_SEQ_LEN=32,
               TRAIN_BATCH_TOKENS=1024, VAL_BATCH_SIZE=4096, ITERATIONS=6, WARMUP_STEPS=1, VAL_LOSS_EVERY=0,
               TRAIN_LOG_EVERY=1, MAX_WALLCLOCK_SECONDS=0, WARMDOWN_FRAC=0, GPTQ_RESERVE_SECONDS=0, EMA_DECAY=0,
               NUM_LOOPS=0, KEEP_FLOAT_MAX_NUMEL=1024, TTT_ENABLED=0, RUN_ID="tiny", ARTIFACT_DIR=str(workdir), SEED=7)
    env.update(overrides)
    return {k: str(v) for k, v in env.items()}


def run_script(env: dict, args=(), nproc: int = 1, timeout: int = 300, script: Path = REPO / "train_gpt.py"):
    """Run train_gpt.py (or its packed stub) as users do: plain python, or torchrun with nproc CPU
    processes (gloo). Returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    full_env.update(env, OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(script), *args]
    Path(env["ARTIFACT_DIR"]).mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=env["ARTIFACT_DIR"])


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    """One whole run of train_gpt.py per numeric mode, shared by the tests that only read what it printed and
    wrote (whole runs dominate the suite's time): mode -> (env, CompletedProcess). 30 steps, a val pass at
    steps 0 and 30, a train line every 10. Readers write into their own ARTIFACT_DIR, never into env's."""
    runs = {}

    def run(mode: str):
        if mode not in runs:
            workdir = tmp_path_factory.mktemp(f"tiny_run_{mode}")
            env = tiny_env(tiny_dataset, workdir, ITERATIONS=30, VAL_LOSS_EVERY=30, TRAIN_LOG_EVERY=10, AUTOCAST=mode,
                           CODE_PACKING="brotli")
            runs[mode] = env, run_script(env)
        return runs[mode]

    return run
