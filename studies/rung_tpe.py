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

Everything else is Optuna's TPESampler (its estimators, candidates and acquisition); what is written
here is only the choice of which trials are good and which are bad, which TPESampler does not let a
caller set. The documented configs a space declares run first, as enqueued trials.

Example::

    import optuna
    from studies.rung_tpe import RungTPESampler

    study = optuna.create_study(sampler=RungTPESampler(seed=0))
"""

from __future__ import annotations

import heapq
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
        self._reached: dict[int, int] = {}  # a finished trial's last epoch: it never changes, so it is read once

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._coin = np.random.default_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        if self._coin.random() < self._random_fraction:
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
        return super().sample_independent(study, trial, param_name, param_distribution)

    def _sample(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        others = [t for t in study._get_trials(deepcopy=False, states=states, use_cache=False) if t.number != trial.number]
        good, bad = self.split_at_rung(others, study.direction, len(search_space))
        if not good:
            return {name: self._random_sampler.sample_independent(study, trial, name, d) for name, d in search_space.items()}
        # TPESampler._sample's last steps, on our split: candidates from the good estimator, the best by l(x)/g(x).
        below = self._build_parzen_estimator(study, search_space, good, handle_below=True)
        above = self._build_parzen_estimator(study, search_space, bad, handle_below=False)
        candidates = below.sample(self._rng.rng, self._n_ei_candidates)
        chosen = TPESampler._compare(candidates, self._compute_acquisition_func(candidates, below, above))
        return {name: distribution.to_external_repr(chosen[name]) for name, distribution in search_space.items()}

    def split_at_rung(
        self, trials: list[FrozenTrial], direction: StudyDirection, dimensions: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Good and bad trials, judged by their value at the highest epoch that enough trials reached."""
        finished = [t for t in trials if t.state != TrialState.RUNNING and t.intermediate_values]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not finished:
            return [], trials
        for t in finished:
            if t.number not in self._reached:
                self._reached[t.number] = max(t.intermediate_values)
        needed = self._min_points or dimensions + 1
        rung = heapq.nlargest(needed, (self._reached[t.number] for t in finished))[-1]
        sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
        scored = []
        for t in finished:
            if self._reached[t.number] >= rung:
                value = _value_at(t, rung)
                scored.append((sign * value if math.isfinite(value) else math.inf, t.number, t))
        scored.sort(key=lambda item: item[:2])
        n_good = min(MAX_GOOD, max(1, math.ceil(self._top_fraction * len(scored))))
        good = [t for score, _, t in scored[:n_good] if math.isfinite(score)]
        judged = {t.number for t in good}
        bad = [t for t in finished if t.number not in judged]  # in trial order, as Optuna lists them: the latest last
        room = MAX_BAD - len(running)
        return good, (bad[-room:] if room > 0 else []) + running[-MAX_BAD:]


def _value_at(trial: FrozenTrial, epoch: int) -> float:
    """The trial's value at ``epoch``, or at the latest epoch before it that it reported (a continued trial may skip some)."""
    values = trial.intermediate_values
    earlier = [e for e in values if e <= epoch]
    return values[max(earlier)] if earlier else values[min(values)]
