"""BOHB's search model on asynchronous ASHA: TPE fitted on the values trials had at the same rung.

Optuna's TPE ranks every COMPLETE trial above every PRUNED one. Under ASHA that locks in the first
lucky trials: the early ones are promoted freely, complete, and TPE then proposes near-copies of
them, which ASHA promotes in turn. BOHB (Falkner, Klein and Hutter, ICML 2018) avoids it in two ways,
both kept here:

- **One budget at a time.** The model compares trials at the highest epoch that at least
  ``min_points`` trials have reached (with ASHA, a rung; by default the knobs + 1 as in BOHB, or
  ``MAX_RUNG_POINTS`` trials the search drew where that is fewer), by their value there, whether they were
  later PRUNED or COMPLETE. The best ``top_fraction`` of those are "good"; the rest, the trials ASHA
  stopped before that epoch and the RUNNING ones (Optuna's constant liar) are "bad". TPE then proposes
  where good is likely and bad is not (its Parzen estimators, multivariate as in BOHB).
- **A random share.** ``random_fraction`` of the trials are drawn uniformly, whatever the model says,
  so a misleading early rung costs at most the model's share of the budget.

Three additions, none in Optuna's TPE:

- **A rung must show that it ranks as later epochs do.** Under ASHA the rung that enough trials reached is
  often an early one, and an early ranking can reverse (a high learning rate leads at epoch 1 and ends
  worse). Below the highest epoch any trial reached, a rung is modelled only once its ranking agrees with a
  later one: the trials that reached the highest epoch at least ``AGREEMENT_PAIRS`` trials reached, ranked at
  the rung and there, give a Kendall's tau above 0. Until then the config is drawn at random, as BOHB draws
  while a budget has too few points. Hyper-Tune (Li et al., VLDB 2022) weighs each rung's model by how well it
  ranks later results; here the weight is all or nothing.

- **No near-copies.** Of TPE's candidates, one within ``NEAR_COPY`` of a trial the model saw, RUNNING ones
  included (every numeric knob within that share of its range, every categorical equal), is passed over for
  the best of the rest, and when all are near-copies the config is drawn at random: a worker never spends
  epochs re-running a config that has been run or that another worker is training. The check is on the knobs
  every trial has, which TPE draws jointly; a config unlike every seen one there is unlike it whole. A
  conditional knob, drawn on its own, is not checked: alone it is always close to some trial's value.
- **The documented configs as a prior** (PriorBand, Mallik et al., NeurIPS 2023). Where a space
  declares baselines, half of the random share is drawn around one of them instead of uniformly, and half of the rest
  around the trial leading at a rung (PriorBand's incumbent), each as a local move: the config with one or two of its knobs
  moved (``LOCAL_KNOBS``), a numeric knob by a Gaussian step of ``PRIOR_WIDTH`` of its range, truncated to the range, a
  choice to another choice (SMAC's one-exchange neighbourhood, as ConfigSpace draws it). PriorBand moves every knob so (a
  categorical kept with ``PRIOR_KEEP`` chance): ``local_moves=False``. The baselines themselves still run first. Where
  none is declared, the random share is uniform, as in BOHB.

A trial outside the study's constraints (``--constrain``) is never among the good ones, as in Optuna's TPE. Nor is a
trial that diverged (FAIL, reason ``diverged``), which Optuna's TPE leaves out of both sets: here it is bad at every rung,
and where it went past a rung before diverging it ranks last after that rung, so that the rung's check sees that its
leaders did not last. Under ASHA the configs fastest at epoch 1 are often those that diverge later (a learning rate near
its limit); left out, they never counted against the rung that promoted them. Counted, paired over 20 seeds on generated
tasks 8 to 23: -0.046 regret at the full budget, and no change on the families without such divergence.

:class:`FirstRungChoice` answers a scheduler's question from the same rankings: at which rung ASHA should first judge a
new trial. Its brackets (several first rungs) judge new trials at the first rung until the finished trials show that
rung's ranking reversed later, diverged trials included, or that it would now stop the trial leading later; then at the
next (``tune run --sampler bohb-brackets``, and the default ``bohb-gated``). The same evidence on the last rung lifts
``bohb-gated``'s gate there for the trials that start while it holds.

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
import heapq
import itertools
import math
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau, truncnorm

from studies.records import ATTR_BASELINE, ATTR_REASON, REASON_DIVERGED

# BOHB's defaults (Falkner et al. 2018, section 4 and its released code): the best 15 % of a budget's observations as
# the good ones, a model once a budget has dimensions + 1 points. BOHB draws a third at random; half measured more robust
# on the search-quality benchmark's three families (benchmarks/RESULTS.md, the random-share ablations), so half it is.
RANDOM_FRACTION = 1 / 2
TOP_FRACTION = 0.15
# BOHB's dimensions + 1 is what its multivariate KDE needs to be fitted at all; Optuna's Parzen estimator has a prior
# kernel and fits from one point. With many knobs (11 on YAHPO's xgboost, 10 to 18 in search_spaces/) waiting for
# dimensions + 1 trials kept the model on a low rung: a rung 6 trials reached is enough, paired over 60 seeds on YAHPO's
# 15 data sets -0.016 and -0.028 regret at half the budget, -0.014 and -0.018 at the full one (first 5, other 10), no
# measured change on the generated, recorded and synthetic families (20 seeds each, 2026-12-07). The documented configs do
# not count towards the 6: run first and promoted without rivals, they are the first to reach a later rung, and a model
# there is fitted about them. Counted, the Vesuvius space's (18 shared knobs, 7 documented configs) was fitted at epoch 6
# on 4 of them and its leader, and found 0.660 and 0.689 where BOHB's rule found 0.442 and 0.442; not counted, over seeds
# 0 to 4: 0.442, 0.648, 0.758, 0.487, 0.498 against BOHB's rule's 0.442, 0.442, 0.758, 0.429, 0.580 (one study each).
MAX_RUNG_POINTS = 6
MAX_GOOD = 25  # as Optuna's TPE caps its good set: past this, more good points only blur the estimator
# The bad estimator sees at most this many trials, the latest: a suggestion then costs the same at 10 000 trials as at
# a few hundred, and the latest trials are where the search is now.
MAX_BAD = 300
# The fewest trials seen at a rung and a later epoch that show the rung's ranking holds: 4 make 6 pairs, and a tau above 0
# needs 4 of them in the same order. 6 were also measured (a one-off run of the search-quality benchmark's four families):
# a rung waits longer for its check, and at half the budget that was worse on three families, about equal on one.
AGREEMENT_PAIRS = 4
# A first rung is left for a later one only on evidence that it misleads: 5 trials past it whose order there and later is
# opposed at a one-sided 25 % level. "Not shown to hold" (the model's check) moved early trials to sparse late brackets,
# which promote nearly every trial: on the search-quality benchmark's recorded curves, +0.020 regret against random + ASHA
# where this rule measured +0.011 (both 2026-12-04). 5 at 25 % leaves a misleading rung sooner than 8 at 10 % did: paired
# over 40 seeds, -0.012 regret at the full budget on generated tasks 0 to 7 and -0.011 on 8 to 23, at most +0.002 on the
# other families; then on tasks 24 to 39, run once this rule was fixed, -0.024 (benchmarks/default_search.py).
# The same 5 trials also show a rung misleading when their leader later ranks there outside ASHA's best 1/eta now (a Kendall
# test sees mostly configs poor at every epoch). Paired over 40 seeds (20 on tasks 24 to 39), at the full budget: -0.015,
# -0.012 and -0.012 regret on the three generated task sets, -0.005 on YAHPO's first 5, no change on the other 10 or on the
# recorded curves, +0.015 on the two synthetic problems (2026-12-06).
MISLEAD_TRIALS = 5
MISLEAD_P = 0.25
NEAR_COPY = 0.02  # of a knob's range (log range for a log knob): closer on every knob than this is the same config
INCUMBENT_POINTS = 3  # PriorBand's incumbent: the leader of a rung that eta (3) trials reached
# PriorBand's prior (NePS's "medium" confidence, rounded): a baseline's knob moves by a fifth of its range, a choice
# stays with odds 2:1. Each draw is about any of the documented configs. About only the one leading the others once they
# ran (at the highest epoch two reached), paired over 20 seeds on benchmarks/documented.py's tasks: -0.007 regret at half
# the budget where they point at the best, but at the full budget +0.002 there and +0.013 where they point at another
# mode (neither a measured difference), the medians 0.066 to 0.081 and 0.229 to 0.242 (2026-12-07): not taken.
PRIOR_WIDTH = 0.2
PRIOR_KEEP = 2 / 3
# A local move keeps a config but for one or two knobs, as the logs' sweeps moved one knob or crossed two. Paired with
# PriorBand's every-knob prior without its incumbent (the default before) over 20 seeds of benchmarks/documented.py's tasks
# (2026-12-08), regret at the full budget where the documented configs point at the best / at another mode:
# -0.021 (-0.032 to -0.011) / -0.024 (-0.043 to -0.006), medians 0.063 / 0.228 against 0.075 / 0.245. Over seeds 0 to 9:
# local moves about the documented configs alone, -0.020 / -0.009 (-0.038 to +0.021); a moved numeric knob redrawn
# uniformly over its range instead of stepped, -0.012 / +0.023 (-0.001 to +0.047) (2026-12-07). On flyvis the default
# found a config better than the documented ones in 5 of 9 studies of seeds 0 to 4, the one before in 1 of 8, local moves
# about the documented configs alone in none of seeds 0 to 2 (README, "How they compare"). Where none is documented the
# incumbent draws are off: always on, paired over seeds 0 to 9 of benchmarks/gate_gain.py's 35 tasks, +0.002 (-0.022 to
# +0.026) at the full budget and +0.022 (+0.007 to +0.037) at half on the corner tasks.
LOCAL_KNOBS = (1, 2)


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
        prior: list[dict[str, Any]] | None = None,
        near_copy: float = NEAR_COPY,
        rung_check: bool = True,
        incumbent_draws: bool | None = None,
        local_moves: bool = True,
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
        self._near_copy = near_copy
        self._rung_check = rung_check  # False: the model trusts any rung (the benchmark's ablation)
        # Half the random share not drawn about a documented config is drawn about the trial leading at a rung (PriorBand's
        # incumbent): None, where configs are documented (PriorBand's scheme); True, always (a benchmark candidate).
        self._incumbent_draws = bool(prior) if incumbent_draws is None else incumbent_draws
        # True: a draw about a config keeps it but for LOCAL_KNOBS of its knobs, as a researcher's next run moves one or two;
        # False: every knob moves a little (PriorBand's prior, the benchmark's ablation)
        self._local_moves = local_moves
        self._moved_knobs: dict[int, set[str]] = {}  # trial number -> the knobs a local move moves
        self._seen = _TrialRows(_unit_value)  # in [0, 1] over each knob's range: near-copies
        self._internal = _TrialRows(lambda distribution, value: distribution.to_internal_repr(value))  # TPE's estimators
        self._prior = list(prior or [])  # the documented configs, knob -> value
        # trial number -> the config it is drawn about: a documented one, or a leading trial's
        self._prior_trials: dict[int, dict[str, Any]] = {}
        self._scores: dict[StudyDirection, _RungScores] = {}
        self._last_split: tuple[tuple[int, int] | None, Any] = (None, None)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._coin = np.random.default_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        drawn = self._coin.random() < self._random_fraction
        scores = self._scores_for(study.direction)
        scores.read_study(study)
        if drawn or len(scores.finished) < self._n_startup_trials:  # TPE's own start: random until it has n_startup_trials
            self._random_trials.add(trial.number)
            if self._prior and self._coin.random() < 1 / 2:
                self._prior_trials[trial.number] = self._prior[self._coin.integers(len(self._prior))]
            elif self._incumbent_draws and self._coin.random() < 1 / 2:
                leader = scores.leader(INCUMBENT_POINTS)
                if leader is not None:
                    self._prior_trials[trial.number] = leader.params
            center = self._prior_trials.get(trial.number)
            if self._local_moves and center:
                moved = self._coin.choice(list(center), size=min(len(center), self._coin.choice(LOCAL_KNOBS)), replace=False)
                self._moved_knobs[trial.number] = set(moved)

    def after_trial(self, study, trial, state, values) -> None:
        super().after_trial(study, trial, state, values)
        self._random_trials.discard(trial.number)
        self._prior_trials.pop(trial.number, None)
        self._moved_knobs.pop(trial.number, None)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number in self._random_trials or not search_space:
            return {}  # each knob is then drawn by sample_independent, at random
        # TPESampler.sample_relative without two costs that grow with the study: counting every finished trial (before_trial
        # counted them as read) and storing the drawn params as a system attribute for other processes' constant liar
        # (a storage write; tune's bridge stores every param as the trial starts, where every process reads them).
        return self._sample(study, trial, search_space)

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        center = self._prior_trials.get(trial.number, {})
        if param_name in center:
            moved = self._moved_knobs.get(trial.number)
            if moved is None:
                return _about(center[param_name], param_distribution, self._coin)
            return _moved(center[param_name], param_distribution, self._coin) if param_name in moved else center[param_name]
        if trial.number in self._random_trials:
            return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)
        # TPESampler.sample_independent without its warning, which scans every trial for each conditional knob. A
        # conditional knob is one of a config's knobs: on its own it is close to some trial's, so no near-copy check.
        return self._model_sample(study, trial, {param_name: param_distribution}, near_copy=0.0)[param_name]

    def _sample(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """TPESampler.sample_relative's draw of the knobs every trial has: a config unlike every seen one on them."""
        return self._model_sample(study, trial, search_space, near_copy=self._near_copy)

    def _model_sample(
        self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution], near_copy: float
    ) -> dict[str, Any]:
        good, bad = self._split_for(study, trial, len(search_space))
        if not good:
            return {name: self._random_sampler.sample_independent(study, trial, name, d) for name, d in search_space.items()}
        # TPESampler._sample's last steps, on our split: candidates from the good estimator, the best by l(x)/g(x).
        below = self._build_parzen_estimator(study, search_space, good, handle_below=True)
        above = self._build_parzen_estimator(study, search_space, bad, handle_below=False)
        candidates = below.sample(self._rng.rng, self._n_ei_candidates)
        seen = self._seen.matrix(search_space, good + bad) if near_copy > 0 else np.empty((0, len(search_space)))
        fresh = ~_near_copies(candidates, search_space, seen, near_copy)
        if fresh.any():
            acquisition = self._compute_acquisition_func(candidates, below, above)
            chosen = TPESampler._compare({name: values[fresh] for name, values in candidates.items()}, acquisition[fresh])
        else:  # the model only proposes what has been run: a uniform draw instead, the first of as many that repeats none
            candidates = {
                name: _from_unit(d, self._rng.rng.uniform(0, 1, self._n_ei_candidates)) for name, d in search_space.items()
            }
            first = int(np.argmax(~_near_copies(candidates, search_space, seen, near_copy)))
            chosen = {name: values[first].item() for name, values in candidates.items()}
        return {name: distribution.to_external_repr(chosen[name]) for name, distribution in search_space.items()}

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study
    ) -> dict[str, np.ndarray]:
        """TPESampler._get_internal_repr (a trial lacking a knob left out), each finished trial converted once."""
        matrix = self._internal.matrix(search_space, trials, lambda trial: self._get_params(trial, study))
        whole = ~np.isnan(matrix).any(axis=1)
        return {name: matrix[whole, i] for i, name in enumerate(search_space)}

    def _split_for(self, study, trial: FrozenTrial, dimensions: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """The split for ``trial``, made once: its conditional knobs, each sampled on its own, share it."""
        key = (trial.number, dimensions)
        if self._last_split[0] != key:
            scores = self._scores_for(study.direction)
            running = [t for t in scores.read_study(study) if t.number != trial.number]
            self._last_split = (key, self._split(scores, running, dimensions))
        return self._last_split[1]

    def split_at_rung(
        self, trials: list[FrozenTrial], direction: StudyDirection, dimensions: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Good and bad trials, judged by their value at the highest epoch that enough trials reached; no good ones
        (the config is drawn at random) while that epoch's ranking has not been shown to hold later."""
        scores = self._scores_for(direction)
        return self._split(scores, scores.read(trials), dimensions)

    def _scores_for(self, direction: StudyDirection) -> _RungScores:
        return self._scores.setdefault(direction, _RungScores(1.0 if direction == StudyDirection.MINIMIZE else -1.0))

    def _split(
        self, scores: _RungScores, running: list[FrozenTrial], dimensions: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        if not scores.trials:
            return [], running
        if self._min_points:
            rung = scores.rung(self._min_points)
        else:
            bohb_points = dimensions + 1
            rung = max(scores.rung(bohb_points), scores.rung(min(bohb_points, MAX_RUNG_POINTS), searched_only=True))
        if self._rung_check and not scores.ranks_as_later(rung):
            return [], running
        ranked = scores.ranked_at(rung)
        n_good = min(MAX_GOOD, max(1, math.ceil(self._top_fraction * len(ranked))))
        good = [scores.trials[number] for score, number in ranked[:n_good] if math.isfinite(score)]
        return good, scores.latest_besides({t.number for t in good}, MAX_BAD - len(running)) + running[-MAX_BAD:]


class FirstRungChoice:
    """Where ASHA should first judge a new trial (Hyper-Tune's bracket choice, made conservative): the lowest of
    ``first_rungs`` not shown to mislead (:meth:`_RungScores.misleads`: its ranking reversed later, or it would now stop
    the trial that leads later); the last when all are."""

    def __init__(self, direction: StudyDirection, first_rungs: list[int]):
        self.first_rungs = first_rungs
        # ASHA's reduction factor: consecutive rungs are that far apart (with one first rung, there is no choice to make)
        self._eta = first_rungs[1] / first_rungs[0] if len(first_rungs) > 1 else math.inf
        self._scores = _RungScores(1.0 if direction == StudyDirection.MINIMIZE else -1.0)

    def for_new_trial(self, study: optuna.Study) -> int:
        """The first rung for the trial ``study.ask`` just made, from the trials that ask read."""
        self._scores.read_study(study)
        return next(
            (rung for rung in self.first_rungs[:-1] if not self._scores.misleads(rung, self._eta)),
            self.first_rungs[-1],
        )

    def misleads(self, study: optuna.Study, rung: int) -> bool:
        """Whether the finished trials of ``study`` show ``rung`` misleading, as a first rung is judged: a scheduler's gate
        there stops the trials that would end best."""
        self._scores.read_study(study)
        return self._scores.misleads(rung, self._eta)


class _RungScores:
    """The finished trials seen so far, ranked at each rung asked for, kept up to date as trials finish.

    A finished trial never changes, so each is read and ranked once: a suggestion then costs about the same
    at 10 000 trials as at a few hundred, where sorting every trial at every suggestion would not.
    """

    def __init__(self, sign: float):
        self.sign = sign  # 1 to minimise, -1 to maximise: ranks sort ascending
        self.finished: set[int] = set()  # the COMPLETE, PRUNED and diverged trials read, with a curve or without
        self.settled = 0  # how many of the study's first trials are finished and read: none of them changes again
        self.trials: dict[int, FrozenTrial] = {}  # the finished trials with a curve, and the diverged ones: these are ranked
        self.diverged: dict[int, int] = {}  # a diverged trial's number -> the epoch its objective became non-finite
        self.numbers: list[int] = []  # the ranked trials' numbers, ascending
        self.reached: dict[int, int] = {}  # how many ranked trials stopped (or diverged) at each last epoch
        self.searched_reached: dict[int, int] = {}  # the same, of the trials the search drew (not documented configs)
        self.ranks: dict[int, list[tuple[float, int]]] = {}  # rung -> (score, number) of the trials that reached it, sorted

    def read(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Adds the finished trials of ``trials`` not read yet; returns the RUNNING ones."""
        running = []
        for t in trials:
            if t.state == TrialState.RUNNING:
                running.append(t)
            elif t.number not in self.finished and (t.state in (TrialState.COMPLETE, TrialState.PRUNED) or _diverged(t)):
                self.finished.add(t.number)
                if t.intermediate_values or t.state == TrialState.FAIL:
                    self.add(t)
        return running

    def read_study(self, study: optuna.Study) -> list[FrozenTrial]:
        """:meth:`read` over the study's trials from the first that was not finished when last read.

        The list is the one Study.ask read once for this suggestion (every state, by number, not copied), so a
        suggestion reads the few latest trials, not all 10 000 of a large study."""
        trials = study._get_trials(deepcopy=False, use_cache=True)
        tail = trials[self.settled :]
        running = self.read(tail)
        self.settled += next((i for i, t in enumerate(tail) if not t.state.is_finished()), len(tail))
        return running

    def add(self, trial: FrozenTrial) -> None:
        if _diverged(trial):  # its objective became non-finite the epoch after the last one it reported
            self.diverged[trial.number] = max(trial.intermediate_values, default=0) + 1
        last = self._reach(trial)
        self.trials[trial.number] = trial
        bisect.insort(self.numbers, trial.number)
        self.reached[last] = self.reached.get(last, 0) + 1
        if ATTR_BASELINE not in trial.user_attrs:
            self.searched_reached[last] = self.searched_reached.get(last, 0) + 1
        for rung, ranked in self.ranks.items():
            if last >= rung:
                bisect.insort(ranked, self._score(trial, rung))

    def rung(self, needed: int, searched_only: bool = False) -> int:
        """The highest epoch at least ``needed`` finished trials reached, of those the search drew where ``searched_only``
        (with fewer trials, the lowest any stopped at; 0 where none)."""
        reached = self.searched_reached if searched_only else self.reached
        seen = 0
        for epoch in sorted(reached, reverse=True):
            seen += reached[epoch]
            if seen >= needed:
                return epoch
        return min(reached, default=0)

    def leader(self, needed: int) -> FrozenTrial | None:
        """The finished trial that leads at the highest epoch ``needed`` finished trials reached; None before that many finished
        or while none there is finite and within the constraints."""
        if len(self.trials) < needed:
            return None
        score, number = self.ranked_at(self.rung(needed))[0]
        return self.trials[number] if math.isfinite(score) else None

    def ranks_as_later(self, rung: int) -> bool:
        """Whether the trials' ranking at ``rung`` holds later: no trial went past it, or over the latest trials that reached
        the highest epoch at least AGREEMENT_PAIRS trials reached, their values there and at ``rung`` agree (tau above 0)."""
        went_past, pairs = self.later_pairs(rung, AGREEMENT_PAIRS)
        return went_past == 0 or (len(pairs) >= 2 and kendalltau(*zip(*pairs)).statistic > 0)

    def misleads(self, rung: int, eta: float) -> bool:
        """Whether ``rung`` is shown to mislead, by MISLEAD_TRIALS finished trials that went past it (paired as
        :meth:`ranks_as_later` pairs them): a one-sided Kendall test finds their order there and later opposed at MISLEAD_P,
        or the best of them later ranks at ``rung`` outside the best 1/``eta`` of every trial there, so that ASHA judging
        there now would stop it. The test sees the whole ranking, mostly configs poor at every epoch; the second check sees
        the config a search is for."""
        went_past, pairs = self.later_pairs(rung, MISLEAD_TRIALS)
        if went_past < MISLEAD_TRIALS or len(pairs) < 2:
            return False
        if kendalltau(*zip(*pairs), alternative="less").pvalue < MISLEAD_P:
            return True
        leader_at_rung, _ = min(pairs, key=lambda pair: self.sign * pair[1])
        ranked = self.ranked_at(rung)
        bar, _ = ranked[max(1, math.ceil(len(ranked) / eta)) - 1]
        return len(pairs) >= MISLEAD_TRIALS and self.sign * leader_at_rung > bar

    def later_pairs(self, rung: int, needed: int) -> tuple[int, list[tuple[float, float]]]:
        """How many finished trials went past ``rung`` (counted until ``needed``), and the finite (value at ``rung``, value
        later) of the latest trials that reached the highest epoch ``needed`` trials reached (the lowest past ``rung``
        while fewer did); no pairs where some trials stopped at or before ``rung`` and fewer than ``needed`` went past."""
        if not self.reached:
            return 0, []
        went_past = 0
        for epoch in sorted(self.reached, reverse=True):
            if epoch <= rung:
                return went_past, []
            went_past += self.reached[epoch]
            if went_past >= needed:
                break
        # A trial that went past the rung and diverged before ``epoch`` ranks there last: the rung had ranked it as trainable.
        diverged_since = (n for n, at in self.diverged.items() if rung < at < epoch)
        numbers = heapq.nlargest(MAX_BAD, itertools.chain((number for _, number in self.ranked_at(epoch)), diverged_since))
        pairs = [(_value_at(self.trials[n], rung), self._value_or_worst(n, epoch)) for n in numbers]
        return went_past, [pair for pair in pairs if math.isfinite(pair[0]) and not math.isnan(pair[1])]

    def ranked_at(self, rung: int) -> list[tuple[float, int]]:
        if rung not in self.ranks:
            self.ranks[rung] = sorted(self._score(t, rung) for t in self.trials.values() if self._reach(t) >= rung)
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
        if trial.number in self.diverged:  # at any rung: its knobs lead to divergence, however well it started
            return (math.inf, trial.number)
        value = _value_at(trial, rung)
        # A trial outside the study's constraints (Optuna's: a violation above 0) is never a good one.
        good_candidate = math.isfinite(value) and all(v <= 0 for v in trial.constraints.values())
        return (self.sign * value if good_candidate else math.inf, trial.number)

    def _value_or_worst(self, number: int, epoch: int) -> float:
        """The trial's value at ``epoch``; the worst there is once it diverged, at or before ``epoch``."""
        if self.diverged.get(number, math.inf) <= epoch:
            return self.sign * math.inf
        return _value_at(self.trials[number], epoch)

    def _reach(self, trial: FrozenTrial) -> int:
        """The last epoch the trial reported; a diverged trial's is the next, at which its objective became non-finite."""
        return self.diverged.get(trial.number) or max(trial.intermediate_values)


def _unit(distribution: BaseDistribution, internal: Any) -> np.ndarray:
    """A numeric knob's internal value(s) in [0, 1] over its range, in log space for a log knob."""
    low, high, values = distribution.low, distribution.high, np.asarray(internal, dtype=float)
    if high == low:
        return np.zeros_like(values)
    if distribution.log:
        return (np.log(values) - math.log(low)) / (math.log(high) - math.log(low))
    return (values - low) / (high - low)


class _TrialRows:
    """The values of the knobs a draw models, one row per trial, each finished trial's converted once by ``convert``.

    A finished trial never changes, and the trials a draw reads change by about one per suggestion: a suggestion then
    converts one trial, not every knob of 325 (a quarter of a model draw's time on a 10 000-trial study). Kept for the
    study's life, as :class:`_RungScores` keeps its trials: at most one row of floats per finished trial and set of knobs.
    """

    def __init__(self, convert: Callable[[BaseDistribution, Any], float]):
        self.convert = convert  # (knob's distribution, a trial's value) -> the row's number
        self.rows: dict[tuple, dict[int, np.ndarray]] = {}  # knobs -> finished trial number -> its row

    def matrix(
        self,
        search_space: dict[str, BaseDistribution],
        trials: list[FrozenTrial],
        params_of: Callable[[FrozenTrial], dict[str, Any]] = lambda trial: trial.params,
    ) -> np.ndarray:
        """A row per trial, NaN where it lacks a knob."""
        knobs = tuple(search_space.items())
        kept = self.rows.setdefault(knobs, {})
        rows = []
        for t in trials:
            row = kept.get(t.number)
            if row is None:
                params = params_of(t)
                row = np.array([self.convert(d, params[name]) if name in params else math.nan for name, d in knobs])
                if t.state.is_finished():  # a RUNNING trial's params may still grow
                    kept[t.number] = row
            rows.append(row)
        return np.array(rows).reshape(len(trials), len(knobs))


def _unit_value(distribution: BaseDistribution, value: Any) -> float:
    """A trial's value in [0, 1] over the knob's range, a choice as its index; NaN for a choice the knob no longer has."""
    if isinstance(distribution, CategoricalDistribution):
        return float(distribution.choices.index(value)) if value in distribution.choices else math.nan
    return float(_unit(distribution, value))


def _near_copies(
    candidates: dict[str, np.ndarray], search_space: dict[str, BaseDistribution], seen: np.ndarray, within: float
) -> np.ndarray:
    """For each candidate (TPE's internal values), whether it is within ``within`` of a row of ``seen`` on every knob."""
    size = next(iter(candidates.values())).size
    if not len(seen) or within <= 0:
        return np.zeros(size, dtype=bool)
    choice = np.array([isinstance(d, CategoricalDistribution) for d in search_space.values()])
    ours = np.column_stack(
        [
            candidates[name] if isinstance(d, CategoricalDistribution) else _unit(d, candidates[name])
            for name, d in search_space.items()
        ]
    )
    apart = np.abs(ours[:, None, :] - seen[None, :, :])  # candidates x seen trials x knobs; NaN where a trial lacks one
    return (apart < np.where(choice, 0.5, within)).all(axis=2).any(axis=1)  # a choice's index is equal or 1 apart


def _from_unit(distribution: BaseDistribution, unit: np.ndarray) -> np.ndarray:
    """Internal values from points in [0, 1]: a choice's index, a numeric knob's value on its step (the inverse of _unit)."""
    if isinstance(distribution, CategoricalDistribution):
        return np.minimum((unit * len(distribution.choices)).astype(int), len(distribution.choices) - 1)
    low, high = distribution.low, distribution.high
    values = np.exp(math.log(low) + unit * (math.log(high) - math.log(low))) if distribution.log else low + unit * (high - low)
    step = getattr(distribution, "step", None)
    if step:
        values = low + np.round((values - low) / step) * step
    if isinstance(distribution, optuna.distributions.IntDistribution):
        values = np.round(values)
    return np.clip(values, low, high)


def _about(value: Any, distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    """A draw from the prior about ``value`` (documented, or a leading trial's): a Gaussian over a numeric range, mostly the
    same choice."""
    if isinstance(distribution, CategoricalDistribution):
        return value if rng.random() < PRIOR_KEEP else distribution.choices[rng.integers(len(distribution.choices))]
    # Truncated to the range, not clipped to it: clipping puts a point mass on each bound, and so repeats configs there.
    center = _unit(distribution, value)
    unit = truncnorm.rvs(-center / PRIOR_WIDTH, (1.0 - center) / PRIOR_WIDTH, loc=center, scale=PRIOR_WIDTH, random_state=rng)
    return distribution.to_external_repr(_from_unit(distribution, unit).item())


def _moved(value: Any, distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    """A local move's knob: another choice, or a numeric step as the prior draws it."""
    if isinstance(distribution, CategoricalDistribution):
        others = [choice for choice in distribution.choices if choice != value] or [value]
        return others[rng.integers(len(others))]
    return _about(value, distribution, rng)


def _diverged(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_REASON) == REASON_DIVERGED


def _value_at(trial: FrozenTrial, epoch: int) -> float:
    """The trial's value at ``epoch``, or at the latest epoch before it that it reported (a continued trial may skip some)."""
    values = trial.intermediate_values
    if epoch in values:
        return values[epoch]
    earlier = [e for e in values if e <= epoch]
    return values[max(earlier)] if earlier else values[min(values)]
