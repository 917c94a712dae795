"""``python -m benchmarks``: run the benchmark sections, keep their rows, plots and one RESULTS.md.

    python -m benchmarks [--smoke] [--only SECTION ...] [--out DIR]

Each section module (``benchmarks/SECTION.py``) defines ``TITLE``, ``measure(smoke)`` (rows),
``table(rows)`` (Markdown) and ``plots(rows)`` (named plotly figures). A run writes each chosen
section's rows, with when, how and where they were measured, to ``DIR/results/SECTION.json``, each
plot to ``DIR/results/SECTION_NAME.html`` and, where a Chrome or Chromium renders it, ``.png`` (without one the
PNGs are skipped, and said to be), and ``DIR/RESULTS.md`` with every section:
those not run this time are read back from their JSON. ``--smoke`` uses tiny sizes (CI runs it so the
benchmarks never rot); its figures are not for reading. DIR defaults to this folder.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
SECTIONS = ("efficiency", "search_quality", "default_search", "unseen", "corner", "many_knobs", "noisy", "gate_gain", "documented", "yahpo_model", "anchors", "resume_anchors", "storage_scale", "trainers", "pareto", "seed_spaces")
# NumPy and SciPy too: the searchers' draws and models run on them, and with Ray and Optuna the same, search-quality rows
# measured under other versions of them differed.
PACKAGES = ("torch", "ray", "optuna", "pytorch-lightning", "optuna-dashboard", "numpy", "scipy")


def section_module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def section_command(name: str, smoke: bool) -> str:
    return f"python -m benchmarks --only {name}" + (" --smoke" if smoke else "")


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """The machine and software the figures depend on."""
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpus = [
        f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
        for i in range(torch.cuda.device_count())
    ]
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores",
        "memory": f"{memory:.1f} GiB",
        "OS": platform.platform(),
        "GPU": ", ".join(gpus) or "none",
        "Python": platform.python_version(),
        **{package: importlib.metadata.version(package) for package in PACKAGES},
    }


def results_folder(out: Path) -> Path:
    return out / "results"


def run_section(name: str, smoke: bool, out: Path, this_machine: dict[str, str]) -> dict:
    """Measure one section and write its record (rows, plots, when, how, where) as ``results/NAME.json``."""
    module = section_module(name)
    print(f"benchmarks: {name} ({module.TITLE}){' at smoke sizes' if smoke else ''} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    rows = module.measure(smoke=smoke)
    record = {
        "section": name,
        "title": module.TITLE,
        "command": section_command(name, smoke),
        "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "smoke": smoke,
        "machine": this_machine,
        "rows": rows,
    }
    figures = module.plots(rows)
    record["plots"], record["pngs"] = write_plots(name, figures, results_folder(out))
    (results_folder(out) / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def write_plots(section: str, figures: dict, folder: Path) -> tuple[list[str], bool]:
    """Each figure as HTML, and as PNG where a browser renders it (Chrome or Chromium); the plots' file stems, and
    whether their PNGs were written."""
    from studies.report.png import browser_path, write_figure_pngs

    stems = [f"{section}_{name}" for name in figures]
    for stem, figure in zip(stems, figures.values()):
        # plotly.js from its CDN keeps 4.6 MB out of the repository; the PNG beside each page reads offline.
        figure.write_html(folder / f"{stem}.html", include_plotlyjs="cdn")
    if not figures:
        return stems, False
    if browser_path() is None:
        print(
            f"benchmarks: {section}: PNGs skipped, no Chrome or Chromium here (apt-get install chromium); the HTML plots are written",
            file=sys.stderr,
        )
        return stems, False
    write_figure_pngs({folder / f"{stem}.png": figure for stem, figure in zip(stems, figures.values())})
    return stems, True


def read_record(name: str, out: Path) -> dict | None:
    """A section's record from an earlier run, or None if it was never measured in the current format."""
    path = results_folder(out) / f"{name}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if isinstance(record, dict) and "rows" in record else None


def machine_summary(described: dict[str, str]) -> str:
    return f"{described['CPU']}, {described['memory']}, GPU: {described['GPU']}"


def section_markdown(name: str, record: dict | None) -> str:
    if record is None:
        return f"## {name}\n\nNot measured yet: `{section_command(name, smoke=False)}`.\n"
    table = section_module(name).table(record["rows"])
    smoke = " At smoke sizes: the figures check that the benchmark runs, they are not for reading." if record["smoke"] else ""
    png = record.get("pngs", True)  # False: measured where no browser rendered PNGs
    links = " · ".join(f"[{stem}](results/{stem}.html)" + (f" ([PNG](results/{stem}.png))" if png else "") for stem in record["plots"])
    return (
        f"## {record['title']}\n\n"
        f"Measured {record['measured_at']} in {record['wall_seconds']:.0f} s with `{record['command']}` "
        f"on {machine_summary(record['machine'])}.{smoke}\n\n"
        f"{table}\n" + (f"\nPlots: {links}\n" if links else "")
    )


def results_markdown(records: dict[str, dict | None], this_machine: dict[str, str]) -> str:
    machine_rows = "\n".join(f"| {key} | {value} |" for key, value in this_machine.items())
    sections = "\n".join(section_markdown(name, records[name]) for name in SECTIONS)
    return (
        "# Benchmark results\n\n"
        "Regenerate every section with `python -m benchmarks`, one with `python -m benchmarks --only SECTION`; "
        "`--smoke` runs tiny sizes. Each section says when, with which command and on which machine it was measured.\n\n"
        f"## Machine\n\nThe machine of the latest run:\n\n| | |\n|---|---|\n{machine_rows}\n\n{sections}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run the benchmark sections; write their results and RESULTS.md."
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every section runs, in about a minute each")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION", help=f"run only these: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder for RESULTS.md and results/ (default: the benchmarks folder)"
    )
    args = parser.parse_args(argv)
    results_folder(args.out).mkdir(parents=True, exist_ok=True)
    this_machine = machine()
    chosen = [name for name in SECTIONS if name in (args.only or SECTIONS)]
    records = {name: run_section(name, args.smoke, args.out, this_machine) for name in chosen}
    # Read after the run, so that a section another run wrote meanwhile is shown too.
    records.update({name: read_record(name, args.out) for name in SECTIONS if name not in chosen})
    (args.out / "RESULTS.md").write_text(results_markdown(records, this_machine))
    print(f"benchmarks: wrote {args.out / 'RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
