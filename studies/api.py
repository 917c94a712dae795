"""``tune`` from Python (a notebook, a script): run or resume a study and get the :class:`optuna.Study` back.

The keyword options are :class:`studies.driver.run.RunOptions`' fields, the ``tune run`` flags with underscores
(``time_budget_s`` and ``checkpoint_every_s`` in seconds). Bad input raises :class:`studies.errors.UserInputError`
with the one line ``tune`` would print; a run that ends with trials unfinished (``time_budget_s``) raises
:class:`studies.errors.TrialsInterrupted` after storing them, and :func:`resume` continues it. Ray stays up
between calls, so a second study in the same notebook starts at once.

Example::

    import studies

    study = studies.run("search_spaces/vesuvius.py", trials=12, max_epochs=4, seed=0)
    study.best_trial.params, study.trials_dataframe()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing `studies` must not import Ray, Optuna or torch: `tune --help` stays fast
    import optuna


def run(space_file: str | Path, **options: Any) -> optuna.Study:
    """Run (or continue, same name) the study of ``space_file`` as ``tune run`` does; returns it once it holds its trials."""
    from studies.space import load_space

    return _run_space(load_space(str(space_file)), options)


def resume(study: str, storage: str | None = None, allow_changed_space: bool = False, **options: Any) -> optuna.Study:
    """Continue a stored study with the space file it was made from, as ``tune resume`` does (a phase keeps its settings)."""
    from studies.records import STUDY_PHASE
    from studies.space import load_space
    from studies.store import catalog

    stored = catalog.load_study(study, storage)
    space = load_space(catalog.space_file_of(stored, allow_changed=allow_changed_space))
    options = {"pareto": catalog.is_pareto(stored), "constraints": catalog.constraints_of(stored), **options}  # its own search
    if "sampler" not in options:  # the search goes on with the method it had, not the space's default
        options = {**catalog.search_method_of(stored), **options}
    phase = stored.user_attrs.get(STUDY_PHASE)
    if phase:  # a phase holds its settings and starts from the previous phase's best: the phases driver knows how
        from studies.driver.phases import run_phases

        (continued,) = run_phases(
            space, _options(space, {**options, "study": phase["prefix"], "storage": storage}), [phase["phase"]]
        )
        return continued
    return _run_space(space, {**options, "study": study, "storage": storage})


def _run_space(space, options: dict[str, Any]) -> optuna.Study:
    from studies.driver.run import run_study

    return run_study(space, _options(space, options))


def _options(space, options: dict[str, Any]):
    from studies.driver.run import RunOptions
    from studies.store.storage import redacted

    described = ", ".join([repr(str(space.path)), *(f"{name}={value!r}" for name, value in options.items())])
    # Stored on the study as the CLI's command line is: what made it, no storage password.
    return RunOptions(**options, command=redacted(f"studies.run({described})"))
