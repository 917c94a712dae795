"""The import arrows of the house: each room imports only the rooms below it, so nothing imports upward.

Read from the source with ``ast`` (imports inside functions count too), so a new module is checked without being listed.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute names, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


# (the files, the packages they must never import): the arrows of ARCHITECTURE.md's two diagrams
FORBIDDEN = [
    ("objectives", ("trainers", "studies", "search_spaces")),
    ("trainers", ("studies", "search_spaces", "ray", "optuna")),
    ("studies/store", ("studies.driver", "studies.report", "studies.cli", "ray")),
    ("studies/report", ("studies.driver", "studies.cli", "ray")),
    ("studies/driver", ("studies.cli",)),
]
GROUND = ["studies/space.py", "studies/samplers.py", "studies/records.py", "studies/errors.py", "studies/files.py"]


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in files:
        for name in imported_modules(path):
            if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden):
                found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name} imports {name}")
    return sorted(found)


@pytest.mark.parametrize("folder, forbidden", FORBIDDEN, ids=[folder for folder, _ in FORBIDDEN])
def test_no_room_imports_upward(folder, forbidden):
    files = sources(folder)
    assert files, f"{folder} holds no module"
    assert violations(files, forbidden) == []


def test_the_ground_imports_no_room():
    rooms = ("studies.driver", "studies.store", "studies.report", "studies.cli")
    assert violations([ROOT / path for path in GROUND], rooms) == []


def test_the_check_sees_an_upward_import(tmp_path):
    # The check itself: a store module that imports the driver is caught, inside a function too.
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def read():\n    from studies.driver.run import run_study\n")
    assert violations([sneaky], ("studies.driver",)) != []
