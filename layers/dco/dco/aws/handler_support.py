"""What the HTTP handlers (decide, track) share: their AWS clients, built from one boto3 session, the warm cache
and the report of a failed refresh.

The handlers keep their replaceable module-level factories (``clock``, ``get_settings``, ``get_store``,
``get_keys``, ``get_cache``: the tests' seams); the bodies of those factories live here::

    Clients (one per handler module = per execution environment)
        .session() ──> .s3_store(bucket)           S3Store on the session's S3 client     (decide, track)
                   ├─> .events_table(name)         EventsTable on its DynamoDB client     (track)
                   └─> .tracking_keys(parameter)   SSM through a Powertools SSMProvider on the same session
    warm_cache(source, clock, settings, ...)       the WarmCache of one execution environment
    refresh_reporter(metrics, logger)              WarmCache.on_failure -> a metric and a warning

Cold start (docs/performance.md, "coldstart"): this module imports nothing heavy at module scope; boto3 and
Powertools Parameters are imported on first use. One session per handler means one botocore loader: the second
client (SSM after S3) reuses the endpoint and partition data the first one loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dco.aws.events import EventsTable
    from dco.aws.keys import KeyRing
    from dco.aws.settings import Settings
    from dco.aws.store import S3Store
    from dco.warm import Source, WarmCache

T = TypeVar("T")


def utc_now() -> datetime:
    """The handlers' default clock."""
    return datetime.now(UTC)


def once(state: dict[str, Any], name: str, factory: Callable[[], T]) -> T:
    """``state[name]``, built by ``factory`` on first use (warm state of one execution environment)."""
    if name not in state:
        state[name] = factory()
    value: T = state[name]
    return value


class Clients:
    """The AWS clients of one handler module, built on first use from one boto3 session."""

    def __init__(self) -> None:
        self._session: Any = None
        self._ssm: Any = None

    def session(self) -> Any:
        """The boto3 session (built on first use)."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    def s3_store(self, bucket: str) -> S3Store:
        """The data bucket's :class:`~dco.aws.store.S3Store` (a new S3 client)."""
        from dco.aws.store import S3Store

        return S3Store(bucket, session=self.session())

    def events_table(self, table_name: str) -> EventsTable:
        """The Events table adapter (a new DynamoDB client)."""
        from dco.aws.events import EventsTable

        return EventsTable(table_name, session=self.session())

    def tracking_keys(self, parameter: str) -> KeyRing:
        """The tracking keys held in SSM ``parameter``, through a Powertools ``SSMProvider`` on the session (which
        caches the value five minutes: :func:`dco.aws.keys.load_keys`)."""
        from dco.aws.keys import load_keys

        if self._ssm is None:
            from aws_lambda_powertools.utilities.parameters import SSMProvider

            self._ssm = SSMProvider(boto3_session=self.session())
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
