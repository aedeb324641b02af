"""Fixtures of the reliability suite (issue 8; docs/reliability.md lists what each module proves).

Two kinds of test live here:

* moto in-process (``mock_aws``), like tests/functional: the fixtures ``aws``, ``settings`` and
  ``lambda_context`` are re-exported from tests/functional/conftest.py (tables built from the template).
* the local stack over real HTTP, like tests/e2e: ``rel_stack`` starts one :class:`~dco_local.stack.LocalStack`
  per test module (one stack per process; moto's backends are process-wide, so a module uses either the stack
  or ``mock_aws``, never both) with the retail example published.

No ``__init__.py``: module scope is what we need, and every file name starts with ``test_rel_`` (unique).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT), str(ROOT / "tests" / "functional")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tests.functional.conftest import (  # noqa: E402,F401 - fixtures re-exported for this folder
    aws,
    aws_environment,
    lambda_context,
    settings,
)

CAMPAIGN = "retail-demo"


@pytest.fixture(scope="module")
def rel_stack() -> Iterator[Any]:
    """A running local stack with the retail example published (one per test module)."""
    from dco_local.stack import EXAMPLE_CAMPAIGN, EXAMPLE_FEED, LocalStack

    with LocalStack(refresh_seconds=1.0) as stack:
        stack.put_campaign(CAMPAIGN, EXAMPLE_CAMPAIGN)
        stack.put_feed(CAMPAIGN, EXAMPLE_FEED)
        stack.wait_published(CAMPAIGN, timeout=120)
        yield stack
