"""The local stack: the whole serverless system on one machine, without Docker and without an AWS account.

    LocalStack.start()
      1. moto server (``python -m moto.server`` in a child process, so moto runs on its own core) on 127.0.0.1,
         a free port: real HTTP, real boto3 clients
      2. resources created from infra/template.yaml (:mod:`dco_local.template`): the bucket (versioning), the
         tables (KeySchema, AttributeDefinitions, StreamSpecification, TTL), the SQS queues (on-failure
         destinations), the tracking-keys SecureString (a random key per stack unless given), and the bucket's
         notification configuration: one QueueConfiguration per S3 event of the template (same prefix/suffix
         filters) into a local queue that moto fills on PutObject
      3. the process environment: the template's function variables resolved for this stack (DCO_BUCKET,
         DCO_PUBLIC_BASE_URL = the gateway...), AWS_ENDPOINT_URL = moto, dummy credentials, the region
      4. the HTTP gateway (:mod:`dco_local.gateway`): the template's HttpApi routes -> API Gateway v2 events
      5. pumps (:mod:`dco_local.pumps`): S3 notifications -> ingest, Events stream -> fold, Counters stream ->
         publish_stats, with Lambda's batching and partial-failure rules

Handlers (functions/<name>/app.py) are imported by file path under module names unique to the stack, at their
first invocation (a cold start), and run in this process: one invocation at a time per function, like one
Lambda execution environment. Because the handlers read ``os.environ`` and build boto3 clients from it, the
stack sets the process environment while it runs and restores it on stop: **one running stack per process**
(starting a second one raises :class:`LocalStackError`).

Example::

    with LocalStack() as stack:
        stack.put_campaign("retail-demo", "examples/retail/campaign.yaml")
        stack.put_feed("retail-demo", "examples/retail/feed.tsv")
        stack.wait_published("retail-demo")
        urllib.request.urlopen(stack.base_url + "/v1/ad?c=retail-demo&exp=retail-main&size=300x250")
        stack.pump()                     # beacons -> Events -> fold -> Counters -> publish_stats -> S3

State: with ``state_dir`` the stack exports S3 objects (latest versions), table items and the tracking keys to
the folder at stop and imports them at start (moto keeps nothing on disk). docs/local.md lists the limits.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from dco_local.pumps import NotificationPump, PumpStats, StreamPump
from dco_local.template import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    ROOT,
    TEMPLATE_PATH,
    FunctionSpec,
    S3Notification,
    Template,
    load_template,
)

__all__ = ["LocalStack", "LocalStackError", "PumpStats", "EXAMPLE_CAMPAIGN", "EXAMPLE_FEED", "EXAMPLE_ID"]

log = logging.getLogger("dco_local.stack")

EXAMPLE_DIR = ROOT / "examples" / "retail"
EXAMPLE_CAMPAIGN = EXAMPLE_DIR / "campaign.yaml"
EXAMPLE_FEED = EXAMPLE_DIR / "feed.tsv"
EXAMPLE_ID = "retail-demo"

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
# Variables that could point boto3 somewhere else than moto while the stack runs; removed, then restored.
_CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SSM",
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
NOTIFICATION_QUEUE = "s3-notifications"

_ACTIVE: LocalStack | None = None
_ACTIVE_LOCK = threading.Lock()
# Powertools' event handler keeps the request being resolved in a class attribute that every resolver of the
# process shares (BaseRouter.current_event, set by resolve()). In Lambda each function has its own process; here
# the functions behind the gateway (those with HttpApi routes: decide, track) share one, so they take turns:
# otherwise a decide request could be matched, or read, as the track request that started meanwhile.
_HTTP_FUNCTIONS_LOCK = threading.Lock()


class LocalStackError(RuntimeError):
    """The local stack cannot start, or a wait on it failed (the message says what to do)."""


@dataclass
class LambdaContext:
    """What handlers and Powertools read from the Lambda context."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class _Function:
    """One function's execution environment: its module (imported at the first call) and a lock (one lock for
    all the functions with HTTP routes, see _HTTP_FUNCTIONS_LOCK)."""

    def __init__(self, spec: FunctionSpec, module_name: str, physical_name: str, region: str) -> None:
        self.spec = spec
        self.module_name = module_name
        self.physical_name = physical_name
        self.region = region
        self.lock = _HTTP_FUNCTIONS_LOCK if spec.routes else threading.Lock()
        self.module: ModuleType | None = None
        self.entry: Any = None
        self.invocations = 0

    def load(self) -> None:
        path = self.spec.module_file
        if not path.is_file():
            raise LocalStackError(f"{self.spec.logical_id}: {path} does not exist")
        spec = importlib.util.spec_from_file_location(self.module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[self.module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(self.module_name, None)
            raise
        entry = getattr(module, self.spec.entry_point, None)
        if entry is None and self.spec.entry_point == "handler":
            entry = getattr(module, "lambda_handler", None)
            if entry is not None:
                log.warning("%s: the template names %s.handler but the module defines lambda_handler; using it",
                            self.spec.logical_id, path.stem)
        if not callable(entry):
            raise LocalStackError(f"{self.spec.logical_id}: {path} has no function {self.spec.entry_point}()")
        self.module, self.entry = module, entry

    def __call__(self, event: dict[str, Any]) -> Any:
        with self.lock:
            if self.entry is None:
                self.load()
            self.invocations += 1
            context = LambdaContext(
                function_name=self.physical_name,
                invoked_function_arn=f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.physical_name}",
                aws_request_id=str(uuid.uuid4()),
                deadline=time.monotonic() + self.spec.timeout,
            )
            # Lambda hands the function a JSON document and serialises what it returns.
            try:
                response = self.entry(json.loads(json.dumps(event)), context)
            finally:
                self._drop_disabled_metrics()
            return json.loads(json.dumps(response)) if response is not None else None

    def _drop_disabled_metrics(self) -> None:
        """With POWERTOOLS_METRICS_DISABLED, Powertools never flushes (nor clears) what the handler added, so
        the values pile up, and at 100 values of a metric it prints them to stdout anyway: drop them."""
        if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in ("1", "true", "yes", "on"):
            return
        try:
            from aws_lambda_powertools import Metrics
        except ImportError:
            return
        for value in vars(self.module).values() if self.module is not None else ():
            if isinstance(value, Metrics):
                with contextlib.suppress(Exception):
                    value.clear_metrics()


class LocalStack:
    """The local stack (see the module docstring). A context manager: ``with LocalStack() as stack: ...``."""

    # The background pumps wait at most this long for a fuller stream batch (the template's
    # MaximumBatchingWindowInSeconds, capped: locally a shorter window keeps the feedback loop tight while
    # batches still fold many events into one write per counter).
    max_batching_window: float = 2.0

    def __init__(
        self,
        *,
        state_dir: Path | str | None = None,
        port: int = 0,
        refresh_seconds: float = 1.0,
        hmac_keys: dict[str, bytes] | None = None,
        quiet: bool = True,
        template_path: Path | str = TEMPLATE_PATH,
        stack_name: str = DEFAULT_STACK_NAME,
        host: str = "127.0.0.1",
        region: str = DEFAULT_REGION,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.port = port
        self.refresh_seconds = refresh_seconds
        self.hmac_keys = dict(hmac_keys) if hmac_keys else None
        self.quiet = quiet
        self.template_path = Path(template_path)
        self.stack_name = stack_name
        self.host = host
        self.region = region
        self.base_url = ""
        self.moto_url = ""
        self.bucket = ""
        self.events_table = ""
        self.counters_table = ""
        self.template: Template | None = None
        self.functions: dict[str, _Function] = {}  # logical id -> function
        self.notification_pump: NotificationPump | None = None
        self.stream_pumps: list[StreamPump] = []
        self.pump_totals = PumpStats()
        self._moto: Any = None
        self._gateway: Any = None
        self._gateway_thread: threading.Thread | None = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._pump_lock = threading.RLock()
        self._pump_thread: threading.Thread | None = None
        self._pump_stop = threading.Event()
        self._pump_errors = 0
        self._marks: dict[str, list[tuple[str, int]]] = {}  # campaign -> [(key put, unix ms before the put)]
        self._token = uuid.uuid4().hex[:8]
        self._started = False
        self._ready = False  # resources created: state may be exported

    # ------------------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None:
                raise LocalStackError("a LocalStack is already running in this process (one per process: "
                                      "the handlers read the process environment); stop it first")
            _ACTIVE = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from dco_local.gateway import Gateway

        if self.quiet:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._started = True
        self._start_moto()
        # moto's backends are process-wide: a stack starts from (and leaves) an empty moto.
        self._reset_moto()
        self._gateway = Gateway(self, host=self.host, port=self.port, quiet=self.quiet)
        self.base_url = self._gateway.base_url
        self.template = load_template(
            self.template_path,
            stack_name=self.stack_name,
            region=self.region,
            parameters={
                "RefreshSeconds": f"{self.refresh_seconds:g}",
                "PublicBaseUrl": self.base_url,
                "LogLevel": "WARNING" if self.quiet else "INFO",
            },
        )
        state = self._read_state()
        if self.hmac_keys is None:
            self.hmac_keys = state.get("keys") or {f"local-{secrets.token_hex(3)}": secrets.token_bytes(32)}
        self._create_resources(state)
        self._ready = True
        self._set_environment()
        self._gateway.start()

    def _start_moto(self) -> None:
        """The moto server in a child process (its own interpreter and GIL: moto's work runs on another core
        than the handlers'); in this process (ThreadedMotoServer) when the child cannot start."""
        try:
            self._moto = _MotoProcess(self.host)
        except Exception as exc:  # noqa: BLE001 - fall back to the in-process server
            log.warning("moto server subprocess failed (%s); running moto in this process", exc)
            from moto.server import ThreadedMotoServer

            self._moto = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
            self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        self.moto_url = f"http://{moto_host}:{moto_port}"

    def _reset_moto(self) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """Stop pumps, export state (if a state folder is set), stop the gateway and moto, restore the env."""
        global _ACTIVE
        try:
            self.stop_pumps()
            if self._ready and self.state_dir is not None:
                try:
                    self._write_state()
                except Exception:  # noqa: BLE001 - never lose the shutdown over a state export
                    log.exception("could not export the local stack's state to %s", self.state_dir)
            if self._gateway is not None:
                self._gateway.stop()
                self._gateway = None
            if self._moto is not None:
                with contextlib.suppress(Exception):
                    self._reset_moto()
                self._moto.stop()
                self._moto = None
        finally:
            self._restore_environment()
            for function in self.functions.values():
                sys.modules.pop(function.module_name, None)
            self._clients.clear()
            self._started = self._ready = False
            with _ACTIVE_LOCK:
                if _ACTIVE is self:
                    _ACTIVE = None

    # ------------------------------------------------------------------------------------------- clients

    def client(self, service: str) -> Any:
        """A boto3 client bound to the moto server (dummy credentials, the stack's region)."""
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.session.Session().client(
                service,
                endpoint_url=self.moto_url,
                region_name=self.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                aws_session_token="testing",
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._clients[service]

    # ------------------------------------------------------------------------------------------ resources

    def _create_resources(self, state: dict[str, Any]) -> None:
        template = self.template
        assert template is not None
        s3, ddb, sqs, ssm = (self.client(s) for s in ("s3", "dynamodb", "sqs", "ssm"))
        # Physical names first: the environment and the policies refer to them.
        for logical_id, resource in template.resources.items():
            kind = resource.get("Type", "")
            if kind == "AWS::Serverless::Function":
                template.physical[logical_id] = f"{self.stack_name}-{logical_id}"
            elif kind in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
                template.physical[logical_id] = "local"
            elif kind in ("AWS::Serverless::LayerVersion", "AWS::Logs::LogGroup", "AWS::SNS::Topic"):
                template.physical[logical_id] = f"{self.stack_name}-{logical_id}"

        buckets = template.resources_of("AWS::S3::Bucket")
        for logical_id, resource in buckets.items():
            props = resource.get("Properties") or {}
            name = template.resolve(props["BucketName"]) if "BucketName" in props else \
                f"{self.stack_name}-{logical_id}".lower()
            s3.create_bucket(Bucket=name)
            if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            template.physical[logical_id] = name
            template.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
            template.attributes[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"

        for logical_id, resource in template.resources_of("AWS::DynamoDB::Table").items():
            props = resource.get("Properties") or {}
            name = template.resolve(props["TableName"]) if "TableName" in props else f"{self.stack_name}-{logical_id}"
            self._create_table(ddb, name, props)
            description = ddb.describe_table(TableName=name)["Table"]
            template.physical[logical_id] = name
            template.attributes[(logical_id, "Arn")] = description["TableArn"]
            if description.get("LatestStreamArn"):
                template.attributes[(logical_id, "StreamArn")] = description["LatestStreamArn"]

        for logical_id, resource in template.resources_of("AWS::SQS::Queue").items():
            props = resource.get("Properties") or {}
            name = template.resolve(props["QueueName"]) if "QueueName" in props else f"{self.stack_name}-{logical_id}"
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            template.physical[logical_id] = url
            template.attributes[(logical_id, "Arn")] = arn
            template.attributes[(logical_id, "QueueName")] = name
            template.attributes[(logical_id, "QueueUrl")] = url

        for logical_id, resource in template.resources_of("AWS::SSM::Parameter").items():
            props = template.resolve(resource.get("Properties") or {})
            name = props.get("Name") or f"/{self.stack_name}/{logical_id}"
            ssm.put_parameter(Name=name, Value=str(props.get("Value", "")), Type=props.get("Type", "String"))
            template.physical[logical_id] = name

        # The tracking keys: a SecureString the template names by parameter (created before deploying).
        self.hmac_parameter = template.parameter("HmacParameterName")
        value = json.dumps({kid: base64.b64encode(key).decode() for kid, key in (self.hmac_keys or {}).items()})
        ssm.put_parameter(Name=self.hmac_parameter, Value=value, Type="SecureString", Overwrite=True)

        specs = template.functions()
        for logical_id, spec in specs.items():
            module_name = f"_dco_local_{self._token}_{spec.name}"
            self.functions[logical_id] = _Function(spec, module_name, template.physical[logical_id], self.region)

        data_bucket = _single(buckets, "AWS::S3::Bucket")
        self.bucket = template.physical[data_bucket]
        tables = template.resources_of("AWS::DynamoDB::Table")
        self.events_table = template.physical.get("EventsTable", "")
        self.counters_table = template.physical.get("CountersTable", "")
        if not (self.events_table and self.counters_table) and tables:
            raise LocalStackError(f"expected EventsTable and CountersTable in {self.template_path}")

        # State first, notifications after: restored objects must not trigger ingest again.
        self._import_state(state)
        self._wire_notifications(specs)
        self._wire_streams(specs)

    @staticmethod
    def _create_table(client: Any, name: str, props: dict[str, Any]) -> None:
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if request["BillingMode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(index_kind):
                request[index_kind] = props[index_kind]
        client.create_table(**request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})

    def _wire_notifications(self, specs: dict[str, FunctionSpec]) -> None:
        template = self.template
        assert template is not None
        sqs, s3 = self.client("sqs"), self.client("s3")
        by_bucket: dict[str, list[S3Notification]] = {}
        for spec in specs.values():
            for notification in spec.notifications:
                by_bucket.setdefault(notification.bucket, []).append(notification)
        if not by_bucket:
            return
        queue_url = sqs.create_queue(QueueName=f"{self.stack_name}-{NOTIFICATION_QUEUE}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        by_id: dict[str, S3Notification] = {}
        for bucket_id, notifications in by_bucket.items():
            configurations = []
            for notification in notifications:
                config_id = f"{notification.function}{notification.name}"  # SAM's naming
                by_id[config_id] = notification
                rules = [{"Name": n, "Value": v} for n, v in
                         (("prefix", notification.prefix), ("suffix", notification.suffix)) if v]
                entry: dict[str, Any] = {"Id": config_id, "QueueArn": queue_arn, "Events": list(notification.events)}
                if rules:
                    entry["Filter"] = {"Key": {"FilterRules": rules}}
                configurations.append(entry)
            s3.put_bucket_notification_configuration(
                Bucket=template.ref(bucket_id), NotificationConfiguration={"QueueConfigurations": configurations})
        self.notification_pump = NotificationPump(sqs, queue_url, by_id, self._invoke_logical, region=self.region)

    def _wire_streams(self, specs: dict[str, FunctionSpec]) -> None:
        template = self.template
        assert template is not None
        for spec in specs.values():
            for mapping in spec.streams:
                arn = template.get_att(mapping.table, "StreamArn")
                failure_url = template.physical.get(mapping.on_failure) if mapping.on_failure else None
                pump = StreamPump(
                    streams=self.client("dynamodbstreams"), stream_arn=arn, mapping=mapping,
                    invoke=self._invoke_logical, region=self.region, sqs=self.client("sqs"),
                    failure_queue_url=failure_url,
                )
                events = (template.resources.get(spec.logical_id, {}).get("Properties") or {}).get("Events") or {}
                window = ((events.get(mapping.name) or {}).get("Properties") or {}).get(
                    "MaximumBatchingWindowInSeconds", 0)
                pump.batching_window = min(float(template.resolve(window) or 0), self.max_batching_window)
                pump.skip_existing()  # restored items are history, not new events
                self.stream_pumps.append(pump)

    # -------------------------------------------------------------------------------------- environment

    def function_environment(self) -> dict[str, str]:
        """The environment the handlers run with (the template's variables, resolved, plus AWS access)."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for name, value in function.spec.environment.items():
                if merged.get(name, value) != value:
                    raise LocalStackError(f"functions disagree on {name}; the local stack runs them in one process "
                                          "and needs one value per variable")
                merged[name] = value
        merged.update(DUMMY_CREDENTIALS)
        merged.update({
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
        })
        if self.quiet:
            merged["POWERTOOLS_METRICS_DISABLED"] = "true"
        return merged

    def _set_environment(self) -> None:
        environment = self.function_environment()
        for name in (*environment, *_CLEARED):
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
        for name in _CLEARED:
            os.environ.pop(name, None)
        os.environ.update(environment)
        _reset_powertools_parameters()

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        _reset_powertools_parameters()

    # ---------------------------------------------------------------------------------------- invocation

    def function(self, name: str) -> _Function:
        """A function by logical id (DecideFunction) or directory name (decide, publish_stats)."""
        if name in self.functions:
            return self.functions[name]
        for function in self.functions.values():
            if function.spec.name == name or function.physical_name == name:
                return function
        known = ", ".join(sorted(f.spec.name for f in self.functions.values()))
        raise LocalStackError(f"no function {name!r} in the template (known: {known})")

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run one handler in-process with the stack's environment; returns its (JSON round-tripped) response."""
        if not self._started:
            raise LocalStackError("the stack is not running; call start() first")
        return self.function(function)(event)

    def _invoke_logical(self, logical_id: str, event: dict[str, Any]) -> Any:
        return self.functions[logical_id](event)

    # --------------------------------------------------------------------------------------------- pumps

    def pump(self, *, max_passes: int = 100) -> PumpStats:
        """Deliver pending S3 notifications and stream records until a pass finds nothing (or a failed batch
        waits for its retry): notifications -> ingest, Events -> fold, Counters -> publish_stats. Each pass
        delivers at most one batch per shard and stream, so the streams take turns; batching windows are not
        waited for (the background pumps of :meth:`start_pumps` honour them)."""
        return self._pump(max_passes=max_passes, flush=True)

    def _pump(self, *, max_passes: int, flush: bool) -> PumpStats:
        total = PumpStats()
        with self._pump_lock:
            for _ in range(max_passes):
                round_stats = PumpStats(passes=1)
                if self.notification_pump is not None:
                    round_stats.add(self.notification_pump.poll())
                for pump in self.stream_pumps:
                    round_stats.add(pump.poll(flush=flush))
                total.add(round_stats)
                if round_stats.invocations == 0:
                    break
            self.pump_totals.add(total)
        return total

    def start_pumps(self, interval: float = 0.5) -> None:
        """Run :meth:`pump` in a background thread every ``interval`` seconds (until :meth:`stop_pumps`).

        Unlike :meth:`pump`, these rounds honour the mappings' batching windows (``MaximumBatchingWindowInSeconds``,
        at most :attr:`max_batching_window` seconds locally): records accumulate into fuller batches."""
        if self._pump_thread is not None and self._pump_thread.is_alive():
            return
        self._pump_stop.clear()

        def loop() -> None:
            while not self._pump_stop.is_set():
                try:
                    self._pump(max_passes=100, flush=False)
                except Exception:  # noqa: BLE001 - keep pumping; the error is logged
                    self._pump_errors += 1
                    log.exception("pump round failed")
                self._pump_stop.wait(interval)

        self._pump_thread = threading.Thread(target=loop, name="dco-local-pumps", daemon=True)
        self._pump_thread.start()

    def stop_pumps(self) -> None:
        self._pump_stop.set()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=30)
            self._pump_thread = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Everything sent to an on-failure destination (stream batches) or dropped (S3 notifications)."""
        out: list[dict[str, Any]] = []
        if self.notification_pump is not None:
            out.extend(self.notification_pump.failures)
        for pump in self.stream_pumps:
            out.extend(pump.failures)
        return out

    # ------------------------------------------------------------------------------------------- inputs

    def put_campaign(self, campaign_id: str, path_or_bytes: bytes | str | Path, fmt: str = "yaml") -> None:
        """Drop a campaign config at ``campaigns/<id>.<fmt>`` (ingest rebuilds and publishes)."""
        if fmt not in ("yaml", "yml", "json"):
            raise ValueError(f"fmt must be yaml or json, got {fmt!r}")
        self._put(campaign_id, f"campaigns/{campaign_id}.{fmt}", _body(path_or_bytes))

    def put_feed(self, campaign_id: str, path_or_bytes: bytes | str | Path, name: str = "feed.tsv") -> None:
        """Drop a product feed at ``feeds/<id>/<name>`` (ingest rebuilds and publishes)."""
        self._put(campaign_id, f"feeds/{campaign_id}/{name}", _body(path_or_bytes))

    def _put(self, campaign_id: str, key: str, body: bytes) -> None:
        since_ms = int(time.time() * 1000) - 1
        self._marks.setdefault(campaign_id, []).append((key, since_ms))
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)

    def pointer(self, campaign_id: str) -> dict[str, Any] | None:
        """The campaign's published pointer (``pointers/<id>.json``), or None."""
        from botocore.exceptions import ClientError

        try:
            body = self.client("s3").get_object(Bucket=self.bucket, Key=f"pointers/{campaign_id}.json")["Body"]
        except ClientError:
            return None
        return json.loads(body.read())

    def wait_published(self, campaign_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until ``pointers/<id>.json`` exists and, after :meth:`put_campaign` / :meth:`put_feed`, until
        ingest has processed the last drop; returns the pointer.

        Pumps while waiting. Raises :class:`LocalStackError` with the ingest report's reason when the last
        drop was rejected (the pointer, if any, still names the previous snapshot), and on timeout.
        """
        deadline = time.monotonic() + timeout
        marks = self._marks.get(campaign_id) or []
        while True:
            self.pump()
            report = self._report(campaign_id, *marks[-1]) if marks else None
            if report is not None and report.get("outcome") == "rejected":
                self._marks.pop(campaign_id, None)
                reason = report.get("error") or report.get("config_errors") or report.get("feed")
                raise LocalStackError(f"ingest rejected {marks[-1][0]}: {json.dumps(reason)[:600]}")
            if report is not None or not marks:
                pointer = self.pointer(campaign_id)
                if pointer is not None:
                    self._marks.pop(campaign_id, None)
                    return pointer
            if time.monotonic() > deadline:
                raise LocalStackError(f"{campaign_id}: not published within {timeout:g}s "
                                      f"(reports under s3://{self.bucket}/reports/{campaign_id}/)")
            time.sleep(0.05)

    def _report(self, campaign_id: str, key: str, since_ms: int) -> dict[str, Any] | None:
        """Ingest's report on the drop of ``key`` made at or after ``since_ms`` (unix ms), if written yet."""
        s3 = self.client("s3")
        listing = s3.list_objects_v2(Bucket=self.bucket, Prefix=f"reports/{campaign_id}/")
        for item in listing.get("Contents") or []:
            report = json.loads(s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
            sequence = str(report.get("sequence") or "0").split(".")[0]
            if report.get("drop") == key and sequence.isdigit() and int(sequence) >= since_ms:
                return report
        return None

    def stats(self, campaign_id: str) -> dict[str, Any] | None:
        """The published stats object of a campaign (``stats/<id>.msgpack``), or None."""
        from dco.aws.stats_store import StatsStore

        obj, _ = StatsStore(self.bucket, client=self.client("s3")).load(campaign_id)
        return obj

    # -------------------------------------------------------------------------------------------- state

    def _read_state(self) -> dict[str, Any]:
        if self.state_dir is None or not (self.state_dir / "stack.json").is_file():
            return {}
        meta = json.loads((self.state_dir / "stack.json").read_text())
        keys_file = self.state_dir / "keys.json"
        keys = None
        if keys_file.is_file():
            keys = {kid: base64.b64decode(v) for kid, v in json.loads(keys_file.read_text()).items()}
        return {"meta": meta, "keys": keys}

    def _import_state(self, state: dict[str, Any]) -> None:
        if not state or self.state_dir is None:
            return
        s3, ddb = self.client("s3"), self.client("dynamodb")
        objects = self.state_dir / "s3"
        count = 0
        if objects.is_dir():
            for path in sorted(p for p in objects.rglob("*") if p.is_file()):
                key = path.relative_to(objects).as_posix()
                s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                count += 1
        items = 0
        for logical_id, table in (("EventsTable", self.events_table), ("CountersTable", self.counters_table)):
            path = self.state_dir / "dynamodb" / f"{logical_id}.jsonl"
            if not path.is_file():
                continue
            for line in path.read_text().splitlines():
                if line.strip():
                    ddb.put_item(TableName=table, Item=json.loads(line))
                    items += 1
        log.info("restored %d objects and %d items from %s", count, items, self.state_dir)

    def _write_state(self) -> None:
        assert self.state_dir is not None
        s3, ddb = self.client("s3"), self.client("dynamodb")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(self.state_dir) / f".staging-{self._token}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "s3").mkdir(parents=True)
        (staging / "dynamodb").mkdir()
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for item in page.get("Contents") or []:
                target = staging / "s3" / item["Key"]
                if ".." in Path(item["Key"]).parts:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
        for logical_id, table in (("EventsTable", self.events_table), ("CountersTable", self.counters_table)):
            with (staging / "dynamodb" / f"{logical_id}.jsonl").open("w") as out:
                for page in ddb.get_paginator("scan").paginate(TableName=table):
                    for item in page.get("Items") or []:
                        out.write(json.dumps(item, sort_keys=True) + "\n")
        keys_path = staging / "keys.json"
        keys_path.touch(mode=0o600)
        keys_path.write_text(json.dumps({kid: base64.b64encode(k).decode() for kid, k in (self.hmac_keys or {}).items()}))
        (staging / "stack.json").write_text(json.dumps({"format": 1, "bucket": self.bucket, "saved_at": int(time.time())}))
        for name in ("s3", "dynamodb", "keys.json", "stack.json"):
            target = self.state_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / name).rename(target)
        shutil.rmtree(staging, ignore_errors=True)

    # ----------------------------------------------------------------------------------------- examples

    def publish_example(self, campaign: Path | str | None = None, feed: Path | str | None = None,
                        *, timeout: float = 120) -> str:
        """Drop a campaign (the retail example by default) and its feed, wait for publication; returns its id."""
        from dco.config import parse_config_text

        campaign_path = Path(campaign) if campaign else EXAMPLE_CAMPAIGN
        feed_path = Path(feed) if feed else (EXAMPLE_FEED if campaign is None else None)
        data = parse_config_text(campaign_path.read_bytes())
        campaign_id = str(data.get("id") or campaign_path.stem)
        fmt = "json" if campaign_path.suffix.lower() == ".json" else "yaml"
        self.put_campaign(campaign_id, campaign_path, fmt=fmt)
        if feed_path is not None:
            self.put_feed(campaign_id, feed_path, name=feed_path.name if feed_path.suffix else "feed.tsv")
        self.wait_published(campaign_id, timeout=timeout)
        return campaign_id


# The child's program: moto's server, with TCP_NODELAY on its responses and no per-request log line (werkzeug's
# request log costs moto a sixth of its time), exiting when its parent goes away.
_MOTO_MAIN = """
import logging, os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto import server
server.MotoRequestHandler.disable_nagle_algorithm = True
server.MotoRequestHandler.log_request = lambda self, *args, **kwargs: None
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server.main(sys.argv[1:])
"""


class _MotoProcess:
    """``python -m moto.server`` on a free port of ``host``, as a child process (the ThreadedMotoServer API
    the stack uses: get_host_and_port(), stop())."""

    def __init__(self, host: str, *, timeout: float = 60) -> None:
        import socket
        import subprocess
        import urllib.request

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            self.host, self.port = host, probe.getsockname()[1]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environment["MOTO_PORT"] = str(self.port)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MOTO_MAIN, "-H", host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise LocalStackError(f"moto server exited with code {self.process.returncode} at start")
            try:
                with urllib.request.urlopen(f"http://{host}:{self.port}/moto-api/data.json", timeout=2) as answer:
                    answer.read()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise LocalStackError(
                        f"moto server did not answer on {host}:{self.port} within {timeout:g}s"
                    ) from exc
                time.sleep(0.05)

    def get_host_and_port(self) -> tuple[str, int]:
        return self.host, self.port

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        atexit.unregister(self.stop)


def _single(resources: dict[str, Any], kind: str) -> str:
    if len(resources) != 1:
        raise LocalStackError(f"the local stack expects exactly one {kind} in the template, found {len(resources)}")
    return next(iter(resources))


def _body(path_or_bytes: bytes | str | Path) -> bytes:
    if isinstance(path_or_bytes, bytes | bytearray):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def _reset_powertools_parameters() -> None:
    """Forget Powertools' cached SSM provider (its boto3 client and cached values belong to one endpoint)."""
    with contextlib.suppress(ImportError):
        from aws_lambda_powertools.utilities.parameters import base

        base.DEFAULT_PROVIDERS.clear()
    with contextlib.suppress(ImportError):
        from dco.aws import keys

        keys._PARSED.clear()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[LocalStack]:
    """``with running(port=8080) as stack:`` (the same as ``with LocalStack(...)``)."""
    with LocalStack(**kwargs) as stack:
        yield stack
