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


def accelerated() -> dict[str, bool]:
    """Which accelerators this process uses: ``{"numpy": True, "pyroaring": False}``."""
    return {"numpy": np is not None, "pyroaring": pyroaring is not None}
