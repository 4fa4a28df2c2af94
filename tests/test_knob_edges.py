"""scripts/knob_edges.py, the whole-run check of every knob at its edges: the values it tries lie inside the
ranges, every knob it may try is tried, and only a finite score or one error line passes."""

import subprocess
from dataclasses import fields

import pytest

import knob_edges
import train_gpt as tg


@pytest.mark.parametrize("kind, bounds, values", [
    (int, "(0, inf)", [1]), (int, "[1, inf)", [1]), (int, "[2, 8]", [2, 8]), (float, "[0, 1)", [0.0, 0.999]),
    (float, "(0, 1]", [0.001, 1.0]), (int, "[0, 1e12]", [0, 10**12]), (int, "", [0, -1]), (float, "", [0.0, -1.0]),
])
def test_edges_are_the_closed_ends_and_the_first_values_inside_open_ones(kind, bounds, values):
    assert knob_edges.edge_values(kind, bounds) == values


def test_every_case_is_a_value_the_knob_admits_and_every_testable_knob_has_one():
    cases = knob_edges.cases()
    by_name = {f.name.upper(): f for f in fields(tg.Hyperparameters)}
    for name, value in cases:
        f = by_name[name]
        parsed = tg.parse_knob(name, value, type(f.default), f.metadata["choices"])
        tg.check_bounds(name, parsed, f.metadata["bounds"])  # raises if the script tried an outside value
    skipped = {n for n in by_name if n in knob_edges.SKIPPED or n.startswith(knob_edges.LONG_RUN)
               or n.lower() in tg.LIST_KNOBS}
    for name in set(by_name) - skipped - {name for name, _ in cases}:  # only where the edges are the default
        f = by_name[name]
        default = knob_edges.BASE.get(name, f.default)
        assert knob_edges.edge_values(type(f.default), f.metadata["bounds"]) == [type(f.default)(default)], name
    assert ("GATE_WINDOW", "1") in cases and ("NUM_LOOPS", "-1") not in cases and ("TTT_OPTIMIZER", "sgd") in cases


def completed(code: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], code, stdout=stdout, stderr=stderr)


@pytest.mark.parametrize("result, verdict", [
    (completed(0, "x_exact val_loss:4.1 val_bpb:3.2\ny_exact val_loss:4.0 val_bpb:3.1\n"), None),
    (completed(0, "x_exact val_loss:4.1 val_bpb:3.2\ny_exact val_loss:nan val_bpb:nan\n"), "a non-finite score"),
    (completed(0, "step:3/3 train_loss:4.2\n"), "no _exact score"),
    (completed(2, stderr="error: GATE_WINDOW=0 must be in (0, inf)\n"), None),
    (completed(2, stderr="error: one\nerror: two\n"), "exit 2 with 2 error lines"),
    (completed(1, stderr="Traceback (most recent call last):\n  ...\nIndexError: amax()\n"), "traceback"),
    (completed(2, stderr="Traceback (most recent call last):\nerror: late\n"), "traceback"),
    (completed(-9), "exit -9"),
])
def test_only_a_finite_score_or_one_error_line_passes(result, verdict):
    assert knob_edges.verdict(result) == verdict
