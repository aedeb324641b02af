"""Shared test configuration.

``pytest --pure-python`` blocks numpy and pyroaring before any ``dco`` module is imported, so the whole suite
runs on the core's standard-library fallback (what Pyodide without wheels would run).
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("numpy", "pyroaring")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{fullname} blocked by --pure-python")
        return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--pure-python", action="store_true", help="run the core without numpy and pyroaring")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--pure-python"):
        for name in list(sys.modules):
            if name.split(".")[0] in BLOCKED or name == "dco" or name.startswith("dco."):
                del sys.modules[name]
        sys.meta_path.insert(0, _Blocker())


def pytest_report_header(config: pytest.Config) -> str:
    return "dco core: pure-python fallback" if config.getoption("--pure-python") else "dco core: accelerated"


def load_event(function: str, scenario: str) -> dict:
    """The sample event events/<function>/<scenario>.json (shared with `sam local invoke -e`)."""
    return json.loads((ROOT / "events" / function / f"{scenario}.json").read_text())


@pytest.fixture
def pure_python(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--pure-python"))
