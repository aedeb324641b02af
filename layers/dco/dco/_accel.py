"""Optional accelerators. The core runs on the standard library plus msgpack; numpy and pyroaring speed it up.

Modules import ``np`` and ``pyroaring`` from here and branch on ``None``; nothing else in the package imports
numpy or pyroaring directly, so one switch (the tests' ``--pure-python`` option blocks both imports before
``dco`` is imported) runs the whole core on its fallback path.
"""

from __future__ import annotations

from types import ModuleType

np: ModuleType | None
pyroaring: ModuleType | None

try:  # pragma: no cover - depends on the environment
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

try:  # pragma: no cover
    import pyroaring
except ImportError:  # pragma: no cover
    pyroaring = None


def disable() -> None:
    """Run the core on its pure-Python path in this process (``dco simulate --pure-python``): the accelerators are
    dropped before any other ``dco`` module reads them. Raises ``RuntimeError`` when one already has."""
    import sys

    global np, pyroaring
    loaded = sorted(name for name in sys.modules if name.startswith("dco.") and name != "dco._accel")
    if loaded:
        raise RuntimeError(f"disable() must run before the rest of dco is imported (loaded: {', '.join(loaded[:3])})")
    np = None
    pyroaring = None


def accelerated() -> dict[str, bool]:
    """Which accelerators this process uses: ``{"numpy": True, "pyroaring": False}``."""
    return {"numpy": np is not None, "pyroaring": pyroaring is not None}
