"""Env-var knobs: parsing, clear errors naming the variable, and the record recipes as plain env files."""

from pathlib import Path

import pytest
import torch

import train_gpt as tg

RECIPES = Path(__file__).resolve().parents[1] / "records" / "recipes"


def read_env_file(path: Path) -> dict:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


def test_defaults_are_the_official_baseline():
    hp = tg.Hyperparameters.from_env({})
    assert (hp.vocab_size, hp.num_layers, hp.model_dim, hp.num_heads, hp.num_kv_heads, hp.mlp_mult) == \
        (1024, 9, 512, 8, 4, 2.0)
    assert (hp.train_batch_tokens, hp.train_seq_len, hp.iterations, hp.max_wallclock_seconds) == \
        (524_288, 1024, 20_000, 600.0)
    assert (hp.matrix_lr, hp.tied_embed_lr, hp.muon_momentum, hp.warmdown_iters) == (0.04, 0.05, 0.95, 1200)


def test_values_are_parsed_by_type():
    hp = tg.Hyperparameters.from_env({"MODEL_DIM": "256", "MLP_MULT": "3", "TIE_EMBEDDINGS": "false",
                                      "MATRIX_LR": "0.02", "COMPILE": "0"})
    assert (hp.model_dim, hp.mlp_mult, hp.tie_embeddings, hp.matrix_lr, hp.compile) == (256, 3.0, False, 0.02, "0")


@pytest.mark.parametrize("env, message", [
    ({"MODEL_DIM": "5l2"}, "MODEL_DIM='5l2' is not a valid int"),
    ({"MATRIX_LR": "fast"}, "MATRIX_LR='fast' is not a valid float"),
    ({"TIE_EMBEDDINGS": "maybe"}, "TIE_EMBEDDINGS='maybe' is not a valid bool"),
    ({"COMPILE": "yes"}, "COMPILE='yes' is not one of auto, 0, 1"),
    ({"MODEL_DIMS": "256"}, "MODEL_DIMS is not a knob of train_gpt.py; did you mean MODEL_DIM"),
    ({"NUM_HEADS": "6"}, "MODEL_DIM must be divisible by NUM_HEADS"),
    ({"TRAIN_BATCH_TOKENS": "1000"}, "TRAIN_BATCH_TOKENS must be a multiple of 8 \\* TRAIN_SEQ_LEN"),
])
def test_bad_values_fail_naming_the_variable(env, message):
    with pytest.raises(tg.HyperparameterError, match=message):
        tg.Hyperparameters.from_env(env)


def test_unrelated_and_launcher_variables_are_ignored():
    tg.Hyperparameters.from_env({"PATH": "/bin", "HOME": "/root", "RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "1"})


def test_every_knob_is_logged():
    lines = tg.describe_hyperparameters(tg.Hyperparameters.from_env({"SEED": "5"}))
    assert "  SEED=5" in lines
    assert len(lines) == 1 + len(tg.fields(tg.Hyperparameters))


@pytest.mark.parametrize("recipe", ["baseline.env", "seq4096.env"])
def test_record_recipes_parse_unchanged(recipe):
    env = read_env_file(RECIPES / recipe)
    hp = tg.Hyperparameters.from_env(env)
    for key, value in env.items():
        field_value = getattr(hp, key.lower())
        assert str(field_value) == value or tg.parse_knob(key, value, type(field_value), ()) == field_value


def test_seq4096_record_runs_as_env_vars():
    """The record's settings build the baseline-sized model and train on a 4096-token row as given."""
    hp = tg.Hyperparameters.from_env(read_env_file(RECIPES / "seq4096.env"))
    assert (hp.train_seq_len, hp.train_batch_tokens, hp.muon_momentum, hp.warmdown_iters) == (4096, 393216, 0.99, 3000)
    model = tg.build_model(hp, torch.device("cpu"))
    assert sum(p.numel() for p in model.parameters()) == 17_059_912
    x = torch.randint(0, hp.vocab_size, (1, hp.train_seq_len + 1))
    loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - torch.log(torch.tensor(1024.0)).item()) < 0.1
