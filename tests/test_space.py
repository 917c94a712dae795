"""The search-space contract: nesting by dots, conditional knobs, fingerprints, storages."""

import math

import optuna
import pytest
from conftest import SPACES, refusal

from studies.space import Categorical, Float, SpaceError, flatten, load_space, nest
from studies.store.storage import StorageError, open_storage


def test_nest_and_flatten_are_inverse_and_keep_order():
    nested = {"b": 1, "loss_weights": {"dice_weight": 0.2, "focal_weight": 0.4}, "a": {"x": {"y": 2}}}
    flat = flatten(nested)
    assert list(flat) == ["b", "loss_weights.dice_weight", "loss_weights.focal_weight", "a.x.y"]
    assert nest(flat) == nested and list(nest(flat)) == ["b", "loss_weights", "a"]


def test_training_config_puts_values_at_the_knobs_places():
    space = load_space(SPACES / "tiny.py")
    config = space.training_config({"model.hidden": 8, "optimizer.lr": 0.01})
    assert config == {
        "model": {"hidden": 8},
        "optimizer": {"lr": 0.01, "name": "Adam"},
        "data": {"samples": 256, "batch_size": 64},
        "faults": {"fail_at_epoch": 0, "diverge": False},
    }


def test_conditional_knobs_are_searched_only_when_their_parent_allows(tmp_path):
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    (tmp_path / "conditional.py").write_text(
        "from tiny import *\nfrom studies.space import Categorical, Float\n"
        "CONFIG = {'noise_enabled': Categorical([False, True]), 'noise_std': Float(1e-4, 1e-2, log=True, when={'noise_enabled': True})}\n"
        "BASELINES = {}\n"
    )
    space = load_space(tmp_path / "conditional.py")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [space.suggest(study.ask()) for _ in range(30)]
    assert all(("noise_std" in params) == params["noise_enabled"] for params in seen)
    assert {params["noise_enabled"] for params in seen} == {False, True}


def test_conditional_knob_must_follow_its_parent(tmp_path):
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    (tmp_path / "backwards.py").write_text(
        "from tiny import *\nfrom studies.space import Categorical, Float\n"
        "CONFIG = {'noise_std': Float(1e-4, 1e-2, when={'noise_enabled': True}), 'noise_enabled': Categorical([False, True])}\n"
        "BASELINES = {}\n"
    )
    with pytest.raises(SpaceError, match="depends on noise_enabled, which must be a knob declared before it"):
        load_space(tmp_path / "backwards.py")


def test_fingerprint_follows_knobs_not_comments(tmp_path):
    source = (SPACES / "tiny.py").read_text()
    (tmp_path / "a.py").write_text(source + "\n# a comment changes nothing\n")
    (tmp_path / "b.py").write_text(source.replace("Int(2, 32", "Int(2, 64"))
    original = load_space(SPACES / "tiny.py")
    assert load_space(tmp_path / "a.py").fingerprint == original.fingerprint
    assert load_space(tmp_path / "b.py").fingerprint != original.fingerprint
    assert load_space(tmp_path / "a.py").file_sha256 != original.file_sha256


def test_grid_needs_values_on_every_knob():
    space = load_space(SPACES / "tiny.py")
    assert space.grid() == {"model.hidden": [4, 16], "optimizer.lr": [1e-3, 3e-2]}
    space.knobs["extra"] = Float(0.0, 1.0)
    with pytest.raises(SpaceError, match="grid=\\[...\\] values on every gridded knob; tiny lacks them on extra"):
        space.grid()
    space.knobs["extra"] = Categorical(["a", "b"], when={"model.hidden": 4})
    with pytest.raises(SpaceError, match="cannot search conditional knobs"):
        space.grid()


def test_journal_and_sqlite_storages_open(tmp_path):
    journal = open_storage(f"journal:{tmp_path / 'studies.log'}", create=True)
    optuna.create_study(study_name="j", storage=journal)
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(f"{tmp_path}/studies.log", create=False))] == ["j"]
    with pytest.raises(StorageError, match="no study storage at"):
        open_storage(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    with pytest.raises(StorageError, match="folder .* does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'no' / 'x.db'}", create=True)
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage("sqlite:///" + str(tmp_path), create=True)  # a folder, not a database file


def test_partial_grid_takes_the_rest_from_a_baseline():
    space = load_space(SPACES / "tiny.py")
    assert space.grid(["optimizer.lr"]) == {"optimizer.lr": [1e-3, 3e-2]}
    assert space.held_at("small_slow", ["optimizer.lr"]) == {"model.hidden": 4}
    with pytest.raises(SpaceError, match="--grid-knobs names lr, not knobs of tiny"):
        space.grid(["lr"])
    with pytest.raises(SpaceError, match="--grid-base 'v9' is not a baseline of tiny"):
        space.held_at("v9", ["optimizer.lr"])


# Each is tiny.py with one declaration replaced: loading must say what to fix in one line, before any storage exists.
MALFORMED = {
    "baseline of another type": (
        "BASELINES = {'v9': {'optimizer.lr': 'fast'}}",
        "baseline 'v9' sets optimizer.lr='fast', a str; the knob takes float",
    ),
    "baseline no choice holds": (
        "CONFIG = {**CONFIG, 'act': Categorical(['relu', 'tanh'])}\nBASELINES = {'v9': {'act': 'gelu'}}",
        "baseline 'v9' sets act='gelu', not one of the knob's choices",
    ),
    "baselines as a list": (
        "BASELINES = [1, 2]",
        "BASELINES must be {name: {knob: value}}, the log's configs by its names (got [1, 2])",
    ),
    "objectives as a number": ("OBJECTIVES = 5", "OBJECTIVES must be a non-empty list of Objective(name, direction) (got 5)"),
    "budget of text": ("BUDGET = Budget(max_epochs='4')", "BUDGET takes whole numbers, not max_epochs='4'"),
    "resources of text": ("RESOURCES = Resources(cpus='2')", "RESOURCES takes numbers, not cpus='2'"),
    "knob bounds of text": ("CONFIG = {'lr': Float('0.1', 1.0)}", "knob lr needs low and high of type float (got '0.1', 1.0)"),
    "headlines as a name": ("HEADLINES = 5", "HEADLINES must be a list of metric names (got 5)"),
    "a space that exits": ("import sys\nsys.exit(0)", "called sys.exit(0) on import; a search space only declares"),
    "unknown search": ("SEARCH = 'joint'", "SEARCH 'joint' is unknown; use \"first\""),
    "pareto of one objective": ("OBJECTIVES = OBJECTIVES[:1]\nSEARCH = 'pareto'", 'SEARCH = "pareto" needs two or more'),
    "pareto with a sampler of one": ("SEARCH = 'pareto'\nSAMPLER = 'cmaes'", "SAMPLER 'cmaes' searches one objective"),
    "constraint on an unknown metric": ("CONSTRAINTS = {'accuracy': (0.3, 0.7)}", "bounds accuracy, which is neither"),
    "constraint of an empty range": ("CONSTRAINTS = {'val_mae': (0.7, 0.3)}", "CONSTRAINTS bounds val_mae to the empty range"),
    "constraint as one number": ("CONSTRAINTS = {'val_mae': 0.3}", "CONSTRAINTS must map a metric to (LOW, HIGH)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_declaration_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, case):
    declaration, message = MALFORMED[case]
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    imports = "from tiny import *\nfrom studies.space import Budget, Categorical, Float, Resources\n"
    (tmp_path / "malformed.py").write_text(f"{imports}{declaration}\n")
    monkeypatch.chdir(tmp_path)
    assert message in refusal(capsys, "run", "malformed.py")
    assert not (tmp_path / "tune_runs").exists()


def test_a_pareto_search_within_constraints_is_declared_in_the_space(tmp_path):
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    (tmp_path / "joint.py").write_text(
        "from tiny import *\nSAMPLER = 'nsga2'\nSEARCH = 'pareto'\nCONSTRAINTS = {'prediction_std': (0.3, None), 'val_mae': (None, 0.5)}\n"
    )
    space = load_space(tmp_path / "joint.py")
    assert space.search == "pareto" and space.sampler == "nsga2"
    assert space.constraints == {"prediction_std": (0.3, math.inf), "val_mae": (-math.inf, 0.5)}
    assert load_space(SPACES / "tiny.py").search == "first" and load_space(SPACES / "tiny.py").constraints == {}
