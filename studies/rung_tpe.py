"""BOHB's search model on asynchronous ASHA: TPE fitted on the values trials had at the same rung.

Optuna's TPE ranks every COMPLETE trial above every PRUNED one. Under ASHA that locks in the first
lucky trials: the early ones are promoted freely, complete, and TPE then proposes near-copies of
them, which ASHA promotes in turn. BOHB (Falkner, Klein and Hutter, ICML 2018) avoids it in two ways,
both kept here:

- **One budget at a time.** The model compares trials at the highest epoch that at least
  ``min_points`` trials have reached (with ASHA, a rung), by their value there, whether they were
  later PRUNED or COMPLETE. The best ``top_fraction`` of those are "good"; the rest, the trials ASHA
  stopped before that epoch and the RUNNING ones (Optuna's constant liar) are "bad". TPE then proposes
  where good is likely and bad is not (its Parzen estimators, multivariate as in BOHB).
- **A random share.** ``random_fraction`` of the trials are drawn uniformly, whatever the model says,
  so a misleading early rung costs at most the model's share of the budget.

A trial outside the study's constraints (``--constrain``) is never among the good ones, as in Optuna's TPE.

Everything else is Optuna's TPESampler (its estimators, candidates and acquisition); what is written
here is only the choice of which trials are good and which are bad, which TPESampler does not let a
caller set. The documented configs a space declares run first, as enqueued trials.

Example::

    import optuna
    from studies.rung_tpe import RungTPESampler

    study = optuna.create_study(sampler=RungTPESampler(seed=0))
"""

from __future__ import annotations

import bisect
import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

# BOHB's defaults (Falkner et al. 2018, section 4 and its released code): the best 15 % of a budget's observations as
# the good ones, a model once a budget has dimensions + 1 points. BOHB draws a third at random; half measured more robust
# on the search-quality benchmark's three families (benchmarks/RESULTS.md, the random-share ablations), so half it is.
RANDOM_FRACTION = 1 / 2
TOP_FRACTION = 0.15
MAX_GOOD = 25  # as Optuna's TPE caps its good set: past this, more good points only blur the estimator
# The bad estimator sees at most this many trials, the latest: a suggestion then costs the same at 10 000 trials as at
# a few hundred, and the latest trials are where the search is now.
MAX_BAD = 300


class RungTPESampler(TPESampler):
    """TPE whose good and bad trials are judged at one rung, with a share of random configs (BOHB on ASHA)."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        random_fraction: float = RANDOM_FRACTION,
        top_fraction: float = TOP_FRACTION,
        min_points: int | None = None,
        n_startup_trials: int = 10,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate: BOHB's joint model
            # Multivariate over the knobs every trial has; a conditional knob is modelled on its own, as Optuna's TPE does.
            super().__init__(
                seed=seed,
                n_startup_trials=n_startup_trials,
                multivariate=True,
                constant_liar=True,
            )
        self._random_fraction = random_fraction
        self._top_fraction = top_fraction
        self._min_points = min_points
        self._coin = np.random.default_rng(seed)
        self._random_trials: set[int] = set()
        self._scores: dict[StudyDirection, _RungScores] = {}
        self._last_split: tuple[tuple[int, int] | None, Any] = (None, None)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._coin = np.random.default_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        drawn = self._coin.random() < self._random_fraction
        # use_cache: the trials Study.ask read once for this suggestion (TPESampler's own calls share them too).
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
        if drawn or len(finished) < self._n_startup_trials:  # TPE's own start: random until it has n_startup_trials
            self._random_trials.add(trial.number)

    def after_trial(self, study, trial, state, values) -> None:
        super().after_trial(study, trial, state, values)
        self._random_trials.discard(trial.number)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number in self._random_trials:
            return {}  # each knob is then drawn by sample_independent, at random
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if trial.number in self._random_trials:
            return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)
        # TPESampler.sample_independent without its warning, which scans every trial for each conditional knob.
        return self._sample(study, trial, {param_name: param_distribution})[param_name]

    def _sample(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        good, bad = self._split_for(study, trial, len(search_space))
        if not good:
            return {name: self._random_sampler.sample_independent(study, trial, name, d) for name, d in search_space.items()}
        # TPESampler._sample's last steps, on our split: candidates from the good estimator, the best by l(x)/g(x).
        below = self._build_parzen_estimator(study, search_space, good, handle_below=True)
        above = self._build_parzen_estimator(study, search_space, bad, handle_below=False)
        candidates = below.sample(self._rng.rng, self._n_ei_candidates)
        chosen = TPESampler._compare(candidates, self._compute_acquisition_func(candidates, below, above))
        return {name: distribution.to_external_repr(chosen[name]) for name, distribution in search_space.items()}

    def _split_for(self, study, trial: FrozenTrial, dimensions: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """The split for ``trial``, made once: its conditional knobs, each sampled on its own, share it."""
        key = (trial.number, dimensions)
        if self._last_split[0] != key:
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=True)
            others = [t for t in trials if t.number != trial.number]
            self._last_split = (key, self.split_at_rung(others, study.direction, dimensions))
        return self._last_split[1]

    def split_at_rung(
        self, trials: list[FrozenTrial], direction: StudyDirection, dimensions: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Good and bad trials, judged by their value at the highest epoch that enough trials reached."""
        scores = self._scores.setdefault(direction, _RungScores(1.0 if direction == StudyDirection.MINIMIZE else -1.0))
        running = []
        for t in trials:
            if t.state == TrialState.RUNNING:
                running.append(t)
            elif t.intermediate_values and t.number not in scores.trials:
                scores.add(t)
        if not scores.trials:
            return [], trials
        ranked = scores.ranked_at(scores.rung(self._min_points or dimensions + 1))
        n_good = min(MAX_GOOD, max(1, math.ceil(self._top_fraction * len(ranked))))
        good = [scores.trials[number] for score, number in ranked[:n_good] if math.isfinite(score)]
        return good, scores.latest_besides({t.number for t in good}, MAX_BAD - len(running)) + running[-MAX_BAD:]


class _RungScores:
    """The finished trials seen so far, ranked at each rung asked for, kept up to date as trials finish.

    A finished trial never changes, so each is read and ranked once: a suggestion then costs about the same
    at 10 000 trials as at a few hundred, where sorting every trial at every suggestion would not.
    """

    def __init__(self, sign: float):
        self.sign = sign  # 1 to minimise, -1 to maximise: ranks sort ascending
        self.trials: dict[int, FrozenTrial] = {}
        self.numbers: list[int] = []  # the finished trials' numbers, ascending
        self.reached: dict[int, int] = {}  # how many finished trials stopped at each last epoch
        self.ranks: dict[int, list[tuple[float, int]]] = {}  # rung -> (score, number) of the trials that reached it, sorted

    def add(self, trial: FrozenTrial) -> None:
        last = max(trial.intermediate_values)
        self.trials[trial.number] = trial
        bisect.insort(self.numbers, trial.number)
        self.reached[last] = self.reached.get(last, 0) + 1
        for rung, ranked in self.ranks.items():
            if last >= rung:
                bisect.insort(ranked, self._score(trial, rung))

    def rung(self, needed: int) -> int:
        """The highest epoch at least ``needed`` finished trials reached (with fewer trials, the lowest any stopped at)."""
        seen = 0
        for epoch in sorted(self.reached, reverse=True):
            seen += self.reached[epoch]
            if seen >= needed:
                return epoch
        return epoch

    def ranked_at(self, rung: int) -> list[tuple[float, int]]:
        if rung not in self.ranks:
            self.ranks[rung] = sorted(self._score(t, rung) for t in self.trials.values() if max(t.intermediate_values) >= rung)
        return self.ranks[rung]

    def latest_besides(self, judged: set[int], room: int) -> list[FrozenTrial]:
        """The latest ``room`` finished trials not in ``judged``, in trial order."""
        latest = []
        for number in reversed(self.numbers):
            if len(latest) >= room:
                break
            if number not in judged:
                latest.append(self.trials[number])
        return latest[::-1]

    def _score(self, trial: FrozenTrial, rung: int) -> tuple[float, int]:
        value = _value_at(trial, rung)
        # A trial outside the study's constraints (Optuna's: a violation above 0) is never a good one.
        good_candidate = math.isfinite(value) and all(v <= 0 for v in trial.constraints.values())
        return (self.sign * value if good_candidate else math.inf, trial.number)


def _value_at(trial: FrozenTrial, epoch: int) -> float:
    """The trial's value at ``epoch``, or at the latest epoch before it that it reported (a continued trial may skip some)."""
    values = trial.intermediate_values
    earlier = [e for e in values if e <= epoch]
    return values[max(earlier)] if earlier else values[min(values)]
