"""The SAM template (infra/template.yaml) read as data, for the local stack.

The template is the single source of truth for what is wired to what; the local stack never names a table, a
route or a stream mapping itself. This module reads the template with a CloudFormation-aware YAML loader (short
tags ``!Ref``, ``!Sub``, ``!GetAtt``... become their long ``Ref`` / ``Fn::*`` forms) and resolves the intrinsic
functions the local stack needs against local names:

    template.yaml ──load_template──> Template
        .resources_of("AWS::DynamoDB::Table")      tables: KeySchema, AttributeDefinitions, Stream, TTL
        .functions()                               FunctionSpec: code dir, handler, resolved environment,
                                                   HttpApi routes, DynamoDB stream mappings, S3 notifications
        .resolve(value)                            !Ref / !Sub / !GetAtt / !If / !Join ... -> plain values

Physical names are derived, as CloudFormation would, from a stack name: ``!Ref`` of a table is
``<stack>-<LogicalId>``, of a queue its URL-like name, of a parameter its default (or an override);
``AWS::AccountId`` is moto's ``123456789012``. A value that cannot be resolved locally raises
:class:`TemplateError` naming it, rather than passing an unresolved dict to a handler.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_REGION = "us-east-1"
DEFAULT_STACK_NAME = "dco-local"
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"


class TemplateError(ValueError):
    """The template holds something the local stack cannot resolve or run."""


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation short tags (!Ref, !GetAtt, !Sub...) into their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass(frozen=True)
class Route:
    """One HttpApi event of a function: ``GET /v1/ad``."""

    method: str
    path: str
    function: str  # logical id
    payload_version: str = "2.0"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class StreamMapping:
    """One DynamoDB event source mapping of a function (the template's event properties, resolved)."""

    function: str
    table: str  # logical id of the table whose stream feeds the function
    name: str  # the event's name in the template (EventsStream)
    batch_size: int = 100
    starting_position: str = "TRIM_HORIZON"
    maximum_retry_attempts: int = -1  # -1: until the record expires, like Lambda
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    filters: tuple[dict[str, Any], ...] = ()
    on_failure: str | None = None  # logical id of the destination


@dataclass(frozen=True)
class S3Notification:
    """One S3 event of a function: object events with key prefix/suffix filters."""

    function: str
    bucket: str  # logical id
    name: str  # the event's name in the template (FeedTsv); also the notification's configuration id
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function with Globals applied."""

    logical_id: str
    code_dir: Path
    handler: str  # "app.handler"
    environment: dict[str, str]
    timeout: float
    routes: tuple[Route, ...] = ()
    streams: tuple[StreamMapping, ...] = ()
    notifications: tuple[S3Notification, ...] = ()

    @property
    def name(self) -> str:
        """The function's directory name (decide, publish_stats), the name the CLI and the stack use."""
        return self.code_dir.name

    @property
    def module_file(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    @property
    def entry_point(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass
class Template:
    """A parsed template plus what the intrinsic functions resolve to locally."""

    data: dict[str, Any]
    path: Path = TEMPLATE_PATH
    stack_name: str = DEFAULT_STACK_NAME
    region: str = DEFAULT_REGION
    parameters: dict[str, str] = field(default_factory=dict)  # overrides of Parameters' defaults
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> physical name (Ref)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attr) -> value

    # ---------------------------------------------------------------------------------------------- reading

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.data.get("Resources") or {}

    def resources_of(self, kind: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource of every resource of type ``kind`` (conditions ignored: all are local)."""
        return {name: res for name, res in self.resources.items() if res.get("Type") == kind}

    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return str(self.parameters[name])
        spec = (self.data.get("Parameters") or {}).get(name)
        if spec is None:
            raise TemplateError(f"unknown parameter {name}")
        if "Default" not in spec:
            raise TemplateError(f"parameter {name} has no default; pass it as an override")
        return str(spec["Default"])

    def condition(self, name: str) -> bool:
        spec = (self.data.get("Conditions") or {}).get(name)
        if spec is None:
            raise TemplateError(f"unknown condition {name}")
        return bool(self._condition_value(spec))

    def _condition_value(self, spec: Any) -> Any:
        if isinstance(spec, dict) and len(spec) == 1:
            (key, value), = spec.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in value)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._condition_value(value[0])
            if key == "Fn::And":
                return all(self._condition_value(v) for v in value)
            if key == "Fn::Or":
                return any(self._condition_value(v) for v in value)
            if key == "Condition":
                return self.condition(value)
        return self.resolve(spec)

    # -------------------------------------------------------------------------------------------- resolving

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::StackName": self.stack_name,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
        }
        if name not in values:
            raise TemplateError(f"pseudo parameter {name} is not available locally")
        return values[name]

    def ref(self, name: str) -> str:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in (self.data.get("Parameters") or {}):
            return self.parameter(name)
        if name in self.physical:
            return self.physical[name]
        raise TemplateError(f"!Ref {name}: not a parameter, and the local stack has not created that resource")

    def get_att(self, name: str, attribute: str) -> str:
        if (name, attribute) in self.attributes:
            return self.attributes[(name, attribute)]
        raise TemplateError(f"!GetAtt {name}.{attribute}: not available locally")

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its local value."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value if not _is_no_value(v)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.resolve(i)) for i in self.resolve(items))
            if key == "Fn::If":
                name, yes, no = arg
                chosen = self.resolve(yes if self.condition(name) else no)
                return chosen
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local stack")
        return {k: self.resolve(v) for k, v in value.items() if not _is_no_value(v)}

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return _SUB.sub(replace, str(text)).replace("${!", "${")

    # -------------------------------------------------------------------------------------------- functions

    def functions(self, *, resolve_environment: bool = True) -> dict[str, FunctionSpec]:
        """Logical id -> :class:`FunctionSpec` of every AWS::Serverless::Function (Globals applied).

        ``resolve_environment=False`` leaves the environment empty: routes, stream mappings and notifications
        can be read before the stack has created (named) its resources.
        """
        globals_ = (self.data.get("Globals") or {}).get("Function") or {}
        out: dict[str, FunctionSpec] = {}
        for logical_id, resource in self.resources_of("AWS::Serverless::Function").items():
            props = resource.get("Properties") or {}
            code_uri = props.get("CodeUri", globals_.get("CodeUri"))
            if not isinstance(code_uri, str):
                raise TemplateError(f"{logical_id}: CodeUri must be a local path for the local stack")
            variables = {
                **((globals_.get("Environment") or {}).get("Variables") or {}),
                **((props.get("Environment") or {}).get("Variables") or {}),
            }
            environment = {name: _text(self.resolve(value)) for name, value in variables.items()} \
                if resolve_environment else {}
            routes, streams, notifications = [], [], []
            for event_name, event in (props.get("Events") or {}).items():
                kind, eprops = event.get("Type"), event.get("Properties") or {}
                if kind == "HttpApi":
                    routes.append(Route(
                        method=str(eprops.get("Method", "ANY")).upper(),
                        path=str(eprops.get("Path", "/$default")),
                        function=logical_id,
                        payload_version=str(eprops.get("PayloadFormatVersion", "2.0")),
                    ))
                elif kind == "DynamoDB":
                    streams.append(self._stream_mapping(logical_id, event_name, eprops))
                elif kind == "S3":
                    notifications.append(self._notification(logical_id, event_name, eprops))
            out[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_dir=(self.path.parent / code_uri).resolve(),
                handler=str(props.get("Handler", globals_.get("Handler", "app.handler"))),
                environment=environment,
                timeout=float(props.get("Timeout", globals_.get("Timeout", 3))),
                routes=tuple(routes),
                streams=tuple(streams),
                notifications=tuple(notifications),
            )
        return out

    def _stream_mapping(self, function: str, name: str, props: Mapping[str, Any]) -> StreamMapping:
        stream = props.get("Stream")
        table = _logical_target(stream)
        if table is None:
            raise TemplateError(f"{function}.{name}: Stream must be !GetAtt <Table>.StreamArn")
        filters = []
        for item in ((props.get("FilterCriteria") or {}).get("Filters") or []):
            pattern = item.get("Pattern")
            filters.append(yaml.safe_load(pattern) if isinstance(pattern, str) else pattern)
        destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        return StreamMapping(
            function=function,
            table=table,
            name=name,
            batch_size=int(self.resolve(props.get("BatchSize", 100))),
            starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            filters=tuple(filters),
            on_failure=_logical_target(destination),
        )

    def _notification(self, function: str, name: str, props: Mapping[str, Any]) -> S3Notification:
        bucket = props.get("Bucket")
        if not (isinstance(bucket, dict) and "Ref" in bucket):
            raise TemplateError(f"{function}.{name}: Bucket must be !Ref <Bucket> (SAM requires it)")
        events = props.get("Events")
        rules = (((props.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
        by_name = {str(r.get("Name", "")).lower(): str(r.get("Value", "")) for r in rules}
        return S3Notification(
            function=function,
            bucket=bucket["Ref"],
            name=name,
            events=tuple(events if isinstance(events, list) else [events]),
            prefix=by_name.get("prefix", ""),
            suffix=by_name.get("suffix", ""),
        )


    def routes(self) -> list[Route]:
        """Every HttpApi route of the template's functions."""
        return [r for spec in self.functions(resolve_environment=False).values() for r in spec.routes]


def load_template(
    path: Path = TEMPLATE_PATH,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = DEFAULT_REGION,
    parameters: Mapping[str, str] | None = None,
) -> Template:
    """Parse ``path`` (a SAM / CloudFormation template)."""
    data = yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return Template(data=data, path=Path(path), stack_name=stack_name, region=region,
                    parameters=dict(parameters or {}))


def matches_filter(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether an event-source-mapping filter pattern matches a record (the subset of EventBridge patterns
    Lambda filters use: exact values in lists, nested objects, ``prefix``, ``exists`` and ``anything-but``).

    >>> matches_filter({"eventName": ["INSERT"]}, {"eventName": "MODIFY"})
    False
    """
    for key, expected in pattern.items():
        present = isinstance(record, Mapping) and key in record
        actual = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(expected, Mapping):
            if not present or not matches_filter(expected, actual):
                return False
            continue
        if not isinstance(expected, list):
            expected = [expected]
        if not any(_matches_value(rule, present, actual) for rule in expected):
            return False
    return True


def _matches_value(rule: Any, present: bool, actual: Any) -> bool:
    if isinstance(rule, Mapping):
        if "exists" in rule:
            return present == bool(rule["exists"])
        if "prefix" in rule:
            return present and isinstance(actual, str) and actual.startswith(str(rule["prefix"]))
        if "anything-but" in rule:
            excluded = rule["anything-but"]
            return present and actual not in (excluded if isinstance(excluded, list) else [excluded])
        raise TemplateError(f"filter rule {rule} is not supported by the local stack")
    return present and actual == rule


def _logical_target(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return (target if isinstance(target, list) else str(target).split("."))[0]
        if "Ref" in value:
            return str(value["Ref"])
    return None


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get("Ref") == "AWS::NoValue"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TemplateError(f"environment value {value!r} did not resolve to text")
    return str(value)
