"""Record real learning curves of this project's own trainers, as data for tabular search-quality benchmarks.

For each search space (``search_spaces/<space>.py``) it trains, on one CPU thread, first the space's
documented baselines and then configs drawn by Optuna's ``RandomSampler`` (seed = the config's index in
the file, conditional knobs handled by ``Space.suggest``), each with ``trainers.base.fit`` for the
space's ``budget.max_epochs`` and training seed = the same index. Every epoch's metrics (``val_loss``,
the space's objectives, ``epoch_seconds``, ...) are kept. A config whose training raises or goes
non-finite is recorded too, with its error (or ``"diverged"``) and the epochs it got: a study would
count it as FAIL.

Output: one JSON line per finished config, appended as its own gzip member (so a kill loses at most
the config in training) to ``<out>/<space>.jsonl.gz``::

    {"space", "params", "baseline" (name or null), "seed", "max_epochs",
     "epochs": [{metric: value, ...} per epoch], "error" (null or text), "train_seconds"}

Floats are rounded to 6 significant digits; a non-finite metric is written as null. A run continues
where the files end (the next seeds), so running it again adds configs. Spaces take turns, one config
each, so a deadline leaves every space covered; at the deadline the config in training is dropped.

Command::

    python -m benchmarks.record_curves --spaces cabbi abag flyvis --configs 300 --deadline 14:20
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
import torch

from studies.space import Space, load_space
from trainers.base import fit

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "data" / "curves"
DEFAULT_SPACES = ("cabbi", "abag", "flyvis")
SIGNIFICANT_DIGITS = 6
ERROR_CHARS = 500  # an error's text is kept for what went wrong, not its whole traceback


class DeadlineReached(Exception):
    """Raised from the per-epoch report once the deadline has passed: the config in training is dropped."""


def rounded(value: Any) -> Any:
    """Floats to 6 significant digits and non-finite ones to None (JSON has no NaN); the rest as is."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def curve_path(out: Path, space: str) -> Path:
    return out / f"{space}.jsonl.gz"


def read_records(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The complete records of a curve file, and whether the file ends with no record cut short by a kill."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records, True
    try:
        with gzip.open(path, "rt") as lines:
            for line in lines:
                records.append(json.loads(line))
    except (EOFError, zlib.error, gzip.BadGzipFile, json.JSONDecodeError):
        # Only the last member can be incomplete (each line is flushed and closed before the next).
        return records, False
    return records, True


def rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` by ``records`` alone (dropping a record cut short), atomically."""
    partial = path.with_suffix(".tmp")
    with gzip.open(partial, "wt") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)
    partial.replace(path)


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """One record as its own gzip member, closed at once so the file is whole after every config."""
    with gzip.open(path, "at") as out:
        out.write(json.dumps(rounded(record)) + "\n")


def config_at(space: Space, index: int) -> tuple[dict[str, Any], str | None]:
    """The params of the config at ``index``: the baselines in order first, then random draws seeded by the index."""
    baselines = list(space.baselines.items())
    if index < len(baselines):
        name, params = baselines[index]
        return dict(params), name
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=index))
    return space.suggest(study.ask()), None


def train_and_record(
    space: Space, params: Mapping[str, Any], baseline: str | None, seed: int, deadline: float = math.inf
) -> dict[str, Any]:
    """Train ``params`` of ``space`` for its full budget with ``seed`` and return its record (errors included)."""
    epochs: list[dict[str, float]] = []

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        epochs.append(dict(metrics))
        if time.time() > deadline:
            raise DeadlineReached

    error = None
    started = time.perf_counter()
    try:
        fit(
            space.trainer(),
            space.training_config(params),
            max_epochs=space.budget.max_epochs,
            report=report,
            seed=seed,
            accelerator="cpu",
            devices=1,
            checkpoint_every_s=1e9,  # only the last epoch's checkpoint, which fit always saves
        )
    except DeadlineReached:
        raise
    except Exception as exc:  # any failure of a config is data: the study records it as FAIL
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    if error is None and (not epochs or not math.isfinite(epochs[-1].get("val_loss", math.nan))):
        error = "diverged"
    return {
        "space": space.name,
        "params": dict(params),
        "baseline": baseline,
        "seed": seed,
        "max_epochs": space.budget.max_epochs,
        "epochs": epochs,
        "error": error,
        "train_seconds": time.perf_counter() - started,
    }


def parse_deadline(text: str | None, now: dt.datetime) -> float:
    """Seconds from now ("3600"), a UTC time of day today ("14:20") or an ISO datetime, as a Unix time; inf when absent."""
    if text is None:
        return math.inf
    try:
        return now.timestamp() + float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.combine(now.date(), dt.time.fromisoformat(text), tzinfo=dt.timezone.utc)
    except ValueError:
        moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def turns(counts: dict[str, int], configs: int) -> Iterator[tuple[str, int]]:
    """(space, next index) one space after another, until every space has ``configs`` records."""
    while any(count < configs for count in counts.values()):
        for name, count in counts.items():
            if count < configs:
                counts[name] = count + 1
                yield name, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=list(DEFAULT_SPACES), help="search_spaces/<name>.py to record")
    parser.add_argument("--configs", type=int, default=300, help="configs per space in all (baselines included)")
    parser.add_argument("--deadline", help="stop then: seconds from now, a UTC time of day (14:20) or an ISO datetime")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the <space>.jsonl.gz files")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # one core: the machine is shared with other work
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = parse_deadline(args.deadline, dt.datetime.now(dt.timezone.utc))
    args.out.mkdir(parents=True, exist_ok=True)
    spaces = {name: load_space(REPO / "search_spaces" / f"{name}.py") for name in args.spaces}
    counts = {}
    for name in spaces:
        path = curve_path(args.out, name)
        records, complete = read_records(path)
        if not complete:
            rewrite(path, records)
        counts[name] = len(records)
    print(f"recording {', '.join(f'{n} (from {c})' for n, c in counts.items())} up to {args.configs} each", flush=True)
    for name, index in turns(counts, args.configs):
        if time.time() > deadline:
            break
        try:
            params, baseline = config_at(spaces[name], index)
            record = train_and_record(spaces[name], params, baseline, seed=index, deadline=deadline)
        except DeadlineReached:
            print(f"deadline reached during {name} config {index}; it is not recorded", flush=True)
            break
        append_record(curve_path(args.out, name), record)
        final = record["epochs"][-1].get("val_loss") if record["epochs"] else None
        outcome = f"val_loss {final:.4g}" if final is not None and math.isfinite(final) else "val_loss nan"
        print(
            f"{name} {index + 1} done in {record['train_seconds']:.1f} s, {len(record['epochs'])} epochs, {outcome}"
            + (f", error: {record['error'][:120]}" if record["error"] else ""),
            flush=True,
        )
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
