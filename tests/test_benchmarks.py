"""`python -m benchmarks --smoke` end to end: every section measures at tiny sizes and RESULTS.md holds what it measured.

One real run of the aggregator (a subprocess, as CI and a person run it) serves every test here. No
test reads a time value: only that the figures exist, come from the stored rows and reach the page.
"""

import importlib.metadata
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

from benchmarks.__main__ import SECTIONS  # every section the aggregator runs
from studies.report.png import browser_path

MUST_PLOT = ("efficiency", "search_quality", "default_search")  # the issue asks for a plot of the efficiency and regret comparisons
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The smoke run takes about 3 minutes on 2 idle cores; the limits only stop a hung run on a busy machine.
RUN_LIMIT_S = 900
pytestmark = pytest.mark.timeout(RUN_LIMIT_S + 60)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """RESULTS.md's text and the folder of one smoke run of every section."""
    out = tmp_path_factory.mktemp("benchmarks")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_LIMIT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"python -m benchmarks --smoke failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    (out / "stderr.txt").write_text(result.stderr)
    return (out / "RESULTS.md").read_text(), out


def section_text(results: str, title: str) -> str:
    """The Markdown of the section headed ``title``, up to the next section."""
    match = re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", results, re.MULTILINE | re.DOTALL)
    assert match, f"RESULTS.md has no section {title!r}"
    return match.group(0)


def record(out, section: str) -> dict:
    return json.loads((out / "results" / f"{section}.json").read_text())


def numbers(value) -> list[float]:
    """Every number in a row, nested lists and dicts included."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return []


def table_numbers(text: str) -> list[str]:
    """Every number written in the Markdown tables of ``text`` (``0.912 (12.3 s, 40)`` holds three)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [n for row in rows for n in re.findall(r"-?\d[\d,]*(?:\.\d+)?", row)]


def shown_as(value: float, cell: str) -> bool:
    """Whether ``cell`` shows ``value`` at its own precision (``1,234.5`` shows 1234.49)."""
    text = cell.replace(",", "")
    decimals = len(text.partition(".")[2])
    return round(value, decimals) == float(text)


def test_results_describe_the_machine(smoke_run):
    results, _ = smoke_run
    machine = section_text(results, "Machine")
    for key in ("CPU", "memory", "OS", "GPU", "Python"):
        assert re.search(rf"^\| {key} \| \S.* \|$", machine, re.MULTILINE), f"no {key} in the machine block"
    for package in ("torch", "ray", "optuna", "pytorch-lightning", "optuna-dashboard", "numpy", "scipy"):
        assert f"| {package} | {importlib.metadata.version(package)} |" in machine


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_shows_its_rows_command_and_plots(smoke_run, section):
    from benchmarks.__main__ import section_module

    module = section_module(section)
    assert isinstance(module.TITLE, str) and all(callable(getattr(module, name)) for name in ("measure", "table", "plots"))
    results, out = smoke_run
    stored = record(out, section)
    text = section_text(results, stored["title"])
    assert f"`python -m benchmarks --only {section} --smoke`" in text
    assert stored["rows"], f"{section} measured no rows"
    values = [n for row in stored["rows"] for n in numbers(row)]
    shown = table_numbers(text)
    assert shown, f"{section}'s table has no numbers"
    fractional = [n for n in shown if "." in n] or shown  # a fraction cannot match a row by chance, as a small count can
    assert any(shown_as(v, n) for n in fractional for v in values), f"no number of {section}'s table comes from its rows"
    if section in MUST_PLOT:
        assert stored["plots"], f"{section} has no plot"
    # PNGs need a Chrome or Chromium: where there is one they must be written and linked; where not, neither.
    browser = browser_path() is not None
    assert stored["pngs"] == (browser and bool(stored["plots"]))
    for stem in stored["plots"]:
        html = out / "results" / f"{stem}.html"
        png = out / "results" / f"{stem}.png"
        assert f"(results/{stem}.html)" in text
        assert "Plotly.newPlot" in html.read_text()
        if browser:
            assert f"(results/{stem}.png)" in text
            assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5_000
        else:
            assert f"(results/{stem}.png)" not in text and not png.exists()
    if stored["plots"] and not browser:
        assert f"benchmarks: {section}: PNGs skipped" in (out / "stderr.txt").read_text()


def test_storage_scale_times_every_size_storage_and_reader(smoke_run):
    from benchmarks.storage_scale import CLI_COMMANDS, DASHBOARD_DETAIL, DASHBOARD_LIST, SMOKE_SIZES, STORAGES
    from studies.samplers import DEFAULT_SAMPLER

    results, out = smoke_run
    rows = record(out, "storage_scale")["rows"]
    latency = {(r["storage"], r["sampler"], r["trials"], r["part"]) for r in rows if r["kind"] == "latency"}
    timed = {(s, DEFAULT_SAMPLER) for s in STORAGES} | {("sqlite", "tpe")}  # TPE, the earlier default, for comparison
    assert latency == {(s, m, n, p) for s, m in timed for n in SMOKE_SIZES for p in ("choice", "ask", "tell", "ask+tell")}
    readers = {(r["storage"], r["command"]): r for r in rows if r["kind"] == "reader"}
    assert set(readers) == {(s, c) for s in STORAGES for c in [*CLI_COMMANDS, DASHBOARD_LIST, DASHBOARD_DETAIL]}
    text = section_text(results, record(out, "storage_scale")["title"])
    for command in [*CLI_COMMANDS, DASHBOARD_LIST, DASHBOARD_DETAIL]:
        line = next(line for line in text.splitlines() if line.startswith(f"| {command} |"))
        assert [f"{readers[(s, command)]['seconds']:.2f}" for s in STORAGES] == [
            c.strip() for c in line.strip("|").split("|")[1:]
        ]


def test_trainers_measure_every_family_and_say_whether_a_gpu_was_there(smoke_run):
    import torch

    from benchmarks.trainers import FAMILIES, SMOKE_EPOCHS

    results, out = smoke_run
    rows = record(out, "trainers")["rows"]
    cpu = {r["space"]: r for r in rows if r["kind"] == "epoch" and r["device"] == "cpu"}
    assert set(cpu) == set(FAMILIES)
    for row in cpu.values():
        assert len(row["epoch_seconds"]) == SMOKE_EPOCHS
        assert row["peak_rss_mb"] >= row["ready_rss_mb"] > 100  # torch alone is over 100 MB resident
    text = section_text(results, record(out, "trainers")["title"])
    # Without a GPU the page must say so; with one, the GPU rows and the packing table must be there.
    if torch.cuda.is_available():
        assert {r["space"] for r in rows if r["kind"] == "epoch" and r["device"] == "gpu"} == set(FAMILIES)
        assert "trials on one GPU" in text
    else:
        assert "No GPU was available for this run" in text


def test_search_quality_runs_every_method_on_every_family_at_three_budget_fractions(smoke_run):
    from benchmarks.search_quality import DOCUMENTED_ONLY, FRACTIONS, METHODS

    results, out = smoke_run
    rows = record(out, "search_quality")["rows"]
    families = {row["family"] for row in rows}
    assert families == {"synthetic", "recorded", "yahpo", "generated"}
    measured = set(METHODS) - set(DOCUMENTED_ONLY)  # no task of these families documents a config
    assert {(row["family"], row["method"]) for row in rows} == {(f, m) for f in families for m in measured}
    for row in rows:
        assert row["epochs_spent"] <= row["epochs_budget"]
        regrets = [row[f"regret_{fraction:g}"] for fraction in FRACTIONS]
        assert all(r >= 0 for r in regrets if r is not None)
        assert row["curve"][-1] == regrets[-1]  # the anytime curve ends where the full budget's regret is
    text = section_text(results, record(out, "search_quality")["title"])
    for family in families:
        assert f"{family}: " in text  # the targets, judged family by family


@pytest.mark.parametrize("section", ["anchors", "resume_anchors"])
def test_anchors_run_beside_the_default_and_random_asha_on_the_same_task_and_seed(smoke_run, section):
    import importlib

    from benchmarks.anchors import methods

    anchors = importlib.import_module(f"benchmarks.{section}").ANCHORS
    results, out = smoke_run
    rows = record(out, section)["rows"]
    runs = {(row["problem"], row["seed"]) for row in rows}
    # Every anchor and both references on each task and seed: each anchor row has its pairs.
    expected = sorted((method, *run) for method in methods(anchors) for run in runs)
    assert sorted((row["method"], row["problem"], row["seed"]) for row in rows) == expected
    for row in rows:
        assert row["epochs_spent"] <= row["epochs_budget"] and row["trials"] > 0
        assert row["regret_1"] is None or row["regret_1"] >= 0
    text = section_text(results, record(out, section)["title"])
    recommended = {row["method"] for row in rows if row["regret_1"] is not None}
    assert recommended & set(anchors), rows  # at least one anchor trained a config fully, so there is a pair to show
    for name in anchors:
        lines = [line for line in text.splitlines() if f"| {methods(anchors)[name]} |" in line]
        assert lines
        if name in recommended:  # one with no full training recommends nothing to pair (DyHPO at smoke sizes)
            assert all(re.search(r"\d+ / \d+, [+-]\d", line) for line in lines), lines  # paired with each reference


def test_pareto_runs_both_vesuvius_searches_and_scores_them_against_one_reference(smoke_run):
    from benchmarks.pareto import SEARCHES, SMOKE_TRIALS

    results, out = smoke_run
    rows = record(out, "pareto")["rows"]
    assert [row["search"] for row in rows] == list(SEARCHES)
    for row in rows:
        assert row["whole"]["complete"] + row["pruned"] + row["fail"] == SMOKE_TRIALS and row["fail"] == 0
        for part in (row["equal"], row["whole"]):
            assert len(part["front"]) <= part["feasible_complete"] <= part["complete"]
            assert (part["hypervolume"] is None) == (row["reference"] is None)
        assert row["equal"]["epochs"] <= min(other["whole"]["epochs"] for other in rows)  # scored at the epochs both trained
        assert row["reference"] == rows[0]["reference"]  # one reference point for both studies: their hypervolumes compare
    text = section_text(results, record(out, "pareto")["title"])
    assert all(name in text for name in SEARCHES.values())


def test_search_quality_pairs_each_method_with_random_asha_on_the_same_task_and_seed():
    from benchmarks.search_quality import METHODS, PAIRED_REFERENCE, paired_table

    def row(method, seed, half, full):
        return {"family": "f", "problem": "p", "method": method, "seed": seed, "regret_0.5": half, "regret_1": full}

    def cells(rows):
        lines = {line.split(" | ")[1]: line for line in paired_table(rows, ["f"]).splitlines() if line.startswith("| f |")}
        assert METHODS[PAIRED_REFERENCE] not in lines  # not paired with itself
        return lines[METHODS["tune_bohb"]]

    rows = [row(PAIRED_REFERENCE, s, 0.5, 0.5) for s in range(3)]
    rows += [row("tune_bohb", 0, 0.25, 0.25), row("tune_bohb", 1, 0.6, 0.5), row("tune_bohb", 2, None, 0.75)]
    # At 1/2: seed 0 better, seed 1 worse, seed 2 has no recommendation yet; at full: better, equal, worse. The intervals:
    # mean -/+ t(0.95, seeds - 1) sd / sqrt(seeds), with sd 0.2475 of (-0.25, +0.1) and 0.25 of (-0.25, 0, +0.25).
    half, full = "-0.075 (-1.180 to +1.030)", "+0.000 (-0.421 to +0.421)"
    assert cells(rows) == f"| f | {METHODS['tune_bohb']} | 1 / 1, {half} | 1 / 1, {full} |"
    # A second task on which each seed's runs differ as on the first (as a seed's shared random draws make them) doubles
    # the runs, not the evidence: the interval is over the 3 seeds' means, as before.
    rows += [{**r, "problem": "q"} for r in rows]
    assert cells(rows) == f"| f | {METHODS['tune_bohb']} | 2 / 2, {half} | 2 / 2, {full} |"


def test_search_quality_refuses_a_method_it_does_not_know():
    from benchmarks.search_quality import SyntheticTask, make_agent

    with pytest.raises(ValueError, match="unknown search-quality method 'random_asha'"):
        make_agent("random_asha", SyntheticTask("branin_lr"), seed=0, budget=27)


def test_every_method_runs_a_tasks_documented_configs_first_as_its_library_takes_them():
    from benchmarks.documented import METHODS, documented_task
    from benchmarks.generated import DOCUMENTED_FIRST_TASK
    from benchmarks.search_quality import make_agent

    task = documented_task(DOCUMENTED_FIRST_TASK)
    assert list(task.documented) == ["first", "tuned"]
    assert all(set(params) == set(task.knobs) for params in task.documented.values())
    best_documented = min(task.regret(params) for params in task.documented.values())
    assert 0 <= best_documented < task.regret(task.documented["first"])  # the hand-tuned config is the better one
    for method in METHODS:
        agent = make_agent(method, task, seed=0, budget=10 * task.max_epochs)
        asked = [agent.ask(str(trial)) for trial in range(3)]
        assert asked[:2] == list(task.documented.values()), method
        assert asked[2] not in task.documented.values(), method  # then the method's own configs


def test_documented_runs_every_method_and_keeps_what_each_run_had_to_beat(smoke_run):
    from benchmarks.documented import METHODS, documented_problems

    results, out = smoke_run
    rows = record(out, "documented")["rows"]
    (task,) = documented_problems(1).values()
    assert sorted(row["method"] for row in rows) == sorted(METHODS)
    for row in rows:
        assert row["problem"] == task.name and row["family"] == task.family
        assert row["documented_regret"] == min(task.regret(params) for params in task.documented.values())
    text = section_text(results, record(out, "documented")["title"])
    assert f"| {task.name} | {task.family} | {task.description} |" in text


def test_documented_counts_the_runs_that_found_a_config_better_than_the_documented_and_when():
    from benchmarks.documented import beaten_table
    from benchmarks.search_quality import DEFAULT_METHOD, METHODS

    def run(method, regrets, curve):
        at_fractions = dict(zip(("regret_0.25", "regret_0.5", "regret_1"), regrets))
        return {"family": "f", "method": method, "documented_regret": 0.2, "curve": curve, **at_fractions}

    rows = [
        run(DEFAULT_METHOD, (None, 0.3, 0.1), [None, 0.3, 0.1, 0.1]),  # better from 3/4 of the budget on
        run(DEFAULT_METHOD, (0.15, 0.15, 0.15), [0.15, 0.15, 0.15, 0.15]),  # from 1/4
        run(DEFAULT_METHOD, (0.2, 0.2, 0.2), [0.2, 0.2, 0.2, 0.2]),  # the documented config itself: not better
        run("ray_random_asha", (None, None, 0.25), [None, None, None, 0.25]),
    ]
    lines = {line.split(" | ")[1]: line for line in beaten_table(rows).splitlines() if line.startswith("| f |")}
    assert lines[METHODS[DEFAULT_METHOD]] == f"| f | {METHODS[DEFAULT_METHOD]} | 3 | 1 | 1 | 2 | 0.50 of the budget |"
    assert lines[METHODS["ray_random_asha"]] == f"| f | {METHODS['ray_random_asha']} | 1 | 0 | 0 | 0 | never |"


def test_stored_anchor_rows_are_paired_with_the_default_they_were_measured_beside():
    from benchmarks import anchors, search_quality

    earlier = "tune_bohb-brackets"
    assert earlier != search_quality.DEFAULT_METHOD
    rows = [
        {"family": "synthetic", "problem": "branin_lr", "seed": seed, "method": method, "regret_0.5": regret, "regret_1": regret,
         "trials": 10, "wall_seconds": 1.0}
        for seed in range(3)
        for method, regret in (("syne_mobster", 0.1 + seed / 10), ("syne_hypertune", 0.3), (earlier, 0.2), ("ray_random_asha", 0.4))
    ]  # fmt: skip
    text = anchors.table(rows)
    header = text.splitlines()[0]
    assert f"against {search_quality.METHODS[earlier]} at full budget" in header
    assert search_quality.METHODS[search_quality.DEFAULT_METHOD] not in header
    mobster = next(line for line in text.splitlines() if f"| {anchors.SCHEDULERS['syne_mobster']} |" in line)
    # Against the earlier default: 0.1, 0.2, 0.3 against 0.2 (one better, one worse); against random: 0.3 to 0.1 better each.
    assert re.search(r"\| 1 / 1, \+0\.000 \([^)]*\) \| 3 / 0, -0\.200 \([^)]*\) \|$", mobster), mobster
    assert f"measured when the default was {search_quality.METHODS[earlier]}" in text


def test_seed_spaces_scores_a_study_against_its_own_documented_configs():
    """A hand-made study (no training): which trials count, and the epochs trained when the documented configs were beaten."""
    import dataclasses
    import datetime

    import optuna

    from benchmarks.seed_spaces import scored
    from studies.records import ATTR_BASELINE, ATTR_EPOCHS, METRIC_PREFIX, STUDY_ASHA, STUDY_OBJECTIVES
    from studies.space import AshaSettings

    study = optuna.create_study(direction="minimize")
    study.set_user_attr(STUDY_OBJECTIVES, [["val_loss", "minimize"]])
    study.set_user_attr(STUDY_ASHA, dataclasses.asdict(AshaSettings(10, 1, 3)))
    start = datetime.datetime(2026, 1, 1)
    # (state, val_loss, epochs, documented name, minute it finished, outside the constraints); added by number, finishing
    # out of order as parallel trials do: trial 5 before trial 4, trial 2 last
    trials = [
        ("COMPLETE", 0.5, 10, "A", 1, False),
        ("PRUNED", None, 1, "B", 2, False),
        ("PRUNED", None, 3, None, 9, False),
        ("COMPLETE", 0.6, 10, None, 4, False),
        ("COMPLETE", 0.4, 10, None, 6, False),
        ("COMPLETE", 0.45, 10, None, 5, False),
        ("COMPLETE", 0.1, 10, None, 7, True),  # best by value, but outside the study's constraints
        ("FAIL", None, 2, None, 8, False),
    ]
    for state, value, epochs, name, minute, outside in trials:
        attrs = {ATTR_EPOCHS: epochs, **({ATTR_BASELINE: name} if name else {})}
        attrs |= {f"{METRIC_PREFIX}val_loss": value} if value is not None else {}
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], value=value if state == "COMPLETE" else None, user_attrs=attrs,
            intermediate_values={1: 1.0} if state == "PRUNED" else None,
        )  # fmt: skip
        trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(minutes=minute)
        trial.set_constraint("c", 1.0 if outside else 0.0)
        study.add_trial(trial)

    got = scored(study)
    assert (got["best"], got["best_trial"], got["best_is_documented"]) == (0.4, 4, False)
    assert (got["best_documented"], got["best_documented_name"], got["documented_stopped"]) == (0.5, "A", 1)
    assert got["beaten_after_epochs"] == 10 + 1 + 10 + 10  # trials 0, 1, 3 and 5, which beat A first; trial 2 finished later
    assert (got["epochs"], got["documented_epochs"]) == (56, 2 * 10)
    assert (got["trials"], got["complete"], got["fail"]) == (8, 5, 1)
    assert got["curve"] == [[10, 0.5], [31, 0.45], [41, 0.4]]


def test_seed_spaces_runs_each_space_with_the_default_and_random_search(smoke_run):
    from benchmarks.seed_spaces import METHODS, SMOKE_EPOCHS, SMOKE_SEEDS, SMOKE_SPACES, SMOKE_TRIALS
    from search_spaces import abag

    results, out = smoke_run
    rows = record(out, "seed_spaces")["rows"]
    assert [(r["space"], r["method"], r["seed"]) for r in rows] == [
        (space, method, seed) for space in SMOKE_SPACES for seed in SMOKE_SEEDS for method in METHODS
    ]
    for row in rows:
        assert row["trials"] == SMOKE_TRIALS and row["fail"] == 0
        assert row["documented_epochs"] == len(abag.BASELINES) * SMOKE_EPOCHS
        assert row["best_documented_name"] in abag.BASELINES  # the study ran the log's documented configs first
        assert row["curve"][-1][1] == row["best"] and row["curve"][-1][0] <= row["epochs"]
        beat = row["beaten_after_epochs"] is not None
        assert beat == (row["best"] < row["best_documented"]) and beat != row["best_is_documented"]
    text = section_text(results, record(out, "seed_spaces")["title"])
    for space in SMOKE_SPACES:  # the per-space summary: one line per search, over every seed
        for label in METHODS.values():
            assert f"\n| {space} | {label} | {len(SMOKE_SEEDS)} | " in text
