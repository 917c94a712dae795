"""The ``tune`` command. Ray's own ``tune`` subcommands (ls PATH, lsx, list-trials, list-experiments,
add-note) are forwarded to Ray's CLI, since installing this project replaces Ray's ``tune`` script."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from studies.samplers import DEFAULT_SAMPLER, described

if TYPE_CHECKING:  # run.py imports Ray; commands that do not run a study should not pay for it
    from studies.driver.run import RunOptions

RAY_SUBCOMMANDS = {"lsx", "list-trials", "list-experiments", "add-note"}
# Exit codes: 0 done; 2 input tune cannot use (one line says why); 3 a run ended with trials unfinished (--time-budget);
# 130 Ctrl-C. After 3 and 130 one line names the `tune resume` command that continues the study.
EXIT_USER_ERROR = 2
EXIT_TRIALS_INTERRUPTED = 3
EXIT_CTRL_C = 130
SHOWN_PARAMS = 4  # `tune show` shows this many params by default: the most important ones


def _is_ray_command(argv: Sequence[str]) -> bool:
    """Ray's subcommands; ``ls`` is Ray's when given an experiment path, ours (list studies) otherwise."""
    if not argv:
        return False
    if argv[0] in RAY_SUBCOMMANDS:
        return True
    positional = [arg for i, arg in enumerate(argv[1:], 1) if not arg.startswith("-") and argv[i - 1] != "--storage"]
    return argv[0] == "ls" and bool(positional)


def _forward_to_ray(argv: Sequence[str]) -> int:
    from ray.tune.cli.scripts import cli

    return cli.main(args=_absolute_ray_path(argv), prog_name="tune", standalone_mode=True)


def _absolute_ray_path(argv: Sequence[str]) -> list[str]:
    """A Ray subcommand with its one path made absolute: Ray reads a relative path as a URI with no scheme, and fails."""
    forwarded = list(argv)
    for i in range(1, len(forwarded)):
        before = forwarded[i - 1]
        # Each of Ray's options takes one value: a word after an option is its value, not the path.
        is_value = i > 1 and before.startswith("-") and "=" not in before and before not in ("-h", "--help")
        if forwarded[i].startswith("-") or is_value:
            continue
        if "://" not in forwarded[i]:
            forwarded[i] = str(Path(forwarded[i]).resolve())
        break
    return forwarded


class _Parser(argparse.ArgumentParser):
    """argparse's parser, refusing bad input in tune's one line (argparse's own prints the usage before it)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"tune: error: {message} (`{self.prog} --help` says what each option takes)\n")


def _at_least_one(text: str) -> int:
    """A count of trials, epochs or rows: a whole number, at least 1."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1, not {text!r}")
    return count


def _seconds(text: str) -> float:
    """A duration: a number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"takes a number of seconds above 0, not {text!r}")
    return seconds


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        help="Optuna storage URL: sqlite:///FILE.db, postgresql://..., mysql://..., journal:FILE.log "
        "(default: $TUNE_STORAGE or sqlite:///tune_runs/tune.db)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    _storage_option(parser)
    parser.add_argument("--sampler", metavar="METHOD", help=f"search method (default: the space's SAMPLER, else {DEFAULT_SAMPLER}): {described()}")
    parser.add_argument(
        "--grid-knobs", type=lambda text: [k.strip() for k in text.split(",") if k.strip()], metavar="K1,K2",
        help="with --sampler grid: grid only these knobs (their grid= values), hold the others at --grid-base",
    )  # fmt: skip
    parser.add_argument("--grid-base", metavar="BASELINE", help="the baseline whose values the non-gridded knobs keep (default: the first)")
    parser.add_argument(
        "--trials", type=_at_least_one, help="finished trials the study should hold (default: the space's budget)"
    )
    parser.add_argument("--max-epochs", type=_at_least_one, help="epochs of a trial that is never pruned")
    parser.add_argument("--time-budget", type=_seconds, metavar="SECONDS", help="stop all trials after this long; resume later")
    parser.add_argument("--address", help="an existing Ray cluster's address (default: start a local Ray)")
    parser.add_argument(
        "--ray-storage", metavar="PATH_OR_URI",
        help="where Ray keeps checkpoints: a folder or pyarrow URI every node reaches (default: $TUNE_RAY_STORAGE or tune_runs/ray)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed of the sampler")
    parser.add_argument(
        "--gpus-per-trial", type=float, metavar="N",
        help="GPUs per trial instead of the space's RESOURCES: 0.25 packs four trials on a GPU, 2 trains each trial with DDP on 2 GPUs",
    )  # fmt: skip
    parser.add_argument(
        "--max-retries", type=int, metavar="N",
        help="times a trial whose worker process died continues from its checkpoint before it is FAIL (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint-every", type=float, metavar="SECONDS",
        help="checkpoint a trial at most this often, and always at its last epoch; 0: every epoch (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--pareto", action="store_true",
        help="search every objective jointly (a multi-objective study; ASHA still stops trials on the first objective)",
    )  # fmt: skip
    parser.add_argument(
        "--constrain", action="append", default=[], metavar="METRIC=LOW..HIGH",
        help="keep METRIC (an objective or a HEADLINES metric) within [LOW, HIGH]: the sampler learns to avoid configs "
        "outside it; repeatable, laid over the space's CONSTRAINTS; either side may be empty",
    )  # fmt: skip
    parser.add_argument(
        "--log", action="append", metavar="TRACKER",
        help="also log each trial's epochs to mlflow ($MLFLOW_TRACKING_URI, else tune_runs/mlflow.db) or wandb "
        "($WANDB_MODE=offline works without a network); repeatable. TensorBoard files are always written, in each trial's folder",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's own output")


def _format_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", dest="output_format", action="store_const", const="json", help="print JSON, for scripts")
    output.add_argument("--csv", dest="output_format", action="store_const", const="csv", help="print CSV, for scripts")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tune")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _changed_space_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-changed-space", action="store_true",
        help="import the study's search-space file even though it changed since the study last ran it (the file is Python that tune runs)",
    )  # fmt: skip


def _selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", metavar="METRIC", help="choose the best COMPLETE trial by this metric (default: the first objective)")
    parser.add_argument(
        "--where", action="append", default=[], metavar="METRIC=LOW..HIGH",
        help="keep only trials with METRIC in [LOW, HIGH]; repeatable; either side may be empty",
    )  # fmt: skip
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--maximize", dest="maximize", action="store_true", default=None, help="larger --by is better")
    direction.add_argument("--minimize", dest="maximize", action="store_false", help="smaller --by is better")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tune",
        description="Hyperparameter studies: Ray Tune schedules the trials, ASHA stops the poor ones, "
        "Optuna chooses configs and keeps every result. Ray's own `tune` subcommands "
        "(ls EXPERIMENT_PATH, lsx, list-trials, list-experiments, add-note) still work.",
    )
    parser.add_argument("--version", action="version", version=f"tune {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run or continue a study of a search-space module")
    run.add_argument("space", help="search-space module, e.g. search_spaces/vesuvius.py")
    run.add_argument("--study", help="study name (default: the module's name)")
    _run_options(run)

    resume = commands.add_parser("resume", help="continue an interrupted study")
    resume.add_argument("study")
    _run_options(resume)
    _changed_space_option(resume)

    repeat = commands.add_parser("repeat", help="re-train a study's top configs with new seeds; report mean and spread")
    repeat.add_argument("study")
    repeat.add_argument("--top", type=int, default=3, help="how many of the best COMPLETE trials (default 3)")
    repeat.add_argument("--seeds", type=int, default=3, help="new seeds per config (default 3)")
    repeat.add_argument("--into", metavar="NAME", help="the repeat study's name (default: STUDY-repeat)")
    _run_options(repeat)
    _changed_space_option(repeat)

    phases = commands.add_parser("phases", help="fine-tune phase by phase: a study per phase, each from the last one's best")
    phases.add_argument("space", help="search-space module that declares PHASES, e.g. search_spaces/state_tahoe.py")
    phases.add_argument("--phases", nargs="+", metavar="PHASE", help="run only these phases (default: all, in declared order)")
    phases.add_argument("--study", metavar="PREFIX", help="phase studies are PREFIX-phase-NAME (default: the module's name)")
    _run_options(phases)

    ls = commands.add_parser("ls", help="studies in the storage: trials by state and best values")
    _storage_option(ls)
    _format_options(ls)

    show = commands.add_parser("show", help="the top trials of a study: objectives and the most important params")
    show.add_argument("study")
    show.add_argument("--top", type=_at_least_one, default=10, help="how many of the best trials (default 10)")
    show.add_argument(
        "--columns", metavar="all|C1,C2",
        help="columns to show: all, or a comma-separated list (default: trial, state, baseline, epochs, the objectives "
        f"and the {SHOWN_PARAMS} most important params; --json and --csv: all)",
    )  # fmt: skip
    _storage_option(show)
    _format_options(show)

    best = commands.add_parser("best", help="the best trial by any recorded metric, within bounds")
    best.add_argument("study")
    best.add_argument(
        "--pareto", action="store_true",
        help="list the study's front instead: the COMPLETE trials within its constraints that no other beats in every objective",
    )  # fmt: skip
    _selection_options(best)
    _storage_option(best)
    _format_options(best)

    export = commands.add_parser("export", help="write a trial's full training config as YAML")
    export.add_argument("study")
    export.add_argument("--trial", type=int, help="trial number (default: the best by --by)")
    export.add_argument("-o", "--output", required=True, help="YAML file to write")
    export.add_argument(
        "--checkpoint", metavar="PATH",
        help="also write the trial's best-epoch weights (a COMPLETE trial's, kept by the study) to this file; `tune train --init PATH` starts from them",
    )  # fmt: skip
    _selection_options(export)
    _storage_option(export)

    train = commands.add_parser("train", help="train one config (e.g. an export) outside any study")
    train.add_argument("space")
    train.add_argument("--config", required=True, help="training YAML, e.g. from `tune export`")
    train.add_argument("--max-epochs", type=_at_least_one, help="epochs to train (default: the space's budget)")
    train.add_argument("--init", metavar="PATH", help="start from these weights, e.g. from `tune export --checkpoint PATH`")

    report = commands.add_parser("report", help="a self-contained HTML report of a study (plotly; opens offline)")
    report.add_argument("study")
    report.add_argument("-o", "--output", help="HTML file to write (default: tune_runs/STUDY-report.html)")
    report.add_argument("--png", action="store_true", help="also write each figure as a PNG beside the report")
    _storage_option(report)

    dashboard = commands.add_parser("dashboard", help="start optuna-dashboard on the storage")
    dashboard.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1); another needs --expose-unauthenticated-api")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.add_argument(
        "--expose-unauthenticated-api", action="store_true",
        help="serve on a non-loopback --host: anyone who reaches the port can read, change and delete studies (no login)",
    )  # fmt: skip
    _storage_option(dashboard)
    return parser


def _print_table(table, output_format: str | None = None, empty: str = "(no trials)") -> None:
    """A table for a person, or with ``output_format`` ("json": a list of rows; "csv") for a script."""
    import pandas as pd

    if output_format == "json":
        print(json.dumps([_plain(row) for row in table.to_dict(orient="records")], indent=1))
        return
    if output_format == "csv":
        if not table.empty:
            table.to_csv(sys.stdout, index=False)
        return
    if table.empty:
        print(empty)
        return
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))


def _plain(value):
    """``value`` as JSON holds it: a missing or non-finite number is null, numpy's numbers are Python's."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "item") and not isinstance(value, (list, tuple, str)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _describe_trial(trial) -> str:
    from studies.records import ATTR_BASELINE, METRIC_PREFIX

    lines = [f"trial {trial.number} ({trial.state.name}{', baseline ' + trial.user_attrs[ATTR_BASELINE] if ATTR_BASELINE in trial.user_attrs else ''})"]
    lines += [f"  {k[len(METRIC_PREFIX):]} = {v:.6g}" for k, v in sorted(trial.user_attrs.items()) if k.startswith(METRIC_PREFIX)]
    lines += [f"  param {k} = {v}" for k, v in trial.params.items()]
    return "\n".join(lines)


def _run_options_from(args: argparse.Namespace, study_name: str | None, **overrides) -> RunOptions:
    from studies.driver.run import CHECKPOINT_EVERY_S, MAX_RETRIES, RunOptions
    from studies.store.storage import redacted

    options = dict(
        study=study_name,
        storage=args.storage,
        sampler=args.sampler,
        trials=args.trials,
        max_epochs=args.max_epochs,
        time_budget_s=args.time_budget,
        address=args.address,
        ray_storage=args.ray_storage,
        seed=args.seed,
        gpus_per_trial=args.gpus_per_trial,
        max_retries=MAX_RETRIES if args.max_retries is None else args.max_retries,
        checkpoint_every_s=CHECKPOINT_EVERY_S if args.checkpoint_every is None else args.checkpoint_every,
        log=args.log,
        grid_knobs=args.grid_knobs,
        grid_base=args.grid_base,
        verbose=args.verbose,
        pareto=args.pareto,
        constraints=_constraints_from(args.constrain),
        command=redacted("tune " + shlex.join(args.argv)),  # stored on the study: no storage password
    )
    return RunOptions(**{**options, **overrides})


def _constraints_from(texts: list[str]) -> dict[str, tuple[float, float]] | None:
    """``--constrain METRIC=LOW..HIGH`` options as the ranges the search keeps metrics within; None when none is given."""
    from studies.store.catalog import Bound

    bounds = [Bound.parse(text) for text in texts]
    return {bound.metric: (bound.low, bound.high) for bound in bounds} or None


def _search_of(args: argparse.Namespace, study) -> dict:
    """The search a stored study was made with (all objectives or the first, its constraints), unless the command names one."""
    from studies.store import catalog

    constraints = _constraints_from(args.constrain) or catalog.constraints_of(study)
    return {"pareto": args.pareto or catalog.is_pareto(study), "constraints": constraints}


def _repeat(args: argparse.Namespace) -> int:
    from studies.space import load_space
    from studies.store import catalog

    original = catalog.load_study(args.study, args.storage)  # before Ray is imported: a wrong name is answered at once
    from studies.driver.repeat import repeat_queue, spread_table
    from studies.driver.run import run_study

    queue = repeat_queue(original, args.top, args.seeds)
    space = load_space(catalog.space_file_of(original, allow_changed=args.allow_changed_space))
    into = args.into or f"{args.study}-repeat"
    options = _run_options_from(args, into, trials=len(queue), prune=False, **_search_of(args, original))  # the original's search
    repeated = run_study(space, options, queue=queue)
    print(f"\n{repeated.study_name}: each config of {args.study} over {args.seeds} new seeds")
    _print_table(spread_table(repeated))
    return 0


def _run_space(args: argparse.Namespace, space_path: str, study_name: str | None, **overrides) -> int:
    from studies.space import load_space

    space = load_space(space_path)  # before Ray is imported: a missing file is answered at once
    from studies.driver.run import run_study
    from studies.store.catalog import trials_table

    study = run_study(space, _run_options_from(args, study_name, **overrides))
    table = trials_table(study, top=5)
    summary = ["trial", "state", "feasible", "baseline", "epochs", "train_s", *(o.name for o in space.objectives)]
    name = shlex.quote(study.study_name)
    print(f"\nstudy {study.study_name}: top trials (`tune show {name} --columns all` for every metric and param)")
    _print_table(table[[c for c in summary if c in table]] if not table.empty else table)
    print(_next_steps(study.study_name, args.storage))
    return 0


def _next_steps(study_name: str, storage: str | None) -> str:
    """Where the study is stored and the commands that read it, ready to paste."""
    from studies.store.storage import DEFAULT_FOLDER, default_url, redacted

    url = redacted(storage or default_url())
    rest = f" --storage {shlex.quote(url)}" if storage else ""
    name = shlex.quote(study_name)
    steps = [
        (f"tune show {name}{rest}", "the top trials"),
        (f"tune report {name}{rest}", f"an HTML report: {DEFAULT_FOLDER}/{study_name}-report.html"),
        (f"tune export {name} -o config.yaml{rest}", "the best trial's training YAML"),
        (f"tune dashboard{rest}", "optuna-dashboard at http://127.0.0.1:8080/"),
    ]
    width = max(len(command) for command, _ in steps)
    lines = [f"\nstudy {study_name!r} is stored in {url}; next:"]
    lines += [f"  {command:<{width}}  # {what}" for command, what in steps]
    return "\n".join(lines)


def _run_phases(args: argparse.Namespace, space_path: str, prefix: str | None, phases: list[str] | None, **overrides) -> int:
    from studies.space import load_space

    space = load_space(space_path)  # before Ray is imported: a missing file is answered at once
    from studies.driver.phases import run_phases

    run_phases(space, _run_options_from(args, prefix, **overrides), phases=phases)
    return 0


def _run(args: argparse.Namespace) -> int:
    return _run_space(args, args.space, args.study)


def _resume(args: argparse.Namespace) -> int:
    from studies.records import STUDY_PHASE
    from studies.store import catalog

    study = catalog.load_study(args.study, args.storage)
    space_path = catalog.space_file_of(study, allow_changed=args.allow_changed_space)  # checked before it is imported
    phase = study.user_attrs.get(STUDY_PHASE)
    search = _search_of(args, study)
    if args.sampler is None:  # the search goes on with the method it had, not the space's default
        search.update(catalog.search_method_of(study))
    if phase:  # a phase holds its settings and starts from the previous phase's best: `tune phases` knows how
        return _run_phases(args, space_path, phase["prefix"], [phase["phase"]], **search)
    return _run_space(args, space_path, args.study, **search)


def _phases(args: argparse.Namespace) -> int:
    return _run_phases(args, args.space, args.study, args.phases)


def _ls(args: argparse.Namespace) -> int:
    from studies.store import catalog

    _print_table(catalog.list_studies(args.storage), args.output_format, empty="(no studies)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from optuna.trial import TrialState

    from studies.store import catalog

    study = catalog.load_study(args.study, args.storage)
    complete = catalog.stored_trials(study, (TrialState.COMPLETE,))  # read once: for the table and for the params that matter
    table = catalog.trials_table(study, top=args.top, complete=complete)
    columns = args.columns or ("all" if args.output_format else None)
    _print_table(_shown_columns(study, table, columns, complete), args.output_format)
    return 0


def _shown_columns(study, table, columns: str | None, complete):
    """``table`` with the columns asked for: all, a comma-separated list, or (None) what a person reads first."""
    from studies.errors import UserInputError
    from studies.store import catalog

    if table.empty or columns == "all":
        return table
    if columns is None:
        objectives = [name for name, _ in catalog.objectives_of(study)]
        important = catalog.important_params(study, SHOWN_PARAMS, complete)
        chosen = ["trial", "state", "feasible", "baseline", "epochs", *objectives, *important, "fail_reason"]
        return table[[c for c in dict.fromkeys(chosen) if c in table]]
    chosen = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in table]
    if unknown or not chosen:
        raise UserInputError(f"--columns names {', '.join(unknown) or 'nothing'}; the columns are all, or some of: {', '.join(table.columns)}")
    return table[list(dict.fromkeys(chosen))]


def _selected(args: argparse.Namespace):
    """The study and the trial ``best`` and ``export`` pick: by number, or the best by --by within --where."""
    from studies.store import catalog

    study = catalog.load_study(args.study, args.storage)
    bounds = [catalog.Bound.parse(text) for text in args.where]
    trial = catalog.select_trial(study, trial_number=getattr(args, "trial", None), by=args.by, bounds=bounds, maximize=args.maximize)
    return study, trial


def _best(args: argparse.Namespace) -> int:
    if args.pareto:
        return _front(args)
    study, trial = _selected(args)
    if args.output_format == "json":
        from studies.store.catalog import trial_record

        print(json.dumps(_plain({"study": study.study_name, **trial_record(trial)}), indent=1))
    elif args.output_format == "csv":
        import pandas as pd

        from studies.store.catalog import trial_row

        pd.DataFrame([{"study": study.study_name, **trial_row(trial)}]).to_csv(sys.stdout, index=False)
    else:
        print(_describe_trial(trial))
    return 0


def _front(args: argparse.Namespace) -> int:
    """``tune best STUDY --pareto``: every trial of the study's front, best first by the first objective."""
    import pandas as pd
    from optuna.trial import TrialState

    from studies.errors import UserInputError
    from studies.store import catalog

    if args.by or args.where or args.maximize is not None:
        raise UserInputError("--pareto lists the whole front; drop --by, --where, --maximize and --minimize (or drop --pareto)")
    study = catalog.load_study(args.study, args.storage)
    complete = catalog.stored_trials(study, (TrialState.COMPLETE,))  # read once: for the front and for the params that matter
    front = catalog.pareto_trials(study, complete)
    table = pd.DataFrame([catalog.trial_row(trial) for trial in front])
    if not args.output_format:
        name = shlex.quote(study.study_name)
        front_is = "COMPLETE trial(s) within its constraints that no other trial beats in every objective"
        print(f"study {study.study_name}'s front: {len(front)} {front_is}")
        print(f"(`tune export {name} --trial N -o FILE` writes one's training YAML)")
    shown = _shown_columns(study, table, None if args.output_format is None else "all", complete)
    _print_table(shown, args.output_format, empty="(no COMPLETE trial within its constraints yet)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from studies.store.export import write_export
    from studies.store.storage import artifacts_folder

    study, trial = _selected(args)
    path = write_export(study, trial, args.output, args.checkpoint, artifacts_folder(args.storage))
    print(f"wrote trial {trial.number} of {study.study_name} to {path}")
    if args.checkpoint:
        print(f"wrote its best epoch's weights to {args.checkpoint}")
    return 0


def _trial_threads(cpus: float) -> int:
    """torch's threads in a trial of ``cpus`` CPUs per process: Ray's rule for OMP_NUM_THREADS (the user's, else the floor of the CPUs, at least 1)."""
    import os

    user = os.environ.get("OMP_NUM_THREADS", "")
    return int(user) if user.isdigit() and int(user) > 0 else max(math.floor(cpus), 1)


def _train(args: argparse.Namespace) -> int:
    import yaml

    from studies.space import SpaceError, load_space, space_file

    space_file(args.space)  # both files checked before the space imports torch: a typo is answered at once
    try:
        with open(args.config) as stream:
            config = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceError(f"cannot read --config {args.config}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(config, dict):
        raise SpaceError(f"--config {args.config} is not a YAML mapping of training settings")
    if args.init and not Path(args.init).is_file():
        raise SpaceError(f"--init {args.init} is not a file; pass the weights `tune export --checkpoint PATH` wrote")
    print(f"training {args.space} with {args.config}: loading the space", flush=True)  # importing it takes torch's seconds
    space = load_space(args.space)
    space.check_training_config(config, f"--config {args.config}")
    from trainers.base import WeightsMismatch, checkpoint_weights, fit

    try:
        initial_weights = checkpoint_weights(args.init) if args.init else None
    except ValueError as exc:
        raise SpaceError(f"--init: {exc}; pass the weights `tune export --checkpoint PATH` wrote") from exc
    max_epochs = args.max_epochs or space.budget.max_epochs
    threads = _trial_threads(space.resources.cpus)
    device = "a GPU where torch finds one" if space.resources.gpus else "cpu"
    print(f"{max_epochs} epoch{'s' if max_epochs != 1 else ''} on {device} with {threads} thread{'s' if threads != 1 else ''}, as a trial would", flush=True)
    import torch

    torch.set_num_threads(threads)  # a trial's worker has its CPUs' threads; torch's default, every core, oversubscribes

    def report(metrics: dict[str, float], checkpoint_dir: str) -> None:
        shown = ", ".join(f"{name} {metrics[name]:.4g}" for name in [o.name for o in space.objectives] if name in metrics)
        print(f"epoch {int(metrics['epoch'])}/{max_epochs}: {shown}", flush=True)

    accelerator = "auto" if space.resources.gpus else "cpu"  # as a trial: a space without GPUs trains on CPU
    try:
        metrics = fit(
            space.trainer(), config, max_epochs=max_epochs, report=report, accelerator=accelerator, initial_weights=initial_weights
        )
    except WeightsMismatch as exc:
        raise SpaceError(f"--init {args.init}: {exc}; pass the weights exported with this config") from exc
    print("final metrics:")
    for name, value in sorted(metrics.items()):
        print(f"  {name} = {value:.6g}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from studies.files import checked_name
    from studies.store import catalog
    from studies.store.storage import DEFAULT_FOLDER

    study = catalog.load_study(args.study, args.storage)  # before plotly is imported: a wrong name is answered at once
    from studies.report import write_report

    output = args.output
    if output is None:
        name = checked_name(study.study_name, fix="pass -o FILE")  # a name made elsewhere may hold a path
        Path(DEFAULT_FOLDER).mkdir(exist_ok=True)
        output = f"{DEFAULT_FOLDER}/{name}-report.html"
    written = write_report(study, output, png=args.png)
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from studies.dashboard import checked_host, checked_port, serve
    from studies.store.storage import artifact_store, default_url, open_storage, redacted

    checked_host(args.host, args.expose_unauthenticated_api)
    storage = open_storage(args.storage, create=False)
    checked_port(args.host, args.port)
    url = redacted(args.storage or default_url())
    print(f"optuna-dashboard for {url} at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    artifacts = artifact_store(args.storage, create=False)
    serve(storage, host=args.host, port=args.port, expose=args.expose_unauthenticated_api, artifacts=artifacts)
    return 0


# The command table: each subcommand of build_parser() and the one function that carries it out.
COMMANDS = {
    "run": _run,
    "resume": _resume,
    "repeat": _repeat,
    "phases": _phases,
    "ls": _ls,
    "show": _show,
    "best": _best,
    "export": _export,
    "train": _train,
    "report": _report,
    "dashboard": _dashboard,
}


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The parsed arguments, and the command line itself as ``argv``: a run stores it on its study."""
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _is_ray_command(argv):
        return _forward_to_ray(argv)
    args = parse_command_line(argv)
    from studies.errors import TrialsInterrupted, UserInputError

    try:
        return dispatch(args)
    except UserInputError as exc:
        print(f"tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:  # a run names its study; Ctrl-C before that cannot
        print(f"tune: interrupted; {exc or '`tune resume STUDY` continues the study'}", file=sys.stderr)
        return EXIT_CTRL_C
    except TrialsInterrupted as exc:
        print(f"tune: {exc}", file=sys.stderr)
        return EXIT_TRIALS_INTERRUPTED
