"""What the HTTP handlers (decide, track) share: their AWS clients, built from one boto3 session, the warm cache
and the report of a failed refresh.

The handlers keep their replaceable module-level factories (``clock``, ``get_settings``, ``get_store``,
``get_keys``, ``get_cache``: the tests' seams); the bodies of those factories live here::

    Clients (one per handler module = per execution environment)
        .session() ──> .s3_store(bucket)           S3Store on the session's S3 client     (decide, track)
                   ├─> .events_table(name)         EventsTable on its DynamoDB client     (track; boto3)
                   └─> .tracking_keys(parameter)   SSM GetParameter through SSMParameters (cached 5 minutes)
    warm_cache(source, clock, settings, ...)       the WarmCache of one execution environment
    refresh_reporter(metrics, logger)              WarmCache.on_failure -> a metric and a warning

Cold start (docs/performance.md, "coldstart"): this module imports nothing heavy at module scope, and the
session is botocore's, not boto3's: decide never imports boto3 (boto3 adds ``boto3.compat`` -> s3transfer and
its resource machinery, 60-90 ms, for nothing decide calls). That is also why the tracking keys are read through
:class:`SSMParameters` rather than Powertools' ``SSMProvider``, whose module imports boto3. One session per
handler means one botocore loader: the second client (SSM after S3) reuses the endpoint, partition and service
list data the first one loaded. track's Events table wraps the same botocore session in a boto3 session
(``EventsTable`` serializes items with boto3's ``TypeSerializer``).

The session's loader looks in ``dco/aws/models`` first, which holds botocore's SSM service model cut down to
``GetParameter``, the one SSM call of decide and track (and the only one their roles allow): building an SSM
client from the full model (about 400 operations) costs about 140 M instructions, 40-100 ms on this machine,
from the cut-down model 15 M. :func:`service_subset` makes it; tests/unit/test_handler_support.py checks that it
still equals the installed botocore's model cut the same way (regenerate with the command in that test). Only
SSM: the S3 client keeps botocore's full model (its endpoint rules read parameters from the operations' input
shapes, and a cut-down copy could drift from a newer ruleset in the deployed layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dco.aws.events import EventsTable
    from dco.aws.keys import KeyRing
    from dco.aws.settings import Settings
    from dco.aws.store import S3Store
    from dco.warm import Source, WarmCache

T = TypeVar("T")

# botocore service models cut down to the operations the serving functions call (``<service>/<api>/service-2.json``)
MODELS = Path(__file__).resolve().parent / "models"


def utc_now() -> datetime:
    """The handlers' default clock."""
    return datetime.now(UTC)


def once(state: dict[str, Any], name: str, factory: Callable[[], T]) -> T:
    """``state[name]``, built by ``factory`` on first use (warm state of one execution environment)."""
    if name not in state:
        state[name] = factory()
    value: T = state[name]
    return value


class SSMParameters:
    """SSM parameter values, cached ``max_age`` seconds per (name, decrypt): the ``get`` that
    :func:`dco.aws.keys.load_keys` calls on a Powertools ``SSMProvider``, with the same caching rule (a value is
    kept for ``max_age`` seconds; ``max_age=0`` always fetches), over a plain SSM client.

    ``client`` is a botocore/boto3 SSM client; ``clock`` (monotonic seconds) is replaceable for tests. Errors are
    the client's own (``ClientError``, ``BotoCoreError``), which decide maps to a 500 like any other failure.
    """

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._cache: dict[tuple[str, bool], tuple[float, str]] = {}

    def get(self, name: str, *, decrypt: bool = False, max_age: int = 300) -> str:
        """The parameter's value (``WithDecryption=decrypt``), from the cache while younger than ``max_age``."""
        key = (name, bool(decrypt))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        value = str(self.client.get_parameter(Name=name, WithDecryption=bool(decrypt))["Parameter"]["Value"])
        if max_age > 0:
            self._cache[key] = (now + max_age, value)
        return value


def service_subset(model: Mapping[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """A botocore service model (``service-2.json``) with only ``operations`` and the shapes they reach (input,
    output, errors, transitively); metadata and every other top-level key are kept as they are.

    >>> m = {"metadata": {}, "operations": {"A": {"input": {"shape": "I"}}, "B": {}},
    ...      "shapes": {"I": {"type": "structure", "members": {"x": {"shape": "S"}}}, "S": {}, "U": {}}}
    >>> sorted(service_subset(m, ["A"])["shapes"])
    ['I', 'S']
    """
    wanted = list(operations)
    pending: list[str] = []
    for name in wanted:
        operation = model["operations"][name]
        pending += [operation[k]["shape"] for k in ("input", "output") if k in operation]
        pending += [error["shape"] for error in operation.get("errors", ())]
    shapes = model["shapes"]
    kept: set[str] = set()
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        kept.add(name)
        shape = shapes[name]
        refs = [shape.get(k) for k in ("member", "key", "value")] + list(shape.get("members", {}).values())
        pending += [ref["shape"] for ref in refs if ref and "shape" in ref]
    return {
        **model,
        "operations": {name: model["operations"][name] for name in wanted},
        "shapes": {name: shape for name, shape in shapes.items() if name in kept},
    }


class Clients:
    """The AWS clients of one handler module, built on first use from one botocore session."""

    def __init__(self) -> None:
        self._session: Any = None
        self._ssm: SSMParameters | None = None

    def session(self) -> Any:
        """The ``botocore.session.Session`` (built on first use), its loader looking in :data:`MODELS` first."""
        if self._session is None:
            import botocore.session

            session = botocore.session.get_session()
            if MODELS.is_dir():  # absent from a wheel built without it: botocore's full models then
                session.get_component("data_loader").search_paths.insert(0, str(MODELS))
            self._session = session
        return self._session

    def s3_store(self, bucket: str) -> S3Store:
        """The data bucket's :class:`~dco.aws.store.S3Store` (a new S3 client).

        The client does not ask S3 for a response checksum (``response_checksum_validation="when_required"``):
        botocore would otherwise CRC32 every GET, 7-10 ms for a 22 MB snapshot, which
        :func:`~dco.snapshot.load_snapshot` then verifies end to end with its own SHA-256 anyway; pointers and
        stats are small and decoded strictly, and the transport is TLS.
        """
        from dco.aws.store import S3Store, s3_client

        return S3Store(bucket, client=s3_client(self.session(), response_checksums="when_required"))

    def events_table(self, table_name: str) -> EventsTable:
        """The Events table adapter (a new DynamoDB client, from a boto3 session over the same botocore one)."""
        import boto3

        from dco.aws.events import EventsTable

        return EventsTable(table_name, session=boto3.session.Session(botocore_session=self.session()))

    def tracking_keys(self, parameter: str) -> KeyRing:
        """The tracking keys held in SSM ``parameter``, through :class:`SSMParameters` on the session (which
        caches the value five minutes: :func:`dco.aws.keys.load_keys`)."""
        from dco.aws.keys import load_keys

        if self._ssm is None:
            self._ssm = SSMParameters(self.session().create_client("ssm"))
        return load_keys(parameter, provider=self._ssm)


def warm_cache(
    source: Source,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    on_failure: Callable[[str, Any], None],
    with_stats: bool = True,
) -> WarmCache:
    """The :class:`~dco.warm.WarmCache` of a handler: ``clock`` is called on every refresh check."""
    from dco.warm import WarmCache

    return WarmCache(
        source=source,
        clock=lambda: clock().timestamp(),
        refresh_seconds=settings.refresh_seconds,
        with_stats=with_stats,
        on_failure=on_failure,
    )


def refresh_reporter(metrics: Any, logger: Any) -> Callable[[str, Any], None]:
    """A WarmCache ``on_failure``: one count of the named metric and a warning with the failure's details."""
    from aws_lambda_powertools.metrics import MetricUnit

    def report(metric: str, detail: Any) -> None:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        logger.warning("warm state refresh failed; serving the last good state", extra=dict(detail))

    return report


def optional_tracer() -> tuple[Any, Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """``(tracer, capture_lambda_handler)`` of a Powertools Tracer, or ``(None, identity)`` without aws_xray_sdk.

    For the stream functions (fold, publish_stats), whose DynamoDB and S3 calls are worth tracing; the Tracer
    imports aws_xray_sdk (about 250 ms of cold start), which decide therefore does without.
    """
    try:
        from aws_lambda_powertools import Tracer

        tracer = Tracer()
    except ImportError:  # pragma: no cover - aws_xray_sdk ships in the deps layer
        return None, lambda fn: fn
    return tracer, tracer.capture_lambda_handler
