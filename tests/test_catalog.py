"""Reading studies back: tables, selection, listing, the study's settings and compute summary, on real
storages filled through Optuna's API in the bridge's vocabulary (the records a real run leaves)."""

import dataclasses
import math

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.space import AshaSettings
from studies.store.catalog import (
    Bound,
    SelectionError,
    asha_settings,
    compute_summary,
    count_by_state,
    headlines_of,
    list_studies,
    load_study,
    metric_value,
    objectives_of,
    select_trial,
    stored_trials,
    trials_table,
)
from studies.store.storage import StorageError, open_storage

OBJECTIVES = [["val_loss", "minimize"], ["val_mae", "minimize"], ["acc", "maximize"]]
LR = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
# number: state, epochs, train seconds, val_loss, val_mae, acc (None: not recorded), why it failed or was pruned
TRIALS = [
    (TrialState.COMPLETE, 4, 8.0, 0.30, 0.20, 0.70, None),
    (TrialState.PRUNED, 1, 2.0, 0.90, 0.60, 0.20, "ASHA: outside the best 1/3 at epoch 1"),
    (TrialState.COMPLETE, 4, 12.0, 0.10, 0.25, 0.60, None),
    (TrialState.FAIL, 2, 4.0, None, None, None, "RuntimeError: injected failure at epoch 2"),
    (TrialState.PRUNED, 2, 5.0, 0.50, 0.40, 0.40, "repeat: its first 2 epochs are trial 1's exactly"),
    (TrialState.COMPLETE, 4, 10.0, 0.20, 0.15, 0.90, None),
    (TrialState.FAIL, 1, 1.0, math.nan, None, None, "diverged"),
]


def add_trial(study, state, epochs, seconds, metrics, reason=None, number=0, extra=None, objective="val_loss"):
    user_attrs = {"epochs": epochs, "train_seconds": seconds, **{f"metric.{k}": v for k, v in metrics.items() if v is not None}}
    if reason:
        user_attrs["fail_reason" if state == TrialState.FAIL else "pruned_by"] = reason
    value = metrics.get(objective) if state == TrialState.COMPLETE else None
    curve = {e: 0.1 * (number + 1) + 1.0 / e for e in range(1, epochs + 1)} if state != TrialState.FAIL else {}
    study.add_trial(create_trial(
        state=state, value=value, params={"lr": 10 ** -(1 + number % 3)}, distributions=LR,
        intermediate_values=curve, user_attrs={**user_attrs, **(extra or {})},
    ))  # fmt: skip


def fill(study):
    study.set_user_attr("objectives", OBJECTIVES)
    for number, (state, epochs, seconds, val_loss, val_mae, acc, reason) in enumerate(TRIALS):
        extra = {"baseline": "v1"} if number == 0 else {"metric.test_loss": 0.33} if number == 5 else None
        add_trial(study, state, epochs, seconds, {"val_loss": val_loss, "val_mae": val_mae, "acc": acc}, reason, number, extra)
    study.ask()  # trial 7: RUNNING, in no table
    return study


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """One storage for the module's studies (creating its tables is the slow part); ``exp`` holds TRIALS."""
    url = f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.db'}"
    fill(optuna.create_study(study_name="exp", storage=open_storage(url, create=True)))
    return url


@pytest.fixture(scope="module")
def study(url):
    return load_study("exp", url)


def new_study(url, name, **kwargs):
    return optuna.create_study(study_name=name, storage=open_storage(url, create=True), **kwargs)


def test_load_study_names_the_studies_there_are(url, tmp_path):
    assert load_study("exp", url).study_name == "exp"
    with pytest.raises(SelectionError) as raised:
        load_study("nope", url)
    assert str(raised.value).startswith("no study 'nope' in the storage (studies: exp")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_storage(empty, create=True)
    with pytest.raises(SelectionError, match=r"^no study 'nope' in the storage \(studies: none yet\)$"):
        load_study("nope", empty)
    with pytest.raises(StorageError, match="no study storage at"):
        load_study("exp", f"sqlite:///{tmp_path / 'absent.db'}")


def test_trials_table_ranks_complete_best_first_then_pruned_by_epochs_then_failed(study):
    table = trials_table(study)
    assert list(table["trial"]) == [2, 5, 0, 4, 1, 3, 6]
    assert list(table["state"]) == ["COMPLETE"] * 3 + ["PRUNED"] * 2 + ["FAIL"] * 2
    assert list(table["epochs"]) == [4, 4, 4, 2, 1, 2, 1]
    assert list(table["val_loss"][:5]) == [0.10, 0.20, 0.30, 0.50, 0.90]
    assert list(table["fail_reason"][-2:]) == ["RuntimeError: injected failure at epoch 2", "diverged"]
    assert table["fail_reason"][:5].isna().all()
    assert list(table["pruned_by"][3:5]) == ["repeat: its first 2 epochs are trial 1's exactly", "ASHA: outside the best 1/3 at epoch 1"]
    assert table["pruned_by"].drop([3, 4]).isna().all()
    assert set(table.columns[-2:]) == {"fail_reason", "pruned_by"}  # why a trial ended short, after its params
    assert list(table["baseline"]) == ["", "", "v1", "", "", "", ""]
    assert list(table["train_s"]) == [12.0, 10.0, 8.0, 5.0, 2.0, 4.0, 1.0]
    assert list(table.columns[:5]) == ["trial", "state", "baseline", "epochs", "train_s"]
    assert {"val_loss", "val_mae", "acc", "test_loss", "lr"} <= set(table.columns)
    assert list(table["lr"][:3]) == pytest.approx([0.001, 0.001, 0.1])


def test_trials_table_top_reads_as_far_as_it_shows(study):
    assert list(trials_table(study, top=2)["trial"]) == [2, 5]
    assert list(trials_table(study, top=4)["trial"]) == [2, 5, 0, 4]
    assert list(trials_table(study, top=100)["trial"]) == [2, 5, 0, 4, 1, 3, 6]


def test_trials_table_of_a_study_without_finished_trials_is_empty(url):
    study = new_study(url, "unfinished")
    study.ask()
    assert trials_table(study).empty


def test_a_maximized_first_objective_ranks_the_highest_first(url):
    study = new_study(url, "maximized", direction="maximize")
    study.set_user_attr("objectives", [["acc", "maximize"]])
    for number, acc in enumerate([0.5, 0.9, 0.7]):
        add_trial(study, TrialState.COMPLETE, 3, 1.0, {"acc": acc}, number=number, objective="acc")
    assert list(trials_table(study)["trial"]) == [1, 2, 0]
    assert select_trial(study).number == 1


def test_select_trial_by_number_gives_any_state(study):
    assert select_trial(study, trial_number=3).state == TrialState.FAIL
    assert select_trial(study, trial_number=7).state == TrialState.RUNNING
    assert select_trial(study, trial_number=0).user_attrs["baseline"] == "v1"


def test_select_trial_by_metric_follows_the_objectives_directions(study):
    assert select_trial(study).number == 2  # the first objective, val_loss, minimized
    assert select_trial(study, by="val_mae").number == 5
    assert select_trial(study, by="acc").number == 5  # acc is maximized
    assert select_trial(study, by="val_loss", maximize=True).number == 0
    assert select_trial(study, by="acc", maximize=False).number == 2
    assert select_trial(study, by="test_loss").number == 5  # only trial 5 recorded it
    assert select_trial(study, by="val_loss").state == TrialState.COMPLETE  # PRUNED trials are never selected


def test_select_trial_within_bounds(study):
    assert select_trial(study, bounds=[Bound("acc", 0.65)]).number == 5
    assert select_trial(study, bounds=[Bound("val_mae", 0.2, 0.2)]).number == 0  # both limits are inclusive
    assert select_trial(study, by="acc", bounds=[Bound("val_mae", high=0.22), Bound("val_loss", low=0.25)]).number == 0
    assert select_trial(study, bounds=[Bound("test_loss", high=1.0)]).number == 5  # a trial without the metric is outside


def test_select_trial_says_what_is_missing(study, url):
    cases = [
        ({"trial_number": 99}, "study exp has no trial 99 (trials 0..7)"),
        ({"by": "dice"}, "no trial of exp recorded 'dice'; recorded metrics: acc, test_loss, val_loss, val_mae"),
        ({"bounds": [Bound("dice", 0, 1)]}, "no trial of exp recorded 'dice'; recorded metrics: acc, test_loss, val_loss, val_mae"),
        ({"bounds": [Bound("acc", 2.0)]}, "no COMPLETE trial of exp satisfies acc in [2.0, inf]"),
        (
            {"bounds": [Bound("acc", high=0.65), Bound("val_mae", high=0.2)]},
            "no COMPLETE trial of exp satisfies acc in [-inf, 0.65], val_mae in [-inf, 0.2]",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(SelectionError) as raised:
            select_trial(study, **kwargs)
        assert str(raised.value) == message
    pruned_only = new_study(url, "pruned_only")
    add_trial(pruned_only, TrialState.PRUNED, 1, 1.0, {"val_loss": 0.5})
    with pytest.raises(SelectionError) as raised:
        select_trial(pruned_only)
    assert str(raised.value) == "study pruned_only has no COMPLETE trial yet; `tune resume pruned_only` to finish it"


@pytest.mark.parametrize(
    "text, bound",
    [
        ("acc=0.3..0.7", Bound("acc", 0.3, 0.7)),
        ("acc=..0.7", Bound("acc", -math.inf, 0.7)),
        ("acc=0.3..", Bound("acc", 0.3, math.inf)),
        (" predicted_fg_fraction = 1e-2 .. 2 ", Bound("predicted_fg_fraction", 0.01, 2.0)),
        ("acc=..", Bound("acc")),
    ],
)
def test_bound_parse(text, bound):
    assert Bound.parse(text) == bound


@pytest.mark.parametrize(
    "text, message",
    [
        ("val_mae<3", "is not NAME=LOW..HIGH"),
        ("acc=0.3-0.7", "is not NAME=LOW..HIGH"),
        ("=0.3..0.7", "is not NAME=LOW..HIGH"),
        ("acc", "is not NAME=LOW..HIGH"),
        ("acc=low..0.7", "has a limit that is not a number"),
        ("acc=0.3..0.7..0.9", "has a limit that is not a number"),
    ],
)
def test_bound_parse_refuses_what_it_cannot_read(text, message):
    with pytest.raises(SelectionError) as raised:
        Bound.parse(text)
    assert str(raised.value).startswith(f"bound {text!r} {message}") and "\n" not in str(raised.value)


def test_metric_value_reads_finite_numbers_only():
    trial = create_trial(
        state=TrialState.COMPLETE, value=1.0,
        user_attrs={"metric.a": 2, "metric.b": math.nan, "metric.c": "text", "metric.d": math.inf, "e": 5.0},
    )  # fmt: skip
    assert [metric_value(trial, name) for name in "abcde"] == [2.0, None, None, None, None]
    assert not Bound("b").holds(trial) and Bound("a", 2, 2).holds(trial)


def test_objectives_default_to_the_studys_direction_without_a_record(url):
    plain = new_study(url, "plain", direction="maximize")
    assert objectives_of(plain) == [("value", "maximize")]
    plain.set_user_attr("objectives", [["dice", "maximize"], ["val_loss", "minimize"]])
    assert objectives_of(plain) == [("dice", "maximize"), ("val_loss", "minimize")]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_list_studies_counts_each_state_and_names_the_best(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'list.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'list.log'}"
    fill(new_study(url, "exp"))
    maximized = new_study(url, "max", direction="maximize")
    for number, acc in enumerate([0.3, 0.8, 0.5]):
        add_trial(maximized, TrialState.COMPLETE, 2, 1.0, {"val_loss": acc}, number=number)
    maximized.enqueue_trial({"lr": 0.01})
    new_study(url, "empty")
    two = new_study(url, "two_objectives", directions=["minimize", "maximize"])
    two.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.1, 0.9]))
    rows = {row.pop("study"): row for row in list_studies(url).to_dict("records")}
    assert list(rows) == ["exp", "max", "empty", "two_objectives"]
    counts = ["complete", "pruned", "failed", "running", "waiting"]
    assert [rows["exp"][c] for c in counts] == [3, 2, 2, 1, 0]
    assert [rows["max"][c] for c in counts] == [3, 0, 0, 0, 1]
    assert [rows["empty"][c] for c in counts] == [0, 0, 0, 0, 0]
    assert (rows["exp"]["objective"], rows["exp"]["best"], rows["exp"]["best_trial"]) == ("val_loss", 0.10, 2)
    assert (rows["max"]["objective"], rows["max"]["best"], rows["max"]["best_trial"]) == ("value", 0.8, 1)
    for name in ("empty", "two_objectives"):
        assert pd.isna(rows[name]["best"]) and pd.isna(rows[name]["best_trial"]), name
    storage = open_storage(url, create=False)
    exp_id = storage.get_study_id_from_name("exp")
    assert count_by_state(storage, exp_id) == {
        TrialState.COMPLETE: 3, TrialState.PRUNED: 2, TrialState.FAIL: 2, TrialState.RUNNING: 1,
    }  # fmt: skip


def test_list_studies_of_a_missing_storage_is_one_line(tmp_path):
    with pytest.raises(StorageError) as raised:
        list_studies(f"sqlite:///{tmp_path / 'absent.db'}")
    assert "\n" not in str(raised.value) and not (tmp_path / "absent.db").exists()


def test_stored_trials_reads_the_states_asked_for(study):
    assert [t.number for t in stored_trials(study, (TrialState.COMPLETE,))] == [0, 2, 5]
    assert [t.number for t in stored_trials(study, (TrialState.FAIL, TrialState.RUNNING))] == [3, 6, 7]


def test_asha_settings_and_headlines_round_trip_through_the_storage(url):
    study = new_study(url, "settings")
    assert asha_settings(study) is None and headlines_of(study) == []
    study.set_user_attr("asha", dataclasses.asdict(AshaSettings(max_epochs=8, grace_period=2, reduction_factor=2)))
    study.set_user_attr("headlines", ["test_loss", "dice"])
    reread = load_study("settings", url)
    assert asha_settings(reread) == AshaSettings(max_epochs=8, grace_period=2, reduction_factor=2)
    assert asha_settings(reread).rungs == [2, 4, 8]
    assert headlines_of(reread) == ["test_loss", "dice"]


def test_compute_summary_counts_what_was_spent_and_what_pruning_saved(study):
    spent = sum(t[2] for t in TRIALS)
    epochs = sum(t[1] for t in TRIALS)
    # Pruned: trial 1 (1 of 4 epochs in 2 s) and trial 4 (2 of 4 epochs in 5 s) leave 3 and 2 epochs untrained.
    unpruned = compute_summary(study, None)  # no ASHA settings: a full trial trains as long as the COMPLETE ones
    assert unpruned == compute_summary(study, AshaSettings(4, 1, 2))
    assert (unpruned.train_seconds, unpruned.epochs, unpruned.trials, unpruned.pruned_trials) == (spent, epochs, 8, 2)
    assert (unpruned.saved_epochs, unpruned.saved_seconds) == (3 + 2, pytest.approx(3 * 2.0 + 2 * 2.5))
    longer = compute_summary(study, AshaSettings(max_epochs=8, grace_period=1, reduction_factor=2))
    assert (longer.saved_epochs, longer.saved_seconds) == (7 + 6, pytest.approx(7 * 2.0 + 6 * 2.5))
    # Who stopped them, from each trial's pruned_by: trial 1 ASHA, trial 4 the repeat rule, each with its untrained epochs.
    assert unpruned.stopped_by == {"ASHA": (1, 3), "repeat": (1, 2)}
    assert longer.stopped_by == {"ASHA": (1, 7), "repeat": (1, 6)}


def test_compute_summary_edge_cases(url):
    study = new_study(url, "edges")
    add_trial(study, TrialState.PRUNED, 0, 0.0, {})  # stopped before its first epoch: saved epochs, no pace
    add_trial(study, TrialState.PRUNED, 6, 3.0, {"val_loss": 0.2})  # trained past today's max_epochs: saves nothing
    assert (compute_summary(study, None).saved_epochs, compute_summary(study, None).saved_seconds) == (None, None)
    summary = compute_summary(study, AshaSettings(max_epochs=4, grace_period=1, reduction_factor=2))
    assert (summary.saved_epochs, summary.saved_seconds, summary.train_seconds, summary.epochs) == (4, 0.0, 3.0, 6)
    assert summary.stopped_by == {}  # stored without pruned_by (as before tune recorded it): counted under no rule
