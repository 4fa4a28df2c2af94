"""train_gpt.py's reference systems, off by default: the baseline's int8 export (QUANT_METHOD=int8), #895's
shared-block recurrence (NUM_REPEATS, PROG_DEPTH), value embeddings (NUM_VALUE_EMBEDS), GPTQ-lite clip search
(QUANT_METHOD=gptq_lite) and SWA (SWA_ENABLED), and GPTQ calibration on the model's own samples
(GPTQ_CALIBRATION=self, #1019). Imported only when those knobs ask for it (train_gpt.optional_module);
a run that imports it counts its bytes too.
"""

import torch
from torch import Tensor, nn

from train_gpt import (
    BOS_ID,
    GPT,
    Hyperparameters,
    LayerPlan,
    Runtime,
    autocast_context,
    knob_list,
    quantize_rows,
)

INT8_CLIP_QUANTILE = 0.9999984  # baseline per-row clip; rare outliers would waste the int8 range
GPTQ_LITE_QUANTILES = (0.9999, 0.99995, 0.99999, 0.999995, 0.999999)  # #895's per-row clip candidates

def depth_stages(hp: Hyperparameters) -> list[int]:
    """Distinct repeat counts of the #895 schedule, in order, ending at full depth for eval and export."""
    return list(dict.fromkeys([r for _, r in knob_list(hp, "prog_depth")] + [hp.num_repeats]))

def recurrent_plans(hp: Hyperparameters) -> tuple[LayerPlan, ...]:
    """#895: all blocks NUM_REPEATS times, a stage per PROG_DEPTH depth; no U-Net skips, XSA on the last
    XSA_LAST_N applications of the current depth."""
    plans = []
    for r in depth_stages(hp):
        n, order = hp.num_layers * r, tuple(range(hp.num_layers)) * r
        first_parallel = next((i for i in range(n) if 0 < hp.parallel_start_layer <= order[i]), n)
        plans.append(LayerPlan(order, tuple(i // hp.num_layers for i in range(n)), 0,
                               tuple(i >= n - hp.xsa_last_n for i in range(n)), tuple(i >= first_parallel for i in range(n))))
    return tuple(plans)

def depth_plan_index(frac: float, hp: Hyperparameters) -> int:
    """PROG_DEPTH: the plan of the first entry whose fraction is above frac; past all, the last entry's."""
    stages = knob_list(hp, "prog_depth")
    return depth_stages(hp).index(next((r for f, r in stages if frac < f), stages[-1][1]))

def add_recurrence(model: GPT, hp: Hyperparameters):
    """#895's per-application inputs, registered on the model itself (the same state_dict names; called before the
    blocks are built, so the tables' draws come where #895's do: the same seeded init): zero-init loop embeddings
    and cross-repeat scales, and the value-embedding tables (bf16 like tok_emb) with their scales. Returns the hook
    GPT.hidden calls."""
    dim, depth = hp.model_dim, hp.num_layers * hp.num_repeats
    if hp.num_repeats > 1:
        model.loop_embed = nn.Parameter(torch.zeros(depth, dim))
        model.cross_repeat_scales = nn.Parameter(torch.zeros(hp.num_layers, hp.num_repeats - 1, dim))
    model.value_embeds.extend(nn.Embedding(hp.vocab_size, dim).to(torch.bfloat16) for _ in range(hp.num_value_embeds))
    if hp.num_value_embeds:
        model.value_scales = nn.Parameter(torch.zeros(depth, hp.num_value_embeds, dim))
    return recurrent_inputs

def recurrent_inputs(model: GPT, ids: Tensor, x0: Tensor, plan: LayerPlan):
    """One forward's add(x, i): the stream entering application i plus its loop embedding, the scaled output of
    this block's previous repeat, and the scaled value embeddings of the tokens."""
    hp, values = model.hp, [table(ids).to(x0.dtype) for table in model.value_embeds]
    entered = []  # the stream entering each application: the previous application's output

    def add(x: Tensor, i: int) -> Tensor:  # in #895's order: loop embedding, value embeddings, previous repeat
        entered.append(x)
        if hp.num_repeats > 1:
            x = x + model.loop_embed[i].to(x.dtype)
        for k, v in enumerate(values):
            x = x + model.value_scales[i, k].to(x.dtype) * v
        if hp.num_repeats > 1 and plan.repeat[i] > 0:  # block b last ran at i - NUM_LAYERS; its output entered next
            b, last_out = plan.order[i], entered[i - hp.num_layers + 1]
            x = x + model.cross_repeat_scales[b, plan.repeat[i] - 1].to(x.dtype) * last_out
        return x
    return add

def quantize_int8_per_row(w: Tensor) -> dict[str, Tensor]:
    """Baseline export: clip each row at a high quantile of |w|, 127 levels, fp16 scale."""
    w = w.float()
    clip = torch.quantile(w.abs(), INT8_CLIP_QUANTILE, dim=1)
    scale = (clip / 127.0).clamp_min(1.0 / 127.0)  # codes from the fp32 scale, then stored fp16 (as the baseline)
    return {"q": quantize_rows(torch.clamp(w, -clip[:, None], clip[:, None]), scale, 127), "scale": scale.half()}

def quantize_gptq_lite(w: Tensor, qmax: int) -> dict[str, Tensor]:
    """#895: per row, try clips at a few |w| quantiles and keep the one with the least squared error."""
    w = w.float()
    scales = torch.stack([(torch.quantile(w.abs(), q, dim=1) / qmax).clamp_min(1e-12)
                          for q in GPTQ_LITE_QUANTILES])  # [candidates, rows]; fp32 until stored, as #895's
    codes = torch.stack([quantize_rows(w, scale, qmax) for scale in scales])
    best = ((codes.float() * scales[..., None] - w) ** 2).sum(-1).argmin(0)  # the first on ties
    rows = torch.arange(w.size(0))
    return {"q": codes[best, rows], "scale": scales[best, rows].half()}

def quantize_reference(w: Tensor, qmax: int, hp: Hyperparameters) -> dict[str, Tensor]:
    """QUANT_METHOD=int8 or gptq_lite: one large matrix."""
    return quantize_int8_per_row(w) if hp.quant_method == "int8" else quantize_gptq_lite(w, qmax)

class SWA:
    """#895's SWA: sums the weights every SWA_EVERY steps once the LR multiplier is below SWA_START_FRAC, full
    depth only; the average counts the final weights once more. train_gpt.WeightAverage's interface."""

    def __init__(self, model: nn.Module, hp: Hyperparameters, log):
        self.hp, self.log, self.count = hp, log, 0
        self.sum = {k: torch.zeros_like(v.detach().float()) for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, lr_scale: float, full_depth: bool) -> None:
        if lr_scale < self.hp.swa_start_frac and full_depth and step % self.hp.swa_every == 0:
            if self.count == 0:
                self.log(f"swa:start step:{step}")
            for k, v in model.state_dict().items():
                self.sum[k] += v.float()
            self.count += 1

    @torch.no_grad()
    def average(self, model: nn.Module) -> dict[str, Tensor] | None:
        if self.count == 0:  # the multiplier never went below SWA_START_FRAC at full depth on a SWA_EVERY step
            self.log("warning: swa collected no checkpoint; the final weights are used")
            return None
        self.log(f"swa: averaging {self.count + 1} checkpoints")  # the final weights count once more
        return {k: ((self.sum[k] + v.float()) / (self.count + 1)).to(v.dtype) for k, v in model.state_dict().items()}

@torch.no_grad()
def self_generated_batches(model: GPT, hp: Hyperparameters, rt: Runtime) -> list[Tensor]:
    """Calibration on the model's own samples (temperature 0.8, from BOS), one sequence per batch: no
    data access at all (accepted in #1019). Quadratic without a KV cache, so meant for modest lengths."""
    gen = torch.Generator(device=rt.device).manual_seed(hp.seed)
    seqs = torch.full((hp.gptq_calibration_batches, 1), BOS_ID, dtype=torch.int64, device=rt.device)
    for _ in range(hp.train_seq_len - 1):
        with autocast_context(rt):
            logits = model.logits(model.hidden(seqs)[:, -1])
        nxt = torch.multinomial(torch.softmax(logits / 0.8, dim=-1), 1, generator=gen)
        seqs = torch.cat([seqs, nxt], dim=1)
    return list(seqs.split(1))
