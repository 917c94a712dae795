"""The `tune` service: load a search space, run its study on Ray Tune with ASHA, keep every result in Optuna.

The search-space module contract (one declarations-only file per project in ``search_spaces/``):

``CONFIG``      the training config as a nested dict, as the researcher's YAML has it; leaves are fixed
                values or knobs (:class:`Float`, :class:`Int`, :class:`Categorical`, optionally
                conditional: ``when={"parent.knob": value}``). A knob's name is its dotted path.
``BASELINES``   the log's documented configs by name, ``{"v2": {"loss_weights.dice_weight": 0.4}}``;
                they run first, once per study.
``OBJECTIVES``  ``[Objective(name, direction), ...]``; the first drives ASHA and the sampler, all are
                recorded and selectable (``tune best --by``).
``BUDGET``      ``Budget(max_epochs, grace_period, reduction_factor, trials)``.
``RESOURCES``   ``Resources(cpus, gpus, workers)`` per trial: a fraction of a GPU packs trials on one
                GPU; several GPUs (or ``workers`` CPU processes) make a Lightning DDP trial.
``PHASES``      optional fine-tuning stages, ``{"A": {"knob": value}}``, with ``WARM_START``, the path
                of the starting weights: ``tune phases`` runs one warm-started study per phase.
``TRAINER``     a :class:`trainers.base.TrainerFamily` subclass.
``SAMPLER``     optional default search method, a name in :data:`studies.samplers.SAMPLERS`.
``HEADLINES``   optional metrics besides the objectives that the report shows next to them.
``SEARCH``      optional ``"pareto"``: every objective searched jointly (a multi-objective study), not the first alone.
``CONSTRAINTS`` optional ``{"metric": (low, high)}``: objectives or headlines the search keeps within a range.

The export schema is ``CONFIG``: an exported trial is ``CONFIG`` with the trial's values in place.

Example::

    from studies import Budget, Float, Objective, load_space

    space = load_space("search_spaces/vesuvius.py")   # validated; SpaceError says what to fix
    print(space.knobs["loss_weights.dice_weight"])     # Float(low=0.1, high=0.6, ...)

From Python, :func:`run` and :func:`resume` (``studies/api.py``) run a study as ``tune run`` and ``tune resume`` do
and return the :class:`optuna.Study`::

    import studies

    study = studies.run("search_spaces/vesuvius.py", trials=12, seed=0)

Commands (see ``tune --help``): run, resume, phases, repeat, ls, show, best, export, train, report, dashboard.
Which module holds what, and where a new sampler, reader, figure or trainer goes: ``studies/README.md``.
"""

from studies.api import resume, run
from studies.space import Budget, Categorical, Float, Int, Objective, Resources, Space, SpaceError, load_space

__all__ = [
    "Budget",
    "Categorical",
    "Float",
    "Int",
    "Objective",
    "Resources",
    "Space",
    "SpaceError",
    "load_space",
    "resume",
    "run",
]
