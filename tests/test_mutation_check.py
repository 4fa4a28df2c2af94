"""scripts/mutation_check.py, the proof that the tests notice a broken rule: a mutation counts as caught only
when its tests fail (pytest exit 1), and only after the same tests passed on the sources as they are."""

import subprocess

import pytest

import mutation_check


def fake_pytest(monkeypatch, codes: list[int]) -> list[list[str]]:
    """pytest runs that end with these exit codes, in turn; returns the tests each run was given."""
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd[cmd.index("no:cacheprovider") + 1 :])
        return subprocess.CompletedProcess(cmd, codes[len(calls) - 1], stdout="1 failed in 0.1s\n", stderr="")

    monkeypatch.setattr(mutation_check.subprocess, "run", run)
    return calls


@pytest.mark.parametrize("code,verdict", [(1, "CAUGHT"), (0, "MISSED"), (4, "ERROR (pytest exit 4)"),
                                          (5, "ERROR (pytest exit 5)")])
def test_only_failing_tests_catch_a_mutation(code, verdict, tmp_path, monkeypatch, capsys):
    fake_pytest(monkeypatch, [code])  # 4: a usage error, 5: no test collected: neither proves anything
    caught = mutation_check.run("adam_betas", *mutation_check.MUTATIONS["adam_betas"][:3], tmp_path)
    assert caught is (code == 1)
    assert capsys.readouterr().out.split()[:-4] == ["adam_betas", *verdict.split()]
    assert mutation_check.MUTATIONS["adam_betas"][1] in (tmp_path / "train_gpt.py").read_text()  # what ran


def test_tests_failing_unmutated_stop_the_check_in_one_line(monkeypatch, capsys):
    calls = fake_pytest(monkeypatch, [1])
    assert mutation_check.main(["ttt_trains_the_last_chunk", "stub_digit_may_be_a_backslash"]) == 2
    assert calls == [["tests/test_eval_legality.py"]]  # the unmutated run, and no mutation after it
    err = capsys.readouterr().err
    assert err.startswith("error: the tests fail with no mutation") and err.count("\n") == 1


def test_unmutated_runs_share_one_pytest_where_no_k_selects(monkeypatch):
    calls = fake_pytest(monkeypatch, [0, 0, 1, 1, 1, 1])
    assert mutation_check.main(["ttt_trains_the_last_chunk", "lane_final_mean", "stub_digit_may_be_a_backslash",
                                "adam_betas"]) == 0
    assert calls[0] == ["tests/test_eval_legality.py", "tests/test_forward_fidelity.py"]
    assert calls[1] == ["tests/test_artifact.py", "-k", "stub_digits"]
    assert len(calls) == 2 + 4


def test_an_unknown_mutation_is_one_line(capsys):
    assert mutation_check.main(["no_such_mutation"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no mutation named no_such_mutation (they are: lane_split_after_skip,")
    assert err.count("\n") == 1
