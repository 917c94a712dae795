"""The BOHB-style sampler: good trials judged at one rung, PRUNED or not; a random share; Optuna studies as they are stored."""

import math
import statistics

import optuna
import pytest
from conftest import SPACES
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from studies.records import ATTR_BASELINE, ATTR_FIRST_RUNG, ATTR_REASON, REASON_DIVERGED, STUDY_ASHA
from studies.rung_tpe import MAX_RUNG_POINTS, MISLEAD_TRIALS, NEAR_COPY, FirstRungChoice, RungTPESampler
from studies.samplers import BOHB_BRACKETS, SAMPLERS, SamplerSettings, make_sampler
from studies.space import load_space

X = FloatDistribution(0.0, 1.0)


def stored(number: int, curve: dict[int, float], state: TrialState, x: float = 0.5) -> optuna.trial.FrozenTrial:
    trial = create_trial(
        state=state, params={"x": x}, distributions={"x": X}, intermediate_values=curve,
        value=curve[max(curve)] if state == TrialState.COMPLETE else None,
    )  # fmt: skip
    trial.number = number
    return trial


def diverged(number: int, curve: dict[int, float]) -> optuna.trial.FrozenTrial:
    """As the bridge stores a trial whose objective became non-finite: FAIL, its finite epochs, the reason."""
    trial = stored(number, curve, TrialState.FAIL)
    trial.user_attrs[ATTR_REASON] = REASON_DIVERGED
    return trial


def test_trials_are_judged_at_the_highest_epoch_enough_of_them_reached():
    # Two trials trained all 9 epochs; five more were stopped at epoch 3. With min_points 4 the rung is epoch 3,
    # so the PRUNED trial best at epoch 3 is the good one, ahead of both COMPLETE trials (TPE would rank those first).
    trials = [
        stored(0, {1: 0.9, 3: 0.50, 9: 0.30}, TrialState.COMPLETE),
        stored(1, {1: 0.8, 3: 0.45, 9: 0.28}, TrialState.COMPLETE),
        stored(2, {1: 0.7, 3: 0.20}, TrialState.PRUNED),
        stored(3, {1: 0.9, 3: 0.60}, TrialState.PRUNED),
        stored(4, {1: 0.9, 3: 0.70}, TrialState.PRUNED),
        stored(5, {1: 0.95}, TrialState.PRUNED),
        stored(6, {1: 0.6}, TrialState.RUNNING),
    ]
    sampler = RungTPESampler(seed=0, min_points=4, top_fraction=0.2, rung_check=False)  # the split alone; the check below
    good, bad = sampler.split_at_rung(trials, StudyDirection.MINIMIZE, dimensions=1)
    assert [t.number for t in good] == [2]
    assert sorted(t.number for t in bad) == [0, 1, 3, 4, 5, 6]  # the rest, the ones stopped earlier, the running one
    # Maximising turns the order round; with enough trials at epoch 9 the rung moves up to it.
    good, _ = sampler.split_at_rung(trials, StudyDirection.MAXIMIZE, dimensions=1)
    assert [t.number for t in good] == [4]
    good, _ = RungTPESampler(seed=0, min_points=2, top_fraction=0.2).split_at_rung(trials, StudyDirection.MINIMIZE, 1)
    assert [t.number for t in good] == [1]


def test_many_knobs_are_modelled_at_a_rung_once_max_rung_points_drawn_trials_reached_it():
    # Eleven knobs: BOHB would wait for 12 trials at epoch 3 and judge at epoch 1 until then; 6 the search drew are enough.
    reached_3 = [stored(n, {1: 0.9 - n / 100, 3: 0.2 if n == 2 else 0.5 + n / 100}, TrialState.PRUNED) for n in range(6)]
    stopped_at_1 = [stored(6 + n, {1: 0.4 if n == 0 else 0.95}, TrialState.PRUNED) for n in range(10)]
    trials = reached_3 + stopped_at_1
    assert MAX_RUNG_POINTS == len(reached_3) < 11 + 1
    sampler = RungTPESampler(seed=0, top_fraction=0.05, rung_check=False)  # the split alone
    good, _ = sampler.split_at_rung(trials, StudyDirection.MINIMIZE, dimensions=11)
    assert [t.number for t in good] == [2]  # best at epoch 3, though poor at epoch 1
    bohb = RungTPESampler(seed=0, min_points=11 + 1, top_fraction=0.05, rung_check=False)
    good, _ = bohb.split_at_rung(trials, StudyDirection.MINIMIZE, dimensions=11)
    assert [t.number for t in good] == [6]  # BOHB's dimensions + 1: still judged at epoch 1
    # With few knobs the rung still needs only the knobs + 1 trials.
    good, _ = RungTPESampler(seed=0, top_fraction=0.05, rung_check=False).split_at_rung(
        reached_3[:3] + stopped_at_1, StudyDirection.MINIMIZE, dimensions=2
    )
    assert [t.number for t in good] == [2]
    # Documented configs at epoch 3 do not count towards the 6: with two of them among the six, epoch 1 it is again.
    for trial in reached_3[:2]:
        trial.user_attrs[ATTR_BASELINE] = "documented"
    good, _ = RungTPESampler(seed=0, top_fraction=0.05, rung_check=False).split_at_rung(trials, StudyDirection.MINIMIZE, 11)
    assert [t.number for t in good] == [6]


def later(values_at_1: list[float], values_at_9: list[float], stopped_at_1: int = 6) -> list[optuna.trial.FrozenTrial]:
    """Trials that trained to epoch 9 with these values at epochs 1 and 9, and more that ASHA stopped after epoch 1."""
    went_on = [stored(n, {1: a, 9: b}, TrialState.COMPLETE) for n, (a, b) in enumerate(zip(values_at_1, values_at_9))]
    return went_on + [stored(len(went_on) + n, {1: 0.9 + n / 100}, TrialState.PRUNED) for n in range(stopped_at_1)]


def test_a_rung_is_modelled_only_once_its_ranking_is_shown_to_hold_later():
    def good(trials, rung_check=True):
        # 8 points needed: epoch 1 is the rung (10 trials), epoch 9 the later epoch its ranking is checked against.
        sampler = RungTPESampler(seed=0, min_points=8, top_fraction=0.1, rung_check=rung_check)
        return [t.number for t in sampler.split_at_rung(trials, StudyDirection.MINIMIZE, dimensions=1)[0]]

    holds = later([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    assert good(holds) == [0]
    reverses = later([0.1, 0.2, 0.3, 0.4], [0.8, 0.7, 0.6, 0.5])  # the best at epoch 1 is the worst at epoch 9
    assert good(reverses) == []  # no good trials: the config is drawn at random
    # 3 trials past the rung are too few to show anything: drawn at random until a fourth gets there.
    assert good(later([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], stopped_at_1=7)) == []
    assert good(reverses, rung_check=False) == [0]  # the ablation models the rung whatever epoch 9 says


def test_a_new_trial_is_first_judged_at_the_first_rung_until_it_is_shown_to_mislead():
    def first_rung(trials):
        study = optuna.create_study()
        study.add_trials(trials)
        study.ask()  # the bridge chooses right after asking, from the trials the ask read
        return FirstRungChoice(StudyDirection.MINIMIZE, [1, 3, 9]).for_new_trial(study)

    def went_on_and_stopped(at_1, at_3):
        at_9 = [0.5 + n / 100 for n in range(len(at_1))]
        went_on = [stored(n, {1: a, 3: b, 9: c}, TrialState.COMPLETE) for n, (a, b, c) in enumerate(zip(at_1, at_3, at_9))]
        return went_on + [stored(len(at_1) + n, {1: 0.9 + n / 100}, TrialState.PRUNED) for n in range(6)]

    in_order = [0.1 + n / 100 for n in range(MISLEAD_TRIALS)]
    reversed_order = in_order[::-1]
    assert first_rung(went_on_and_stopped(in_order, in_order)) == 1
    assert first_rung(went_on_and_stopped(reversed_order, in_order)) == 3  # epoch 1 misleads, epoch 3 ranks as epoch 9 does
    assert first_rung(went_on_and_stopped(reversed_order, reversed_order)) == 9  # both mislead: the highest offered
    # In order but for the leader at epoch 9, which epoch 1 now ranks outside its best third (ASHA's eta 3): ASHA judging
    # there would stop it, so new trials are judged first at 3, where it leads.
    leader_last = in_order[-1:] + in_order[:-1]
    assert first_rung(went_on_and_stopped(leader_last, in_order)) == 3
    assert first_rung(went_on_and_stopped(in_order[1:2] + in_order[:1] + in_order[2:], in_order)) == 1  # second: kept
    # Fewer trials past the rung than MISLEAD_TRIALS show nothing, reversed or not: judged at the first rung, as ASHA's grace
    # period says, and so while nothing is stored.
    too_few = reversed_order[: MISLEAD_TRIALS - 1]
    assert first_rung(went_on_and_stopped(too_few, too_few)) == 1
    assert first_rung([]) == 1
    assert first_rung([stored(n, {1: 0.1 * n}, TrialState.PRUNED) for n in range(5)]) == 1


def test_a_trial_that_diverged_after_leading_at_a_rung_is_evidence_that_the_rung_misleads():
    def first_rung(trials):
        study = optuna.create_study()
        study.add_trials(trials)
        study.ask()
        return FirstRungChoice(StudyDirection.MINIMIZE, [1, 3, 9]).for_new_trial(study)

    # The leaders at epoch 1 went on and diverged at epoch 2; two slower ones trained all 9 epochs, in their epoch-1 order.
    leaders = [diverged(n, {1: 0.1 + n / 100}) for n in range(MISLEAD_TRIALS)]
    went_on = [stored(MISLEAD_TRIALS + n, {1: 0.3 + n / 100, 9: 0.5 + n / 100}, TrialState.COMPLETE) for n in range(2)]
    stopped = [stored(MISLEAD_TRIALS + 2 + n, {1: 0.9 + n / 100}, TrialState.PRUNED) for n in range(6)]
    assert first_rung(went_on + stopped) == 1  # too few went past epoch 1 to show anything
    assert first_rung(leaders + went_on + stopped) == 3  # epoch 1 misleads; nothing went past epoch 3 and failed there
    # Crashed for another reason, the same trials are no evidence: only a divergence is the config's doing.
    crashed = [stored(t.number, t.intermediate_values, TrialState.FAIL) for t in leaders]
    assert first_rung(crashed + went_on + stopped) == 1
    # Nor is a diverged trial ever a good one, however well it started: the best at epoch 1 here are not.
    sampler = RungTPESampler(seed=0, min_points=4, top_fraction=0.1, rung_check=False)
    good, bad = sampler.split_at_rung(leaders + went_on + stopped, StudyDirection.MINIMIZE, dimensions=1)
    assert [t.number for t in good] == [MISLEAD_TRIALS] and {t.number for t in leaders} <= {t.number for t in bad}


def test_a_trial_without_a_finite_value_at_the_rung_is_never_good():
    trials = [stored(0, {1: math.nan}, TrialState.PRUNED), stored(1, {1: 0.4}, TrialState.PRUNED)]
    good, bad = RungTPESampler(seed=0, min_points=1, top_fraction=1.0).split_at_rung(trials, StudyDirection.MINIMIZE, 1)
    assert [t.number for t in good] == [1] and [t.number for t in bad] == [0]


def test_a_trial_outside_the_studys_constraints_is_never_good():
    trials = [stored(0, {1: 0.1}, TrialState.PRUNED), stored(1, {1: 0.4}, TrialState.PRUNED)]
    trials[0].system_attrs["constraints"] = [0.2]  # best by its value, but 0.2 outside a range (`--constrain`)
    good, bad = RungTPESampler(seed=0, min_points=1, top_fraction=1.0).split_at_rung(trials, StudyDirection.MINIMIZE, 1)
    assert [t.number for t in good] == [1] and [t.number for t in bad] == [0]


def optimise(random_fraction: float, trials: int = 40, knobs: tuple[str, ...] = ("x", "y")) -> list[dict[str, float]]:
    """A study whose curves say small x is good from the first epoch (y does not matter); every trial's params, in order."""
    study = optuna.create_study(sampler=RungTPESampler(seed=3, random_fraction=random_fraction, n_startup_trials=8))
    for _ in range(trials):
        trial = study.ask()
        x = [trial.suggest_float(name, 0.0, 1.0) for name in knobs][0]
        epochs = 3 if x < 0.5 else 1  # the poor half is stopped after its first epoch, as ASHA would
        for epoch in range(1, epochs + 1):
            trial.report(x + 0.1 / epoch, epoch)
        if epochs == 3:
            study.tell(trial, x)
        else:
            study.tell(trial, state=TrialState.PRUNED)
    return [t.params for t in study.trials]


def test_the_model_concentrates_where_the_rung_values_are_good_and_the_random_share_keeps_exploring():
    modelled = [p["x"] for p in optimise(random_fraction=0.0)[-20:]]
    random = [p["x"] for p in optimise(random_fraction=1.0)[-20:]]
    assert sum(modelled) / 20 < 0.25
    assert sum(random) / 20 > 0.3
    assert max(random) > 0.7  # the random share still reaches the far end


def test_the_model_never_proposes_a_near_copy_of_a_trial_it_has_seen():
    # With one knob TPE's estimator narrows onto the good trials and its candidates repeat them; each is passed over.
    xs = [p["x"] for p in optimise(random_fraction=0.0, trials=20, knobs=("x",))]
    for index in range(8, len(xs)):  # after the 8 start-up draws, every config is the model's
        assert min(abs(xs[index] - earlier) for earlier in xs[:index]) >= NEAR_COPY, (index, xs[: index + 1])


def test_the_model_reads_the_trials_knobs_as_optunas_tpe_does_at_every_suggestion():
    # Finished trials' rows are kept between suggestions, per set of knobs: the arrays must stay TPE's own, for the joint
    # knobs and a conditional one, as trials finish and a RUNNING trial (its params still growing) is read again.
    sampler = RungTPESampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    joint = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "n": optuna.distributions.IntDistribution(1, 64, log=True),
             "kind": CategoricalDistribution(["a", "b", None])}  # fmt: skip
    conditional = {"a_x": FloatDistribution(0.0, 1.0)}
    for round_ in range(3):
        for _ in range(6):
            trial = study.ask()
            kind = trial.suggest_categorical("kind", ["a", "b", None])
            value = trial.suggest_float("lr", 1e-5, 1e-1, log=True) * trial.suggest_int("n", 1, 64, log=True)
            if kind == "a":
                value += trial.suggest_float("a_x", 0.0, 1.0)
            trial.report(value, 1)
            study.tell(trial, *([TrialState.PRUNED] if value > 1 else [value]))
        running = study.ask()
        running.suggest_categorical("kind", ["a", "b", None])
        for drawn_so_far in range(2):
            if drawn_so_far:
                running.suggest_float("lr", 1e-5, 1e-1, log=True), running.suggest_int("n", 1, 64, log=True)
            trials = study.get_trials(deepcopy=False)
            for space in (joint, conditional):
                ours = sampler._get_internal_repr(trials[round_:], space, study)  # a moving window, as the bad trials' is
                optunas = optuna.samplers.TPESampler._get_internal_repr(sampler, trials[round_:], space, study)
                assert ours.keys() == optunas.keys()
                for name in space:
                    assert ours[name].tolist() == optunas[name].tolist(), (round_, drawn_so_far, name)
        study.tell(running, state=TrialState.FAIL)


def test_a_conditional_knob_is_sampled_only_where_its_parent_asks_for_it():
    study = optuna.create_study(sampler=RungTPESampler(seed=0, n_startup_trials=4))
    for _ in range(15):
        trial = study.ask()
        kind = trial.suggest_categorical("kind", ["a", "b"])
        value = trial.suggest_float(f"{kind}_x", 0.0, 1.0)
        trial.report(value, 1)
        study.tell(trial, value)
    assert {frozenset(t.params) for t in study.trials} == {frozenset({"kind", "a_x"}), frozenset({"kind", "b_x"})}
    assert all(isinstance(t.distributions["kind"], CategoricalDistribution) for t in study.trials)


def test_a_conditional_knob_is_modelled_too():
    # Each knob of a config is close to some seen trial's on its own: checking a conditional knob alone for near-copies
    # would replace every one of the model's proposals by a uniform draw (mean distance to 0.2 about 0.34).
    study = optuna.create_study(sampler=RungTPESampler(seed=0, random_fraction=0.0, n_startup_trials=8))
    for _ in range(60):
        trial = study.ask()
        kind = trial.suggest_categorical("kind", ["a", "b"])
        value = abs(trial.suggest_float(f"{kind}_x", 0.0, 1.0) - 0.2) + (0.5 if kind == "b" else 0.0)
        trial.report(value, 1)
        study.tell(trial, value)
    modelled = [t.params["a_x"] for t in study.trials[30:] if "a_x" in t.params]
    assert len(modelled) >= 10 and sum(abs(x - 0.2) for x in modelled) / len(modelled) < 0.15, modelled


def test_half_the_random_share_is_drawn_about_the_documented_configs():
    # PriorBand's every-knob prior (local_moves=False), whose step a local move takes too. One documented config at x = 0.1
    # of [0, 1]: half the draws come from a Gaussian of width 0.2 about it, truncated to [0, 1], where 77 % fall below 0.3;
    # uniform draws put 30 % there. A categorical keeps the documented choice 2 times in 3.
    sampler = RungTPESampler(seed=0, random_fraction=1.0, prior=[{"x": 0.1, "kind": "b", "n": 2}], local_moves=False)
    study = optuna.create_study(sampler=sampler)
    for _ in range(300):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_categorical("kind", ["a", "b", "c"])
        trial.suggest_int("n", 1, 64, log=True)
        study.tell(trial, 0.0)
    params = [t.params for t in study.trials]
    below = sum(p["x"] < 0.3 for p in params) / len(params)
    assert 0.45 < below < 0.65  # (77 % + 30 %) / 2 = 54 %; the prior alone or no prior would be far off
    assert sum(p["x"] > 0.7 for p in params) > 30  # the uniform half still reaches the far end
    assert 0.4 < sum(p["kind"] == "b" for p in params) / len(params) < 0.65  # (2/3 + 1/9 + 1/3) / 2 = 0.56
    assert all(isinstance(p["n"], int) and 1 <= p["n"] <= 64 for p in params)


def test_draws_about_a_config_at_the_bounds_stay_inside_and_never_repeat_it():
    # A documented config at both upper bounds: the Gaussian about it is truncated to the range, so the draws with every
    # knob moved stay inside and none repeats a bound's value (clipped, half of them landed on it). 87 % of them fall above
    # 0.7 of the range. A local move takes the same step.
    sampler = RungTPESampler(seed=0, random_fraction=1.0, prior=[{"x": 1.0, "lr": 0.3}], local_moves=False)
    study = optuna.create_study(sampler=sampler)
    for _ in range(300):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("lr", 1e-4, 0.3, log=True)
        study.tell(trial, 0.0)
    params = [t.params for t in study.trials]
    assert all(0.0 <= p["x"] < 1.0 and 1e-4 <= p["lr"] < 0.3 for p in params)
    assert len({(p["x"], p["lr"]) for p in params}) == len(params)
    assert 0.48 < sum(p["x"] > 0.7 for p in params) / len(params) < 0.68  # (87 % + 30 %) / 2 = 58 %


def test_the_incumbent_candidate_draws_half_the_random_share_about_the_trial_leading_at_a_rung():
    # Three trials reached epoch 3; the one at x = 0.9 ("c") leads there, though another trained longer. Half the draws are
    # then about it, every knob moved (bohb_incumbent's shape): 77 % of those fall above 0.7 against 30 % of uniform ones
    # (54 % in all), and "c" is drawn 1/2 x 1/3 + 1/2 x (2/3 + 1/9) = 56 % of the time. Without the candidate, 30 % and 33 %.
    kind = CategoricalDistribution(["a", "b", "c"])

    def drawn(incumbent_draws: bool) -> list[tuple[float, str]]:
        sampler = RungTPESampler(seed=0, random_fraction=1.0, incumbent_draws=incumbent_draws, local_moves=False)
        study = optuna.create_study(sampler=sampler)
        for x, k, curve in [(0.1, "a", {1: 0.6, 3: 0.5, 9: 0.4}), (0.5, "b", {1: 0.7, 3: 0.6}), (0.9, "c", {1: 0.5, 3: 0.2})]:
            study.add_trial(create_trial(
                state=TrialState.PRUNED, params={"x": x, "kind": k}, distributions={"x": X, "kind": kind}, intermediate_values=curve,
            ))  # fmt: skip
        draws = []
        for _ in range(400):
            trial = study.ask()
            draws.append((trial.suggest_float("x", 0.0, 1.0), trial.suggest_categorical("kind", ["a", "b", "c"])))
            study.tell(trial, 1.0)  # no curve: the leader stays the same
        return draws

    about_leader, uniform = drawn(True), drawn(False)
    assert 0.45 < sum(x > 0.7 for x, _ in about_leader) / 400 < 0.63
    assert 0.46 < sum(k == "c" for _, k in about_leader) / 400 < 0.66
    assert 0.22 < sum(x > 0.7 for x, _ in uniform) / 400 < 0.38


def test_a_draw_about_the_documented_config_keeps_it_but_for_one_or_two_knobs_it_moves_a_step():
    # Half the random share is drawn about the documented config, as local moves: each keeps 2 or 3 of its 4 knobs exactly
    # and changes the others, a choice to another one, a float by a step of about a fifth of its range (a uniform redraw
    # would move it by a quarter or more at the median). A uniform draw keeps no float, and the choice a third of the time.
    documented = {"x": 0.5, "y": 0.25, "z": 0.75, "kind": "a"}
    study = optuna.create_study(sampler=RungTPESampler(seed=0, random_fraction=1.0, prior=[documented]))
    kept, steps = [], []
    for _ in range(400):
        trial = study.ask()
        params = {name: trial.suggest_float(name, 0.0, 1.0) for name in ("x", "y", "z")}
        params["kind"] = trial.suggest_categorical("kind", ["a", "b", "c"])
        study.tell(trial, 1.0)
        same = [name for name, value in documented.items() if params[name] == value]
        kept.append(len(same))
        if len(same) >= 2:
            steps += [abs(params[name] - documented[name]) for name in ("x", "y", "z") if name not in same]
    moves = [count for count in kept if count >= 2]
    assert 0.42 < len(moves) / 400 < 0.58
    assert set(moves) == {2, 3} and 0.38 < moves.count(3) / len(moves) < 0.62
    assert 0.08 < statistics.median(steps) < 0.2


def test_priorbands_own_prior_moves_every_knob_of_the_documented_config():
    # local_moves=False (the benchmark's ablation): every float of a draw about the documented config moves.
    documented = {"x": 0.5, "y": 0.25}
    study = optuna.create_study(sampler=RungTPESampler(seed=0, random_fraction=1.0, prior=[documented], local_moves=False))
    changed = []
    for _ in range(100):
        trial = study.ask()
        params = {name: trial.suggest_float(name, 0.0, 1.0) for name in documented}
        study.tell(trial, 1.0)
        changed.append(sum(params[name] != value for name, value in documented.items()))
    assert set(changed) == {2}


def test_where_configs_are_documented_a_quarter_of_the_random_share_moves_one_or_two_knobs_of_the_leader():
    # PriorBand's incumbent: with a documented config, half the random draws are about it and half the rest about the trial
    # leading at epoch 3 ("c", x = 0.9), each keeping 2 or 3 of its 4 knobs; with none documented, every draw is uniform and
    # keeps no float of the leader.
    kind = CategoricalDistribution(["a", "b", "c"])
    leader = {"x": 0.9, "y": 0.1, "z": 0.5, "kind": "c"}

    def kept_of_leader(prior: list[dict]) -> list[int]:
        study = optuna.create_study(sampler=RungTPESampler(seed=0, random_fraction=1.0, prior=prior))
        for params, curve in [
            (leader, {1: 0.5, 3: 0.2}),
            ({**leader, "x": 0.1}, {1: 0.6, 3: 0.5}),
            ({**leader, "y": 0.7}, {3: 0.6}),
        ]:
            study.add_trial(create_trial(
                state=TrialState.PRUNED, params=params, distributions={"x": X, "y": X, "z": X, "kind": kind}, intermediate_values=curve,
            ))  # fmt: skip
        kept = []
        for _ in range(400):
            trial = study.ask()
            params = {name: trial.suggest_float(name, 0.0, 1.0) for name in ("x", "y", "z")}
            params["kind"] = trial.suggest_categorical("kind", ["a", "b", "c"])
            study.tell(trial, 1.0)  # no curve: the leader stays the same
            kept.append(sum(params[name] == value for name, value in leader.items()))
        return kept

    documented = kept_of_leader([{"x": 0.2, "y": 0.8, "z": 0.3, "kind": "a"}])
    assert 0.18 < sum(count >= 2 for count in documented) / 400 < 0.32
    assert max(kept_of_leader([])) <= 1


def test_bohb_is_a_registered_search_method_whose_prior_is_the_spaces_baselines():
    assert "bohb" in SAMPLERS
    space = load_space(SPACES / "tiny.py")
    sampler = make_sampler("bohb", space=space, settings=SamplerSettings(seed=1))
    assert isinstance(sampler, RungTPESampler) and sampler._prior == list(space.baselines.values())


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_a_resumed_study_continues_from_what_is_stored(tmp_path, fraction):
    # The sampler keeps nothing but the storage: a new sampler on the reopened study reads the same trials.
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="s", sampler=RungTPESampler(seed=0, random_fraction=fraction))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)
    again = optuna.load_study(study_name="s", storage=url, sampler=RungTPESampler(seed=1, random_fraction=fraction))
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert len(again.trials) == 15 and all(t.state == TrialState.COMPLETE for t in again.trials)


def tiny_study_given(tmp_path, tune_here, curves: list[dict[int, float]]) -> tuple[str, int]:
    """A tiny-space study made by a real 2-trial `tune run`, then given a finished trial for each curve (COMPLETE where it
    reaches the last epoch, 4, else PRUNED); its URL and how many trials it then holds."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune_here("run", SPACES / "tiny.py", "--storage", url, "--trials", 2, "--seed", 0, cwd=tmp_path, check=True)
    study = optuna.load_study(study_name="tiny", storage=url)
    knobs = load_space(SPACES / "tiny.py").knobs
    distributions = {name: knobs[name].distribution() for name in ("model.hidden", "optimizer.lr")}
    for n, curve in enumerate(curves):
        last = max(curve)
        study.add_trial(create_trial(
            state=TrialState.COMPLETE if last == 4 else TrialState.PRUNED, value=curve[last], intermediate_values=curve,
            distributions=distributions, params={"model.hidden": 2 + n, "optimizer.lr": 1e-3 * (1 + n)},
            user_attrs={"epochs": last},
        ))  # fmt: skip
    return url, len(study.trials)


def test_bohb_brackets_first_judges_new_trials_later_once_the_stored_ranking_is_shown_to_reverse(tmp_path, tune_here):
    # A real `tune run` (local Ray, tiny Lightning models, SQLite). The tiny space's rungs are epochs 1, 2 and 4, so its
    # brackets first judge at 1 or 2. The study is made by a first run, then given 20 finished trials whose epoch-1
    # ranking reverses by epoch 4 (as a warm-up would make it): the next run must judge its new trials first at epoch 2.
    reversing = [{1: 0.1 + n / 100, 2: 0.4 - n / 100, 4: 0.3 - n / 100} for n in range(20)]
    url, before = tiny_study_given(tmp_path, tune_here, reversing)
    tune_here("run", SPACES / "tiny.py", "--storage", url, "--trials", before + 4, "--sampler", "bohb-brackets",
              "--seed", 0, cwd=tmp_path, check=True)  # fmt: skip
    new = optuna.load_study(study_name="tiny", storage=url).trials[before:]
    assert len(new) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in new), new
    assert [t.user_attrs[ATTR_FIRST_RUNG] for t in new] == [2] * 4
    assert all(max(t.intermediate_values) >= 2 for t in new), "a trial was judged at epoch 1, before its first rung"
    assert optuna.load_study(study_name="tiny", storage=url).user_attrs[STUDY_ASHA]["brackets"] == BOHB_BRACKETS


def test_bohb_gated_trains_no_trial_past_the_last_rung_that_cannot_pass_the_best_finished_one(tmp_path, tune_here):
    # A real `tune run`. The tiny space's rungs are epochs 1, 2 and 4 of 4, so the gate is epoch 2. The study is made by a
    # first run, then given one finished trial far ahead of any real one at epoch 2 and 8 stopped ones far behind, so that
    # ASHA's own bars (the medians at epochs 1 and 2) let every new trial through: only the gate can stop them at epoch 2,
    # where none can reach the given trial's 1e-6 gaining what the first run's trials gained after it.
    best = {1: 9.0, 2: 1e-6, 4: 1e-6}
    url, before = tiny_study_given(tmp_path, tune_here, [best, *({1: 9 + n / 10, 2: 9 + n / 10} for n in range(8))])
    tune_here("run", SPACES / "tiny.py", "--storage", url, "--trials", before + 4, "--sampler", "bohb-gated",
              "--seed", 0, cwd=tmp_path, check=True)  # fmt: skip
    study = optuna.load_study(study_name="tiny", storage=url)
    new = study.trials[before:]
    assert [(t.state, max(t.intermediate_values)) for t in new] == [(TrialState.PRUNED, 2)] * 4, new
    assert study.user_attrs[STUDY_ASHA]["gated"] is True
