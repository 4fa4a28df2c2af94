"""On a CUDA GPU (skipped elsewhere; run with `pytest -m gpu`, as scripts/gpu_smoke.sh does): the default
model compiles as training compiles it and the compiled loss and gradients equal eager ones within bf16
tolerance, without recompiling for a batch with another number of documents; FlexAttention, the default
kernel on CUDA without FA3, matches SDPA's document mask on packed rows, eager and compiled."""

import pytest
import torch

import train_gpt as tg
from conftest import randomized_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# The default recipe (every feature on) at a small size: loop 2-3 x3 from 35%, lanes from 4, XSA everywhere,
# SmearGate, sparse attention gate, skip gates; TRAIN_SEQ_LEN 256 so 512-token rows also cut at the span.
SMALL = {"VOCAB_SIZE": "256", "NUM_LAYERS": "6", "MODEL_DIM": "128", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
         "TRAIN_SEQ_LEN": "256", "TRAIN_BATCH_TOKENS": "1024", "LOOP_START": "2", "LOOP_END": "3",
         "PARALLEL_START_LAYER": "4", "ROPE_DIMS": "8"}


def packed_ids(seed: int, docs_per_row: int, shape=(2, 512)) -> torch.Tensor:
    """Random tokens with BOS at row start and at docs_per_row - 1 random places per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, int(SMALL["VOCAB_SIZE"]), shape, generator=g)
    ids[:, 0] = tg.BOS_ID
    for row in ids:
        row[torch.randperm(shape[1] - 1, generator=g)[: docs_per_row - 1] + 1] = tg.BOS_ID
    return ids.cuda()


def small_model(seed: int = 1) -> tg.GPT:
    """Zero-initialized projections and gates would make the model trivial: perturb every parameter."""
    return randomized_model(SMALL, std=0.05, seed=seed, device="cuda")


def loss_and_grad_norm(model, ids: torch.Tensor, plan_index: int, params) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss as train_step computes it: the segments cut on the host and passed in, as the loader does."""
    for p in params:
        p.grad = None
    cu = torch.from_numpy(tg.rows_cu_seqlens(ids[:, :-1].cpu().numpy(), int(SMALL["TRAIN_SEQ_LEN"]), True))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(ids[:, :-1], ids[:, 1:], plan_index=plan_index, cu_seqlens=tg.cu_seqlens_input(cu.cuda()))
    loss.backward()
    return loss.detach().float(), torch.sqrt(sum(p.grad.float().square().sum() for p in params if p.grad is not None))


def test_default_model_compiles_and_matches_eager():
    model = small_model()
    assert tg.attention_backend(model.hp, torch.device("cuda")) in ("fa3", "flex")  # what auto picks on CUDA
    compiled = tg.torch_compile(model, dynamic=False, fullgraph=True)  # as prepare_models compiles it
    params = list(model.parameters())
    ids = packed_ids(0, docs_per_row=5)
    for plan_index in range(len(model.plans)):  # plain, then looped
        eager_loss, eager_norm = loss_and_grad_norm(model, ids, plan_index, params)
        loss, norm = loss_and_grad_norm(compiled, ids, plan_index, params)
        assert torch.isfinite(loss) and torch.isfinite(norm)
        assert torch.allclose(loss, eager_loss, rtol=2e-2, atol=2e-2), (plan_index, loss.item(), eager_loss.item())
        assert torch.allclose(norm, eager_norm, rtol=5e-2), (plan_index, norm.item(), eager_norm.item())
    graphs = tg.compiled_graphs()
    for plan_index in range(len(model.plans)):  # another number of documents: the same graphs serve it
        loss_and_grad_norm(compiled, packed_ids(1, docs_per_row=11), plan_index, params)
    assert tg.compiled_graphs() == graphs, "a batch with another document count recompiled"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_flex_matches_sdpa_on_the_gpu(compiled):
    ids = packed_ids(2, docs_per_row=4, shape=(3, 512))
    ids[1, 200] = ids[1, 201] = tg.BOS_ID  # a one-token document
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (torch.randn(3, n, 512, 32, device="cuda", dtype=torch.bfloat16, generator=g) for n in (4, 2, 2))
    hp = {b: tg.Hyperparameters.from_env({**SMALL, "ATTN_BACKEND": b}) for b in ("flex", "sdpa")}
    ctx = {b: tg.attention_context(ids, hp[b]) for b in hp}
    assert ctx["flex"].block_mask is not None and ctx["sdpa"].segment_ids is not None
    attend = tg.torch_compile(tg.attend, fullgraph=True) if compiled else tg.attend
    got, want = attend(q, k, v, ctx["flex"]).float(), tg.attend(q, k, v, ctx["sdpa"]).float()
    assert torch.allclose(got, want, atol=2e-2), (got - want).abs().max().item()
