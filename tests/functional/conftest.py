"""Shared fixtures of the functional tests: AWS on moto, built from the SAM template.

``aws`` starts moto in-process (``moto.mock_aws``) and creates the bucket and every DynamoDB table of
infra/template.yaml with the template's own KeySchema, AttributeDefinitions and StreamSpecification, so the
tests cannot drift from the infrastructure. Resource names are the template's logical ids in lower case
(``eventstable``, ``counterstable``, bucket ``dco-test-bucket``); :class:`AwsResources` carries them with
clients, and ``settings`` is the matching :class:`dco.aws.settings.Settings`.

``load_handler(name)`` imports functions/<name>/app.py as a fresh module (the function directories are not
packages) after the environment is set, so module-scope settings and clients see moto.

The repository root is put on ``sys.path`` so test modules can import these helpers and the sample-event
loader by package path: ``from tests.conftest import load_event``,
``from tests.functional.conftest import AwsResources, load_handler``. tests/functional is a package (its test
basenames repeat tests/unit's, e.g. test_fold.py), and this directory stays on ``sys.path`` too, so sibling
helper modules import by plain name (``from _stack import ...``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
REGION = "us-east-1"
BUCKET = "dco-test-bucket"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation short tags (!Ref, !GetAtt, !Sub...) as plain data."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def template_tables() -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every AWS::DynamoDB::Table in infra/template.yaml."""
    template = yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return {
        name: resource.get("Properties", {})
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


@dataclass
class AwsResources:
    """What the ``aws`` fixture created, with clients bound to moto."""

    region: str
    bucket: str
    tables: dict[str, str]  # template logical id -> table name
    s3: Any
    dynamodb: Any
    streams: Any

    @property
    def events_table(self) -> str:
        return self.tables["EventsTable"]

    @property
    def counters_table(self) -> str:
        return self.tables["CountersTable"]


def _create_table(client: Any, name: str, props: dict[str, Any]) -> None:
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
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
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so nothing can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(aws_environment: None) -> Iterator[AwsResources]:
    """moto in-process with the bucket and the template's tables (names: logical ids in lower case)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        tables = {}
        for logical_id, props in template_tables().items():
            name = logical_id.lower()
            _create_table(dynamodb, name, props)
            tables[logical_id] = name
        yield AwsResources(
            region=REGION,
            bucket=BUCKET,
            tables=tables,
            s3=s3,
            dynamodb=dynamodb,
            streams=boto3.client("dynamodbstreams", region_name=REGION),
        )


@pytest.fixture
def settings(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings for the moto resources, also exported to the environment the handlers read."""
    from dco.aws.settings import Settings

    value = Settings(
        bucket=aws.bucket,
        events_table=aws.tables.get("EventsTable", ""),
        counters_table=aws.tables.get("CountersTable", ""),
    )
    for name, text in value.as_environ().items():
        monkeypatch.setenv(name, text)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DCOTest")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "dco-test")
    return value


def load_handler(name: str) -> ModuleType:
    """Import functions/<name>/app.py as a fresh module ``<name>_app`` (re-executes module scope)."""
    module_name = f"{name}_app"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    """The bits of the Lambda context Powertools reads."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
