"""The default search on tasks that guided none of its choices: 32 generated tasks and 10 YAHPO data sets never run before.

Every family of "The default search" has guided some choice of ``bohb-gated`` once measured (``once-held-out`` two of its
rules, ``held-out`` its first-rung rule, the YAHPO families the choice to keep it), so its rows there flatter it. Here
are tasks drawn as those were that no method had run when this section was first measured (2026-12-06, ``bohb-gated``
with the first-rung rule):

- ``unseen``: generated tasks 40 to 71 (:func:`benchmarks.generated.unseen_problems`), twice a held-out family's count;
- ``yahpo-unseen``: ten YAHPO data sets drawn at random among those without the surrogate's artefact, past the
  ``yahpo-held-out`` ones (:data:`benchmarks.yahpo.UNSEEN_TASKS`).

Measured again on 2026-12-07 with the default's gate lifted where the last rung misleads (chosen on other families, then
checked here: :mod:`studies.driver.bridge`); every other method's rows came out the same, run for run.

A change of the default chosen after reading this section makes these tasks tuned on too; say so when it happens.
The methods, seeds, budget, tables and plots are "The default search"'s (:mod:`benchmarks.default_search`).
"""

from __future__ import annotations

from benchmarks import default_search, search_quality, yahpo
from benchmarks.generated import UNSEEN_TASKS, unseen_problems

TITLE = "The default search on 42 tasks that guided none of its choices"
YAHPO_UNSEEN = "yahpo-unseen"


def measure(smoke: bool = False) -> list[dict]:
    tasks = [
        *unseen_problems(1 if smoke else UNSEEN_TASKS).values(),
        *yahpo.yahpo_problems(yahpo.UNSEEN_TASKS[: 1 if smoke else None], family=YAHPO_UNSEEN).values(),
    ]
    return search_quality.measure(smoke, default_search.METHODS, tasks)


table = default_search.table
plots = default_search.plots
