"""Break one formula of train_gpt.py at a time and check that the tests notice (a test that cannot fail
is a defect). Each mutation is a small change of the forward, the optimizer, the export or an eval rule;
the script copies the repo to a temp dir, applies it there, runs the tests that should catch it, and
prints CAUGHT or MISSED. The working tree is never modified. A mutation names its file when it is not
train_gpt.py (the long-run module's, train_gpt_longrun.py). Only failing tests count as caught: the tests
must first pass unmutated, and a pytest that could not run them (a usage or collection error) is an ERROR.

    .venv/bin/python scripts/mutation_check.py                        # all mutations (~12 min on 2 cores)
    .venv/bin/python scripts/mutation_check.py lane_split_after_skip  # one
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIDELITY = ["tests/test_forward_fidelity.py"]
LEGALITY = ["tests/test_eval_legality.py"]
RESUME = ["tests/test_resume.py::test_restore_brings_back_every_state_and_the_next_steps_match",
          "tests/test_resume.py::test_the_fingerprint_holds_training_knobs_and_not_the_continuations"]
LONG_RUN = "train_gpt_longrun.py"
MIXERS = "train_gpt_mixers.py"
TOOLS = "train_gpt_tools.py"
LAUNCHER = "scripts/record_env.py"
RECORD_TESTS = ["tests/test_record_env.py", "tests/test_record_commands.py"]
SOURCES = ("train_gpt.py", LONG_RUN, MIXERS, "train_gpt_reference.py", TOOLS, LAUNCHER)
# name: (text in train_gpt.py, its replacement, tests that must fail[, the file holding the text])
MUTATIONS = {
    "lane_split_after_skip": (  # the split moved below the skip merge: lane M would start with the skip in it
        "            if plan.parallel[i] and lane_m is None:\n"
        "                lane_m = x  # the stream splits into lane A (x) and lane M before this skip merges (#1855)\n"
        "            if plan.num_encoder <= i and skips:  # skips merge into lane A only\n"
        "                j = i - plan.num_encoder\n"
        "                gate = None if self.skip_gates is None else self.skip_gates[j]\n"
        "                x = skip_merge(x, skips.pop(), self.skip_weights[j], gate)\n",
        "            if plan.num_encoder <= i and skips:\n"
        "                j = i - plan.num_encoder\n"
        "                gate = None if self.skip_gates is None else self.skip_gates[j]\n"
        "                x = skip_merge(x, skips.pop(), self.skip_weights[j], gate)\n"
        "            if plan.parallel[i] and lane_m is None:\n"
        "                lane_m = x\n", FIDELITY),
    "lane_carries_mixed_stream": ("lane_a = resid[0] * x + post[0, 0]", "lane_a = resid[0] * x_in + post[0, 0]", FIDELITY),
    "lane_final_mean": ("else (x + lane_m) / 2", "else (x + 0.9 * lane_m) / 2", FIDELITY),
    "lane_final_swapped": ('lane_m if self.hp.parallel_final_lane == "mlp"', 'x if self.hp.parallel_final_lane == "mlp"',
                           FIDELITY),
    "skip_lerp_direction": ("torch.lerp(skip, x, torch.sigmoid(gate)", "torch.lerp(x, skip, torch.sigmoid(gate)",
                            FIDELITY),
    "cross_repeat_index": ("model.cross_repeat_scales[b, plan.repeat[i] - 1]", "model.cross_repeat_scales[b, 0]",
                           FIDELITY, "train_gpt_reference.py"),
    "leaky_relu_square": ("self.negative_slope).square())", "self.negative_slope).abs())", FIDELITY),
    "adam_betas": ("betas=(hp.beta1, hp.beta2)", "betas=(hp.beta1, 0.95)", FIDELITY),
    "xsa_counts_applications": ("xsa = [b >= hp.num_layers - hp.xsa_last_n for b in order]",
                                "xsa = [i >= n - hp.xsa_last_n for i in range(n)]", FIDELITY),
    "segment_cut_from_row_start": ("return np.repeat(docs, counts) + within * span",  # also every span of the row
                                   "return np.union1d(np.repeat(docs, counts), np.arange(0, length, span))",
                                   ["tests/test_segments.py"]),
    "loader_bos_off_by_one": ("np.flatnonzero(row.numpy()[:-1] == BOS_ID)", "np.flatnonzero(row.numpy()[1:] == BOS_ID)",
                              ["tests/test_segments.py"]),
    "bf16_hessians": ("        with fp32_context(x.device):  # else x^T x would be a bf16 matmul under autocast\n",
                      "        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):\n",
                      ["tests/test_numerics.py"]),
    "eval_warm_up_skips_the_flat_row": ("    if hp.eval_rows_by_doc:  # eval_val's one flat row\n", "    if False:\n",
                                        ["tests/test_training.py", "-k", "plan_switches_mid_run"]),  # a recompile
    "no_damping_retry": ("GPTQ_DAMPING = (0.01, 0.1, 1.0)", "GPTQ_DAMPING = (0.01,)", ["tests/test_numerics.py"]),
    # the records' formulas on their opt-in paths
    "out_gate_stored_int8": ('"gate" and not hp.attn_out_gate_enabled', '"gate"',  # #1667's gate: fp16 in the records
                             ["tests/test_quantization.py"]),
    "baseline_controls_stored_fp16": ('fp32 = hp.quant_method != "gptq" and', "fp32 = False and",
                                      ["tests/test_quantization.py"]),
    "gptq_lite_codes_from_fp16_scales": ("(torch.quantile(w.abs(), q, dim=1) / qmax).clamp_min(1e-12)",
                                         "(torch.quantile(w.abs(), q, dim=1) / qmax).clamp_min(1e-12).half()",
                                         ["tests/test_quantization.py"], "train_gpt_reference.py"),
    "ttt_sgd_without_momentum": ("lr=hp.ttt_lora_lr, momentum=hp.ttt_beta1,", "lr=hp.ttt_lora_lr, momentum=0.0,",
                                 ["tests/test_eval_legality.py", "-k", "score_first_reference"]),
    "short_doc_length_without_bos": ("longest, limits = max(end - start for start, end in docs) + 1,",
                                     "longest, limits = max(end - start for start, end in docs),",
                                     ["tests/test_eval_legality.py", "-k", "short"]),
    "record_pool_without_in_flight_batches": ("np.cumsum(sizes), world_size - 1 if", "np.cumsum(sizes), 0 if",
                                              ["tests/test_record_commands.py", "-k", "pauses_for_global_sgd"]),
    # evaluation legality (#1017): each mutation makes one mode peek, double-count or skip
    "ttt_trains_the_last_chunk": ("[c > step + 1 for c in chunks[:rows]]", "[c > step for c in chunks[:rows]]",
                                  LEGALITY),
    "ttt_scores_the_next_target": ("index[i], positions[i], mask[i, : e - s] = s - a + slots,",
                                   "index[i], positions[i], mask[i, : e - s] = s - a + 1 + slots,", LEGALITY),
    "ttt_claims_skip_a_batch": ("itertools.count(0)", "itertools.count(0, 2)", LEGALITY),
    "phase_before_its_batches_are_scored": ("            while b < bound:\n", "            while b < bound - 1:\n",
                                            LEGALITY),
    "global_sgd_warm_up_stops_short": ("chunk / max(1, warm - 1)", "chunk / max(1, warm)",  # the peak never reached
                                       ["tests/test_eval_legality.py", "-k", "lr_warms_up"]),
    "ttt_window_sees_the_chunk_end": ("out.append((max(start, hi - hp.ttt_eval_seq_len), start + step * c, hi))",
                                      "out.append((max(start, hi + 1 - hp.ttt_eval_seq_len), start + step * c, "
                                      "min(hi + 1, end)))", LEGALITY),
    "hedge_counts_before_mixing": ("    mixed, experts = hedge.mix(",
                                   "    hedge.update(None, dev[\"prev2\"], dev[\"prev1\"], dev[\"targets\"])\n"
                                   "    mixed, experts = hedge.mix(", LEGALITY, MIXERS),
    "tilt_hints_the_target": ("dict(hints=self.hints[positions])",
                              "dict(hints=self.val.tokens.numpy()[positions].astype(np.int64))", LEGALITY, MIXERS),
    "ngram_hint_sees_the_target": ("before = np.maximum(idx - 1, 0)", "before = idx", LEGALITY, MIXERS),  # counts x_p
    "tilt_uses_the_next_hint": ("dict(hints=self.hints[positions])",
                                "dict(hints=self.hints[np.minimum(positions + 1, self.hints.size - 1)])", LEGALITY,
                                MIXERS),
    "sliding_drops_the_tail": ("    while end < num_targets:\n", "    while end + stride <= num_targets:\n", LEGALITY,
                               MIXERS),
    "plain_eval_drops_the_tail": ("total_seqs = -(-n // seq_len)", "total_seqs = n // seq_len", LEGALITY),
    "global_sgd_on_unscored_docs": ("phase_docs(queue, bound, prefix, hp)",
                                    "phase_docs(queue, bound + 1, prefix + hp.ttt_batch_size, hp)", LEGALITY),
    "phase_bound_floor": ("bound = int(np.searchsorted(held, docs)) + 1", "bound = int(np.searchsorted(held, docs))",
                          LEGALITY),
    "global_sgd_reads_past_its_documents": ("([] if close else [[docs[-1][1]]])",
                                            "([] if close else [np.arange(docs[-1][1], docs[-1][1] + 17)])", LEGALITY),
    "global_sgd_prepends_the_next_document": ("return np.concatenate([np.arange(s, e + close) for s, e in docs]",
                                              "return np.concatenate([np.arange(docs[-1][1], docs[-1][1] + 16)] + "
                                              "[np.arange(s, e + close) for s, e in docs]", LEGALITY),
    "ttt_counts_the_rescores": ("                logp = score(model, dev, span, adapters)\n",
                                "                logp = score(model, dev, span, adapters)\n"
                                "            meters.add(label, logp.detach(), dev)\n", LEGALITY),
    "hedge_entropy_expert": ("return torch.stack([logp, uni, bi, tri])",
                             "return torch.stack([logp, uni, bi, tri, (logp.exp() * logp).sum(-1, keepdim=True)"
                             ".expand_as(logp)])", LEGALITY, MIXERS),
    # the counted code and the knob checks
    "stub_digit_may_be_a_backslash": ("digits.append(digit + 32 + (digit > 1) + (digit > 58))",
                                      "digits.append(digit + 32 + (digit > 1))",
                                      ["tests/test_artifact.py", "-k", "stub_digits"], TOOLS),
    "value_embeds_with_loops_accepted": ("(self.num_loops <= 0 or not self.num_value_embeds,", "(True,",
                                         ["tests/test_hyperparameters.py::test_bad_values_fail_naming_the_variable"]),
    # knob ranges and checks that keep out what once failed after training or scored another model
    "loops_below_zero_accepted": ('num_loops: int = knob(2, "[0, inf)", model=True)',
                                  "num_loops: int = knob(2, model=True)",
                                  ["tests/test_hyperparameters.py", "-k", "once_failed"]),
    "ttt_chunk_past_its_context_accepted": (
        "(not self.ttt_enabled or chunk <= self.ttt_eval_seq_len,", "(True,",
        ["tests/test_hyperparameters.py::test_bad_values_fail_naming_the_variable"]),
    "ttt_batches_past_the_split_accepted": (
        'if hp.ttt_enabled and knob_list(hp, "ttt_eval_batches")[-1:] > [batches - 1]:', "if False:",
        ["tests/test_bpb.py", "-k", "ttt_batches_past_the_split"]),
    # the export's packages: asked for at startup (not after training), and not of a packed stub, which ships as is
    "export_packages_after_training": (
        "    codec(hp.compressor)  # the export's packages import now, not after training\n", "",
        ["tests/test_faults.py", "-k", "bad_input and no_zstandard"]),
    "flex_training_on_a_cpu_accepted": ('if hp.attn_backend == "flex" and rt.device.type != "cuda":', "if False:",
                                        ["tests/test_faults.py", "-k", "bad_input and flex_training"]),
    "stub_needs_the_minifier": ('if hp.code_packing == "brotli" and not Path(__file__).read_text(encoding="utf-8")',
                                "if True or Path(__file__).read_text(encoding='utf-8')",
                                ["tests/test_artifact.py", "-k", "packed_stub_reproduce"]),
    # resumable checkpoints: each drops one piece of state a continuation needs
    "resume_without_muon_momenta": ('zip(optimizers, [*shared["adam"], local["muon"]], strict=True)',
                                    'zip(optimizers[:-1], shared["adam"], strict=True)', RESUME, LONG_RUN),
    "resume_without_the_ema": ("average.sum[name].copy_(tensor)", "average.sum[name].copy_(average.sum[name])", RESUME,
                               LONG_RUN),
    "resume_loader_at_shard_start": ('self.cursor = (state["file_index"], state["pos"])',
                                     'self.cursor = (state["file_index"], None)', RESUME),
    "resume_without_rng": ('set_rng_state(local["rng"], rt)', "None", RESUME, LONG_RUN),
    "fingerprint_misses_the_optimizer": ('    "embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", '
                                         '"muon_wd", "embed_wd", "adam_wd",\n', "", RESUME, LONG_RUN),
    # the launcher of the records' commands: a translation that runs another recipe than the record's
    "record_local_lr_mult_dropped": ('"TTT_LORA_LR"), float, ()) * mult)}', '"TTT_LORA_LR"), float, ()))}',
                                     RECORD_TESTS, LAUNCHER),
    "record_short_chunks_by_targets": ('f"{c.strip()}@{n.strip()}"', 'f"{c.strip()}@{int(n) - 1}"', RECORD_TESTS,
                                       LAUNCHER),  # #2014's document length counts its BOS, as chunk_size_of does
}


def copy_sources(work: Path) -> None:
    for name in SOURCES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)  # scripts/ for the launcher
        shutil.copy(REPO / name, work / name)


def pytest(tests: list[str], work: Path) -> tuple[int, str]:
    """pytest's exit code (0: all passed, 1: some failed, else it could not run them) and its last line.
    One process (-n 0), stopping at the first failure: on xdist workers that stop exits 2, as an interrupt does."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-x", "-p", "no:cacheprovider", *tests],
                            cwd=work, capture_output=True, text=True)
    return result.returncode, (result.stdout.strip().splitlines() or ["no output"])[-1]


def unmutated_failure(chosen: list[str], work: Path) -> str | None:
    """The chosen mutations' tests on the sources as they are: one failing already would make every mutation
    look caught. Selections without -k share one pytest run."""
    copy_sources(work)
    selections = list(dict.fromkeys(tuple(MUTATIONS[name][2]) for name in chosen))
    plain = [test for tests in selections if "-k" not in tests for test in tests]
    for tests in ([plain] if plain else []) + [list(t) for t in selections if "-k" in t]:
        code, summary = pytest(tests, work)
        if code != 0:
            return f"{' '.join(tests)}: {summary}"
    return None


def run(name: str, old: str, new: str, tests: list[str], work: Path, file: str = "train_gpt.py") -> bool:
    copy_sources(work)  # every source as it is, then the one mutated
    source = (REPO / file).read_text()
    if source.count(old) != 1:
        raise SystemExit(f"{name}: the text to mutate is not found once in {file}; update this script")
    (work / file).write_text(source.replace(old, new))
    code, summary = pytest(tests, work)
    verdict = {0: "MISSED", 1: "CAUGHT"}.get(code, f"ERROR (pytest exit {code})")
    print(f"{name:28s} {verdict}   {summary}", flush=True)
    return code == 1


def main(argv: list[str]) -> int:
    chosen = argv or list(MUTATIONS)
    if unknown := [name for name in chosen if name not in MUTATIONS]:
        print(f"error: no mutation named {', '.join(unknown)} (they are: {', '.join(MUTATIONS)})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        skip = shutil.ignore_patterns("datasets", "__pycache__")  # data/datasets may hold gigabytes of shards
        for item in ("tests", "data", "records", "scripts", "docs"):
            shutil.copytree(REPO / item, work / item, ignore=skip)
        shutil.copy(REPO / "pytest.ini", work / "pytest.ini")
        if why := unmutated_failure(chosen, work):
            print(f"error: the tests fail with no mutation, so no failure would prove anything: {why}",
                  file=sys.stderr)
            return 2
        caught = [run(name, *MUTATIONS[name][:3], work, *MUTATIONS[name][3:]) for name in chosen]
    return 0 if all(caught) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
