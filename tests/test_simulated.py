"""The simulated clock of the search-quality benchmarks: a paused trial resumes at its next epoch.

Syne Tune's own pause-and-resume schedulers (DyHPO, DEHB) drive it here, on a generated task at small sizes.
"""

from collections import defaultdict

import pytest

from benchmarks import anchors, search_quality
from benchmarks.simulated import Decision, Resume, simulate

BUDGET_TRAININGS = 1


class Logged:
    """An agent as the benchmark builds it, with every epoch it is told of and every trial it resumes written down."""

    def __init__(self, agent):
        self.agent = agent
        self.epochs: dict[str, list[int]] = defaultdict(list)
        self.resumed: list[str] = []

    def ask(self, trial_id):
        asked = self.agent.ask(trial_id)
        if isinstance(asked, Resume):
            self.resumed.append(asked.trial_id)
        return asked

    def epoch_done(self, trial_id, epoch, value, last):
        self.epochs[trial_id].append(epoch)
        return self.agent.epoch_done(trial_id, epoch, value, last)


@pytest.mark.parametrize("method", ["syne_dyhpo", "syne_dehb"])
def test_a_paused_trial_resumes_at_its_next_epoch(method):
    problem = search_quality.problems(smoke=True)[-1]
    budget = BUDGET_TRAININGS * problem.max_epochs
    logged = Logged(anchors.make_agent(method, problem, seed=0, smoke=True))
    record = simulate(logged, problem, seed=0, budget=budget, workers=search_quality.WORKERS)
    assert logged.resumed, f"{method} resumed no trial in {budget} epochs"
    # Every trial, resumed or not, trains its epochs once each and in order, from the first: none restarts or skips.
    for trial_id, epochs in logged.epochs.items():
        assert epochs == list(range(1, len(epochs) + 1)), (trial_id, epochs)
    assert record.spent == budget == sum(len(epochs) for epochs in logged.epochs.values())


class Decaying:
    """A problem whose every config's loss is 1 / epoch: all the resume test needs is epochs to count."""

    name, family, knobs, max_epochs = "decaying", "test", {}, 3

    def observed(self, params, epoch, seed):
        return 1 / epoch

    def regret(self, params):
        return 0.0


class PausesThenResumes:
    """A method that pauses its first trial after epoch 1, then resumes ``resumes`` (a trial id) once."""

    def __init__(self, resumes: str):
        self.resumes = resumes
        self.asked = 0

    def ask(self, trial_id):
        self.asked += 1
        return Resume(self.resumes) if self.asked == 2 else {}

    def epoch_done(self, trial_id, epoch, value, last):
        return Decision.PAUSE if trial_id == "0" and epoch == 1 else Decision.CONTINUE


def test_resuming_a_trial_that_is_not_paused_is_refused():
    with pytest.raises(ValueError, match="resumed trial 7, which is not paused"):
        simulate(PausesThenResumes("7"), Decaying(), seed=0, budget=3, workers=1)
    record = simulate(PausesThenResumes("0"), Decaying(), seed=0, budget=3, workers=1)
    # Trial 0 trained epoch 1, then epochs 2 and 3 after its resume: a full training by the third epoch spent.
    assert record.full_trials == 1 and record.completions[0].spent == 3
