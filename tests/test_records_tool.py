"""records/tool.py on real logs: three tiny CPU runs of train_gpt.py (seeds 1, 2, 3) make a record folder
(the script, the logs, submission.json from `summarize`, a README results table written here from the
logs); `check` passes on it and names the problem in each broken copy. `significance` against the
Seq4096 record's numbers and scipy; `plot` writes a PNG."""

import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, run_script, tiny_env

TOOL = REPO / "records" / "tool.py"
SEEDS = (1, 2, 3)
SEPARATOR = "=" * 100
SEQ4096 = ("1.20143417", "1.19945102", "1.20319508")  # records/.../2026-03-19_TrainingOptSeq4096/README.md
SEQ4096_THRESHOLD = "1.21113611"  # SOTA 1.21613611 - 0.005


def tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=120)


def load_tool():
    spec = importlib.util.spec_from_file_location("records_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def headline(text: str) -> tuple[float, float]:
    """(val_loss, val_bpb) of the last _exact line: the run's score."""
    loss, bpb = re.findall(r"^\S+_exact val_loss:(\S+) val_bpb:(\S+)$", text, re.M)[-1]
    return float(loss), float(bpb)


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """(script, {seed: log path}). The script is a snapshot of train_gpt.py, so an edit to the repo's copy
    during the runs cannot make the logged source differ from the shipped one. CODE_PACKING=raw: the counted
    code is the file that runs and ships."""
    root = tmp_path_factory.mktemp("record_runs")
    script = root / "train_gpt.py"
    shutil.copyfile(REPO / "train_gpt.py", script)

    def one(seed):
        env = tiny_env(tiny_dataset, root / f"run{seed}", SEED=seed, RUN_ID=f"seed{seed}", ITERATIONS=4,
                       CODE_PACKING="raw")
        return run_script(env, script=script)

    with ThreadPoolExecutor(len(SEEDS)) as pool:
        results = list(pool.map(one, SEEDS))
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    return script, {s: root / f"run{s}" / "logs" / f"seed{s}.txt" for s in SEEDS}


def readme_for(logs: dict) -> str:
    rows = ["# Tiny record", "", "| Seed | val_loss | val_bpb | Artifact bytes |", "|---:|---:|---:|---:|"]
    scores = {}
    for seed, path in sorted(logs.items()):
        text = path.read_text()
        scores[seed] = headline(text)
        total = re.search(r"^Total submission size \S+: (\d+) bytes", text, re.M).group(1)
        rows.append(f"| {seed} | {scores[seed][0]:.8f} | {scores[seed][1]:.8f} | {int(total):,} |")
    rows.append(f"| **Mean** | {statistics.fmean(v[0] for v in scores.values()):.8f} | "
                f"**{statistics.fmean(v[1] for v in scores.values()):.8f}** | |")
    return "\n".join(rows) + "\n"


@pytest.fixture
def record(runs, tmp_path):
    script, logs = runs
    folder = tmp_path / "2026-01-01_TinyRecord"
    folder.mkdir()
    shutil.copyfile(script, folder / "train_gpt.py")
    for path in logs.values():
        shutil.copyfile(path, folder / path.name)
    (folder / "requirements.txt").write_text("torch\n")  # a .txt that is not a log: ignored
    r = tool("summarize", *sorted(folder.glob("seed*.txt")), "-o", folder / "submission.json", "--name", "Tiny",
             "--author", "Test Author", "--github-id", "tester", "--blurb", "three seconds-long CPU runs")
    assert r.returncode == 0, r.stderr
    (folder / "README.md").write_text(readme_for(logs))
    return folder


def failures(folder, *extra) -> list[str]:
    r = tool("check", folder, *extra)
    assert r.returncode == 1, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_log_carries_the_script_exactly(runs):
    """train_gpt.py logs Path(__file__).read_text() and then '=' * 100, each plus a newline: the bytes
    before "\\n" + the separator are the file's bytes (its own final newline included)."""
    script, logs = runs
    text = logs[1].read_bytes().decode()
    cut = text.index("\n" + SEPARATOR + "\n")
    assert text[:cut].encode() == script.read_bytes() and text[:cut].endswith("\n")
    assert text[cut + len(SEPARATOR) + 2 :].startswith("Running Python ")
    mod = load_tool()
    log = mod.parse_log(logs[1])
    assert log.source == text[:cut] and log.runs == 1 and log.seed == 1 and log.run_id == "seed1"
    assert (log.val_loss, log.val_bpb) == headline(text) and log.steps == 4 and log.train_time_from == "last step"


def test_check_passes_on_a_complete_record(record):
    r = tool("check", record, "--min-seeds", 3)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"OK {record}: 3 log(s), seeds 1,2,3") and "requirements.txt" in r.stdout


@pytest.mark.parametrize("name", ["README.md", "submission.json", "train_gpt.py"])
def test_check_names_a_missing_file(record, name):
    (record / name).unlink()
    assert f"{name}: file: missing from {record}" in failures(record)


def test_check_fails_without_logs(record):
    for path in record.glob("seed*.txt"):
        path.unlink()
    assert any(line.startswith(f"{record}: logs: no train_gpt.py log") for line in failures(record))


def test_check_fails_an_artifact_over_the_cap(record):
    log = record / "seed2.txt"
    log.write_text(re.sub(r"^(Total submission size \S+: )\d+( bytes)", r"\g<1>16000001\2", log.read_text(),
                          flags=re.M))
    out = failures(record)
    assert any(line.startswith("seed2.txt: bytes_total: Total submission size int6+brotli: 16000001 bytes > 16000000")
               for line in out), out


def test_check_fails_a_submission_whose_val_bpb_disagrees_with_the_logs(record):
    path = record / "submission.json"
    sub = json.loads(path.read_text())
    sub["val_bpb"] = round(sub["val_bpb"] + 1e-6, 8)
    sub["seed_results"]["2"]["val_bpb"] += 1e-4
    path.write_text(json.dumps(sub))
    out = failures(record)
    assert any(line.startswith("submission.json: val_bpb: ") for line in out), out
    assert any(line.startswith("submission.json: seed_results[2].val_bpb: ") and "seed2.txt" in line for line in out)


def test_check_fails_a_train_gpt_that_differs_from_the_logged_source(record):
    with open(record / "train_gpt.py", "a") as f:
        f.write("# tuned after the runs\n")
    out = failures(record)
    differ = [line for line in out if line.startswith("train_gpt.py: source: differs from the source logged in ")]
    assert len(differ) == 3 and out[-1].startswith("FAILED") and len(out) == 4, out  # one line per log


def test_check_fails_a_readme_table_that_disagrees_with_the_logs(record):
    readme = record / "README.md"
    _, bpb = headline((record / "seed3.txt").read_text())
    readme.write_text(readme.read_text().replace(f"{bpb:.8f}", f"{bpb:.4f}"))
    out = failures(record)
    assert any(line.startswith("README.md: val_bpb (seed 3): ") for line in out), out


@pytest.mark.parametrize("mutation, expected", [
    ("appended_run", "seed1.txt: runs: the file holds 2 runs"),
    ("hessian_warning", "seed1.txt: gptq: calibration ran past the training budget"),
    ("packed_code_size", "seed1.txt: bytes_code: the run counted Code size: 1000 bytes"),
    ("train_cap", "seed1.txt: train_time: "),
    ("eval_budget", "seed1.txt: eval_time: total_eval_time:"),
    ("partial", "seed1.txt: val_bpb: the headline"),
])
def test_check_names_each_rule_broken(record, mutation, expected):
    log, extra = record / "seed1.txt", []
    text = log.read_text()
    if mutation == "appended_run":
        text += text
    elif mutation == "hessian_warning":
        text += "warning: the Hessian pass took 9.1s > GPTQ_RESERVE_SECONDS=4: training data was read after\n"
    elif mutation == "packed_code_size":
        text = re.sub(r"^Code size: \d+ bytes", "Code size: 1000 bytes", text, flags=re.M)
    elif mutation == "train_cap":
        extra = ["--train-cap", "0.001"]
    elif mutation == "eval_budget":
        extra = ["--eval-budget", "-1"]
    elif mutation == "partial":
        text = re.sub(r"^(\S+)_exact val_loss", r"\1_partial_exact val_loss", text, flags=re.M)
    log.write_text(text)
    out = failures(record, *extra)
    assert any(line.startswith(expected) for line in out), out


def test_summarize_writes_the_fields_check_requires(runs, tmp_path):
    script, logs = runs
    out = tmp_path / "submission.json"
    r = tool("summarize", *logs.values(), "-o", out, "--name", "N", "--author", "A", "--github-id", "G",
             "--blurb", "B")
    assert r.returncode == 0, r.stderr
    sub = json.loads(out.read_text())
    for name in ("name", "author", "github_id", "blurb", "date"):
        assert isinstance(sub[name], str) and sub[name]
    assert isinstance(sub["val_bpb"], float) and isinstance(sub["bytes_total"], int)
    scores = {s: headline(p.read_text()) for s, p in logs.items()}
    assert sub["val_bpb"] == round(statistics.fmean(v[1] for v in scores.values()), 8)
    assert sub["val_bpb_std"] == round(statistics.stdev(v[1] for v in scores.values()), 8)
    assert sub["seeds"] == list(SEEDS) and not list(tmp_path.glob(".*.tmp"))
    for seed, (loss, bpb) in scores.items():
        entry = sub["seed_results"][str(seed)]
        assert (entry["seed"], entry["val_loss"], entry["val_bpb"], entry["steps"]) == (seed, loss, bpb, 4)
        assert entry["bytes_code"] == script.stat().st_size and entry["bytes_total"] > entry["bytes_code"]
        assert entry["train_time_s"] > 0 and entry["eval_time_s"] >= 0 and entry["hardware"] == "1xcpu"
        assert entry["python"] == "{}.{}.{}".format(*sys.version_info[:3]) and entry["world_size"] == 1
    # a second summarize keeps the metadata already in the file
    r = tool("summarize", *logs.values(), "-o", out)
    assert r.returncode == 0 and json.loads(out.read_text())["author"] == "A"


def parse_fields(line: str) -> dict:
    return dict(re.findall(r"(\w+):(-?[\d.]+)", line))


def test_significance_reproduces_the_seq4096_record():
    from scipy import stats

    r = tool("significance", "--threshold", SEQ4096_THRESHOLD, *SEQ4096)
    assert r.returncode == 0, r.stderr
    head, test = r.stdout.splitlines()
    assert parse_fields(head)["mean"] == "1.20136009"
    got = parse_fields(test.split(":", 1)[1])
    # exact t is -9.0397; the record's 't=9.06' came from its rounded std (0.00187)
    assert 9.039 < abs(float(got["t"])) < 9.06 and got["df"] == "2" and abs(float(got["p"]) - 0.006) < 0.0002
    ref = stats.ttest_1samp([float(v) for v in SEQ4096], float(SEQ4096_THRESHOLD), alternative="less")
    assert float(got["t"]) == pytest.approx(ref.statistic, abs=1e-4) and float(got["p"]) == pytest.approx(ref.pvalue, abs=1e-6)
    assert "significant at p < 0.01" in test and "NOT" not in test


def test_welch_against_a_second_sample_matches_scipy():
    from scipy import stats

    other = ["1.2032", "1.2011", "1.2040", "1.2005"]
    r = tool("significance", *SEQ4096, "--against", *other)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[-1]
    got = parse_fields(line.split("):", 1)[1])
    ref = stats.ttest_ind([float(v) for v in SEQ4096], [float(v) for v in other], equal_var=False, alternative="less")
    assert float(got["t"]) == pytest.approx(ref.statistic, abs=1e-4)
    assert float(got["df"]) == pytest.approx(ref.df, abs=0.01) and float(got["p"]) == pytest.approx(ref.pvalue, abs=1e-6)
    assert ("NOT significant" in line) == (ref.pvalue >= 0.25)


def test_significance_reads_logs_too(runs):
    _, logs = runs
    r = tool("significance", "--threshold", "100", *logs.values())
    mean = statistics.fmean(headline(p.read_text())[1] for p in logs.values())
    assert r.returncode == 0 and parse_fields(r.stdout.splitlines()[0])["mean"] == f"{mean:.8f}"


def test_plot_writes_a_png_of_two_logs(runs, tmp_path):
    _, logs = runs
    out = tmp_path / "curves.png"
    r = tool("plot", logs[1], logs[2], "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_loads_neither_scipy_nor_matplotlib(record):
    code = ("import runpy, sys\nsys.argv = ['tool.py', 'check', sys.argv[1]]\ntry:\n"
            f"    runpy.run_path({str(TOOL)!r}, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, sorted(m for m in ('scipy', 'matplotlib', 'torch', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, str(record)], capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines()[-1] == "0 []", r.stdout + r.stderr
    source = (REPO / "train_gpt.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(scipy|matplotlib)\b", source, re.M)


GPU_RUN = """Running Python 3.12.3 PyTorch 2.9.1+cu128 device:cuda
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |
|   1  NVIDIA H100 80GB HBM3          On  |   00000000:2A:00.0 Off |                    0 |
hyperparameters:
  RUN_ID=h100_seed42
  MAX_WALLCLOCK_SECONDS=600.0
  GPTQ_CALIBRATION=train
attention_backend:fa3
world_size:8 grad_accum_steps:1 autocast_bf16:1
seed:42
step:4000/20000 train_loss:2.3112 train_time:300511ms step_avg:75.13ms
step:4000/20000 val_loss:2.2009 val_bpb:1.1012 train_time:300514ms step_avg:75.13ms
step:7891/20000 val_loss:2.1001 val_bpb:1.0811 train_time:594032ms step_avg:75.28ms
stopping_early: wallclock_cap train_time:594032ms step:7891/20000
GPTQ:collected 67 Hessians in 3.6s
Code size: 40078 bytes
Total submission size int6+brotli: 15912345 bytes
final_int6_brotli_roundtrip val_loss:2.1100 val_bpb:1.0860 eval_time:3625ms
final_int6_brotli_roundtrip_exact val_loss:2.11000001 val_bpb:1.08600002
quantized_ttt_phased val_loss:2.0700 val_bpb:1.0611 eval_time:455000ms
quantized_ttt_phased_exact val_loss:2.07000003 val_bpb:1.06110004
eval_timers: decompress:0.3s roundtrip:3.6s ngram_hints:0.0s eval_warmup:1.0s ttt_scoring_1:23.7s ttt:455.0s total:470.1s
total_eval_time:470.1s
"""


def test_parse_a_gpu_record_log(tmp_path):
    """The lines of an 8-GPU run (as train_gpt.py prints them, nvidia-smi's table included): the train time
    is the stopping_early one, the headline the last _exact line (TTT), the TTT timer is reported."""
    mod = load_tool()
    path = tmp_path / "train_seed42.log"
    path.write_text("print('hi')\n" + "\n" + SEPARATOR + "\n" + GPU_RUN)
    log = mod.parse_log(path)
    assert log.source == "print('hi')\n" and log.seed == 42 and log.label == "h100_seed42"
    assert (log.train_ms, log.steps, log.train_time_from) == (594032, 7891, "stopping_early")
    assert (log.headline_label, log.val_loss, log.val_bpb) == ("quantized_ttt_phased", 2.07000003, 1.06110004)
    assert (log.bytes_total, log.bytes_code, log.eval_s, log.ttt_s, log.hessian_s) == (15912345, 40078, 470.1, 455.0, 3.6)
    assert log.hardware == "8xNVIDIA H100 80GB HBM3" and (log.python, log.pytorch) == ("3.12.3", "2.9.1+cu128")
    assert [p[0] for p in log.val_points] == [4000, 7891] and log.train_points == [(4000, 2.3112, 300511)]
