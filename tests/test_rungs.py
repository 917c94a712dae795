"""ASHA's rungs rebuilt from a real SQLite study, driven as Ray Tune drives its scheduler, with Ray's own trial objects
(stubs: no Ray is started)."""

import random

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from studies.driver.rungs import StoredRungsASHA, stored_curves, stored_rungs_asha
from studies.space import AshaSettings
from studies.store.storage import open_storage

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


@pytest.fixture
def scheduler(tmp_path):
    """ASHA over 8 epochs (rungs 1, 2, 4, 8) on a study that holds two finished trials and one its lost driver left at epoch 3."""
    study = optuna.create_study(study_name="stored", storage=open_storage(f"sqlite:///{tmp_path / 'rungs.db'}", create=True))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.05, intermediate_values={1: 0.2, 2: 0.1, 4: 0.08, 8: 0.05}))
    study.add_trial(create_trial(state=TrialState.PRUNED, value=0.25, intermediate_values={1: 0.3, 2: 0.25}))
    study.add_trial(create_trial(state=TrialState.RUNNING, intermediate_values={1: 0.9, 2: 0.8, 3: 0.7}))
    asha = StoredRungsASHA(stored_curves(study), time_attr="epoch", max_t=8, grace_period=1, reduction_factor=2)
    assert asha.set_search_properties("val_loss", "min")  # what Ray Tune does when the run starts
    return asha


def gated_at_4(leader) -> str:
    """The reason the gate gives a trial it stops at epoch 4, ``leader`` the best trial that trained every epoch."""
    return (
        f"gate: at epoch 4 too far behind trial {leader}, the best that trained every epoch, to pass it even gaining from here "
        "as much as any such trial did"
    )


def added(scheduler, trial_id, optuna_trial):
    trial = Trial("train_trial", config={"optuna_trial": optuna_trial}, trial_id=trial_id, stub=True)
    scheduler.on_trial_add(None, trial)
    return trial


def report(scheduler, trial, epoch, val_loss):
    return scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_loss": val_loss})


def test_a_new_trial_is_judged_against_every_stored_trial_at_a_rung(scheduler):
    # Rung 1 holds 0.2, 0.3 and 0.9: the median, 0.3, is the bar.
    assert report(scheduler, added(scheduler, "new_a", 3), 1, 0.25) == CONTINUE
    assert report(scheduler, added(scheduler, "new_b", 4), 1, 0.5) == STOP
    assert scheduler.stop_reasons == {"new_b": "ASHA: outside the best 1/2 at epoch 1"}  # what the bridge stores as pruned_by


def test_a_continued_trial_is_not_judged_again_at_the_rungs_it_passed(scheduler):
    continued = added(scheduler, "again", 2)  # trial 2, restarted from epoch 1 by the next driver
    assert [report(scheduler, continued, epoch, 0.95) for epoch in (1, 2, 3)] == [CONTINUE] * 3
    assert report(scheduler, continued, 4, 0.95) == STOP  # rung 4 it had not reached: judged there, against 0.08
    ((_, recorded),) = [(rung, recorded) for rung, recorded in scheduler._brackets[0]._rungs if rung == 1]
    assert sorted(recorded.values()) == [-0.9, -0.3, -0.2]  # its own value kept once, under its new Ray trial


def test_with_nothing_stored_and_no_gate_it_decides_as_rays_asha():
    # `tune run --sampler random` and the benchmark's stock random + ASHA must differ only in their random draws: 60 noisy
    # linear curves, their epochs interleaved as 4 workers send them, get the same decision from both at every epoch.
    ours = stored_rungs_asha(AshaSettings(max_epochs=27, grace_period=1, reduction_factor=3), {}, "val_loss", "min")
    rays = ASHAScheduler(time_attr="epoch", metric="val_loss", mode="min", max_t=27, grace_period=1, reduction_factor=3)
    rng = random.Random(0)
    waiting = list(range(60))
    training = {}  # trial number -> (its Trial in each scheduler, epochs trained, first value, change per epoch)
    ours_decided, rays_decided = [], []
    while waiting or training:
        while len(training) < 4 and waiting:
            number = waiting.pop(0)
            trials = [Trial("train_trial", config={"optuna_trial": number}, trial_id=f"t{number}", stub=True) for _ in "ab"]
            ours.on_trial_add(None, trials[0])
            rays.on_trial_add(None, trials[1])
            training[number] = (trials, 0, rng.uniform(0.1, 1.0), rng.uniform(-0.03, 0.03))
        number = rng.choice(sorted(training))
        trials, epoch, first, change = training[number]
        epoch += 1
        val_loss = first + change * epoch + rng.gauss(0, 0.02)
        ours_decided.append(report(ours, trials[0], epoch, val_loss))
        rays_decided.append(report(rays, trials[1], epoch, val_loss))
        training[number] = (trials, epoch, first, change)
        if ours_decided[-1] == STOP or epoch == 27:
            del training[number]
    assert ours_decided == rays_decided
    assert ours_decided.count(STOP) > 30  # many trials were judged and stopped, not only continued


def test_a_trial_goes_to_the_bracket_whose_first_rung_the_bridge_chose():
    # Rungs 1, 2, 4 of 8 epochs, in brackets first judging at 1 and at 2 (Ray's brackets keep their rungs apart).
    asha = stored_rungs_asha(AshaSettings(max_epochs=8, grace_period=1, reduction_factor=2, brackets=2), {}, "val_loss", "min")
    assert [bracket._rungs[-1][0] for bracket in asha._brackets] == [1, 2]

    def added_at(first_rung, name):
        trial = Trial("train_trial", config={"optuna_trial": name, "first_rung": first_rung}, trial_id=name, stub=True)
        asha.on_trial_add(None, trial)
        return trial

    for first_rung in (1, 2):  # a good trial in each bracket sets its bar
        leader = added_at(first_rung, f"leader_{first_rung}")
        assert [report(asha, leader, epoch, 0.1) for epoch in (1, 2)] == [CONTINUE, CONTINUE]
    # Far worse than the leaders at every epoch: stopped at the first rung of its bracket, not before.
    assert report(asha, added_at(1, "poor_1"), 1, 0.9) == STOP
    poor_2 = added_at(2, "poor_2")
    assert [report(asha, poor_2, epoch, 0.9) for epoch in (1, 2)] == [CONTINUE, STOP]


@pytest.mark.parametrize("gated", [True, False])
def test_past_the_last_rung_only_a_trial_that_may_still_end_better_than_the_best_finished_one(gated):
    # 8 epochs, rungs 1, 2, 4: stored trial 0 trained all 8 (0.3 at rung 4, 0.2 at the end); three others stopped at rung 4
    # far behind, so ASHA's own bar there (the median) is lenient: 0.9.
    finished = {1: 0.5, 2: 0.4, 4: 0.3, 8: 0.2}
    curves = {0: finished, **{n: {1: 0.6, 2: 0.7, 4: 0.9 + n / 100} for n in (1, 2, 3)}}
    settings = AshaSettings(max_epochs=8, grace_period=1, reduction_factor=2, gated=gated)
    asha = stored_rungs_asha(settings, curves)
    assert asha.set_search_properties("val_loss", "min")

    earlier = []

    def at_the_last_rung(name, value):
        trial = added(asha, name, name)
        early = 0.1 + len(earlier) / 1000  # far ahead of the stored trials, and no repeat of another new trial's epochs
        earlier.append(trial)
        assert [report(asha, trial, epoch, early) for epoch in (1, 2, 3)] == [CONTINUE] * 3
        return trial, report(asha, trial, 4, value)

    behind, decision = at_the_last_rung("behind", 0.5)  # within ASHA's bar, behind the finished trial's 0.3 at rung 4
    assert decision == (STOP if gated else CONTINUE)
    leader, decision = at_the_last_rung("leader", 0.25)
    assert decision == CONTINUE
    assert [report(asha, leader, epoch, 0.15) for epoch in (5, 6, 7)] == [CONTINUE] * 3
    assert report(asha, leader, 8, 0.1) == STOP  # its last epoch: now the best finished trial, 0.25 at rung 4
    _, decision = at_the_last_rung("close", 0.28)  # ahead of the stored trial's 0.3 there, behind the new leader's 0.25
    assert decision == (STOP if gated else CONTINUE)
    _, decision = at_the_last_rung("tie", 0.25)  # the new leader's value exactly: it cannot beat the recommended trial
    assert decision == (STOP if gated else CONTINUE)
    gate_stops = {
        "behind": gated_at_4(0),
        "close": gated_at_4("leader"),
        "tie": gated_at_4("leader"),
    }
    assert asha.stop_reasons == (gate_stops if gated else {})


@pytest.mark.parametrize("most_gain", [True, False])
def test_past_the_last_rung_goes_a_trial_that_gaining_as_much_as_any_finished_one_did_would_end_best(most_gain):
    # 8 epochs, rungs 1, 2, 4. Stored trial 0 went from 0.3 at rung 4 to 0.2 at the end (gained 0.1) and leads; stored trial
    # 4, a late starter, went from 0.6 to 0.25 (gained 0.35). A trial at 0.5 at rung 4 that gains 0.35 ends at 0.15, ahead.
    curves = {
        0: {1: 0.5, 2: 0.4, 4: 0.3, 8: 0.2},
        4: {1: 0.8, 2: 0.7, 4: 0.6, 8: 0.25},
        **{n: {1: 0.6, 2: 0.7, 4: 0.9 + n / 100} for n in (1, 2, 3)},
    }
    settings = AshaSettings(max_epochs=8, grace_period=1, reduction_factor=2, gated=True)
    asha = stored_rungs_asha(settings, curves, gate_by_most_gain=most_gain)
    assert asha.set_search_properties("val_loss", "min")
    decisions = {}
    # 0.5 at rung 4, gaining 0.35, ends at 0.15, ahead of trial 0's 0.2; 0.56 would end at 0.21, behind it.
    for name, at_rung in (("within", 0.5), ("beyond", 0.56)):
        trial = added(asha, name, name)
        early = 0.1 if name == "within" else 0.11  # no repeat of the other's first epochs
        decisions[name] = [
            report(asha, trial, epoch, value) for epoch, value in ((1, early), (2, early), (3, early), (4, at_rung))
        ]
    # By the leader's own gain (the gate before), both are behind trial 0's 0.3 at rung 4.
    assert decisions == {"within": [CONTINUE] * 4 if most_gain else [CONTINUE] * 3 + [STOP], "beyond": [CONTINUE] * 3 + [STOP]}


def test_a_trial_the_bridge_started_ungated_passes_the_last_rung_on_ashas_bar_alone():
    # As above: stored trial 0 is 0.3 at rung 4; ASHA's own bar there is 0.9. The bridge lifts the gate for "free" only.
    curves = {0: {1: 0.5, 2: 0.4, 4: 0.3, 8: 0.2}, **{n: {1: 0.6, 2: 0.7, 4: 0.9 + n / 100} for n in (1, 2, 3)}}
    asha = stored_rungs_asha(AshaSettings(max_epochs=8, grace_period=1, reduction_factor=2, gated=True), curves)
    assert asha.set_search_properties("val_loss", "min")
    decisions = {}
    for name, gated in (("judged", True), ("free", False)):
        trial = Trial("train_trial", config={"optuna_trial": name, "gated": gated}, trial_id=name, stub=True)
        asha.on_trial_add(None, trial)
        early = 0.1 if gated else 0.11  # no repeat of the other's first epochs
        decisions[name] = [report(asha, trial, epoch, value) for epoch, value in ((1, early), (2, early), (3, early), (4, 0.5))]
    assert decisions == {"judged": [CONTINUE] * 3 + [STOP], "free": [CONTINUE] * 4}  # 0.5: behind trial 0's 0.3 at rung 4
    assert asha.stop_reasons == {"judged": gated_at_4(0)}


@pytest.mark.parametrize("gated", [True, False])
def test_a_trial_that_repeats_an_earlier_ones_first_two_epochs_exactly_is_stopped(tmp_path, gated):
    # Stored: trial 0, its driver lost at epoch 3, and trial 1, stopped far behind: ASHA's own bars let the others through.
    study = optuna.create_study(study_name="repeats", storage=open_storage(f"sqlite:///{tmp_path / 'repeats.db'}", create=True))
    study.add_trial(create_trial(state=TrialState.RUNNING, intermediate_values={1: 0.5, 2: 0.4, 3: 0.35}))
    study.add_trial(create_trial(state=TrialState.PRUNED, value=0.9, intermediate_values={1: 0.9, 2: 0.9}))
    asha = stored_rungs_asha(AshaSettings(8, 1, 2, gated=gated), stored_curves(study))
    assert asha.set_search_properties("val_loss", "min")
    repeated = STOP if gated else CONTINUE

    def trained(name, number, curve):
        trial = added(asha, name, number)
        return [report(asha, trial, epoch, value) for epoch, value in enumerate(curve, start=1)]

    assert trained("copy", 2, [0.5, 0.4]) == [CONTINUE, repeated]  # the stored trial's first two epochs
    assert trained("first", 3, [0.45, 0.39, 0.3]) == [CONTINUE] * 3
    assert trained("again", 4, [0.45, 0.39]) == [CONTINUE, repeated]  # a running trial's
    assert trained("near", 5, [0.45, 0.38, 0.3]) == [CONTINUE] * 3  # the same first epoch only
    assert trained("continued", 0, [0.5, 0.4, 0.35]) == [CONTINUE] * 3  # trial 0 trained again from its start
    repeats = {
        "copy": "repeat: its first 2 epochs are trial 0's exactly",
        "again": "repeat: its first 2 epochs are trial 3's exactly",
    }
    assert asha.stop_reasons == (repeats if gated else {})


def test_a_continued_trial_is_not_gated_again_at_the_last_rung_it_passed():
    # Trial 1 passed rung 4 (0.5, behind trial 0's 0.3 there) before its driver was lost at epoch 5; continued, it trains on.
    curves = {0: {1: 0.5, 2: 0.4, 4: 0.3, 8: 0.2}, 1: {1: 0.4, 2: 0.45, 4: 0.5, 5: 0.45}}
    asha = stored_rungs_asha(AshaSettings(8, 1, 2, gated=True), curves)
    assert asha.set_search_properties("val_loss", "min")
    continued = added(asha, "again", 1)
    assert [report(asha, continued, epoch, 0.5) for epoch in (4, 5, 6)] == [CONTINUE] * 3
