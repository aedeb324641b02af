"""The SAM template (infra/template.yaml) against the storage contract (docs/storage.md) and the settings.

The template is read as data: CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...) become their long forms
({"Ref": ...}, {"Fn::Sub": ...}), so every assertion is about the wiring, not the YAML spelling. What is checked:
least privilege per function (an exact action x resource matrix, no wildcards), the bucket and table hardening,
the stream mappings' failure handling, the routes, the S3 notifications, and that the environment the template
sets is exactly what `dco.aws.settings` reads. cfn-lint runs last when it is installed (required under CI=true).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dco.aws import settings as settings_module
from dco.aws.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
STORAGE_DOC = ROOT / "docs" / "storage.md"

# The bucket's computed name, as the template spells it everywhere (see the template's header comment).
BUCKET_NAME = "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"
BUCKET_ARN = "arn:${AWS::Partition}:s3:::" + BUCKET_NAME

FUNCTION_DIRS = {
    "DecideFunction": "decide",
    "TrackFunction": "track",
    "FoldFunction": "fold",
    "PublishStatsFunction": "publish_stats",
    "IngestFunction": "ingest",
}

ROUTES = {
    ("GET", "/v1/ad"): "DecideFunction",
    ("GET", "/v1/events/imp"): "TrackFunction",
    ("GET", "/v1/events/click"): "TrackFunction",
    ("POST", "/v1/events/conversion"): "TrackFunction",
    ("GET", "/v1/events/conv"): "TrackFunction",
}

# (prefix, suffix) of every object-created notification, all to IngestFunction (docs/storage.md).
NOTIFICATIONS = {
    ("campaigns/", ".yaml"),
    ("campaigns/", ".json"),
    ("feeds/", ".tsv"),
    ("feeds/", ".csv"),
    ("feeds/", ".txt"),
}

# Least privilege, exactly: function -> {(action, resource label)}. Labels: "s3:<prefix>/*" for objects,
# "s3:bucket" for the bucket, a logical id for table/queue ARNs, "ssm:hmac", "kms:via-ssm".
ACCESS = {
    "DecideFunction": {
        ("s3:GetObject", "s3:snapshots/*"),
        ("s3:GetObject", "s3:pointers/*"),
        ("s3:GetObject", "s3:stats/*"),
        ("s3:ListBucket", "s3:bucket"),
        ("ssm:GetParameter", "ssm:hmac"),
        ("kms:Decrypt", "kms:via-ssm"),
    },
    "TrackFunction": {
        ("dynamodb:PutItem", "EventsTable"),
        ("s3:GetObject", "s3:snapshots/*"),
        ("s3:GetObject", "s3:pointers/*"),
        ("s3:ListBucket", "s3:bucket"),
        ("ssm:GetParameter", "ssm:hmac"),
        ("kms:Decrypt", "kms:via-ssm"),
    },
    "FoldFunction": {
        ("dynamodb:UpdateItem", "CountersTable"),
        ("sqs:SendMessage", "FoldFailureQueue"),
    },
    "PublishStatsFunction": {
        ("s3:GetObject", "s3:stats/*"),
        ("s3:PutObject", "s3:stats/*"),
        ("s3:ListBucket", "s3:bucket"),
        ("sqs:SendMessage", "PublishStatsFailureQueue"),
    },
    "IngestFunction": {
        ("s3:GetObject", "s3:campaigns/*"),
        ("s3:GetObject", "s3:feeds/*"),
        ("s3:GetObject", "s3:snapshots/*"),
        ("s3:GetObject", "s3:pointers/*"),
        ("s3:PutObject", "s3:snapshots/*"),
        ("s3:PutObject", "s3:pointers/*"),
        ("s3:PutObject", "s3:reports/*"),
        ("s3:ListBucket", "s3:bucket"),
    },
}

STREAMS = {"FoldFunction": "EventsTable", "PublishStatsFunction": "CountersTable"}

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # AWS managed cache policy "CachingDisabled"
# AWS managed origin request policy "AllViewerExceptHostHeader" (a custom whitelist is capped at 10 headers).
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


# ------------------------------------------------------------------------------------------------------------
# Reading the template
# ------------------------------------------------------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags into their long (JSON) forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """infra/template.yaml as plain data, intrinsic functions in their long form."""
    return yaml.load(path.read_text(), Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def _functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _of_type(resources, "AWS::Serverless::Function")


def _events(function: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    events = function["Properties"].get("Events", {})
    return [e["Properties"] for e in events.values() if e["Type"] == kind]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _sub_text(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"]
    return None


def _resource_label(resource: Any, statement: dict[str, Any]) -> str:
    """A short, comparable name for a policy resource (see ACCESS)."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical_id, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn", resource
        return logical_id
    text = _sub_text(resource)
    assert text is not None, f"policy resource {resource!r} is neither !GetAtt X.Arn nor !Sub"
    if text == BUCKET_ARN:
        return "s3:bucket"
    if text.startswith(BUCKET_ARN + "/"):
        return "s3:" + text[len(BUCKET_ARN) + 1 :]
    if text == "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${HmacParameterName}":
        return "ssm:hmac"
    if text == "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*":
        via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        assert _sub_text(via) == "ssm.${AWS::Region}.amazonaws.com", "kms:Decrypt must be scoped to SSM"
        return "kms:via-ssm"
    raise AssertionError(f"unexpected policy resource {text!r}")


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"only inline policy documents are allowed (exact actions and resources), got {policy!r}"
        )
        out.extend(policy["Statement"])
    return out


# ------------------------------------------------------------------------------------------------------------
# IAM
# ------------------------------------------------------------------------------------------------------------


def test_every_function_has_exactly_its_access(resources: dict[str, Any]) -> None:
    functions = _functions(resources)
    assert set(functions) == set(ACCESS)
    for name, function in functions.items():
        granted = set()
        for statement in _statements(function):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{name}: wildcard action {action}"
                for resource in _as_list(statement["Resource"]):
                    assert resource != "*", f"{name}: Resource '*' for {action}"
                    granted.add((action, _resource_label(resource, statement)))
        assert granted == ACCESS[name], (
            f"{name}: extra {granted - ACCESS[name]}, missing {ACCESS[name] - granted}"
        )


def test_no_function_writes_where_a_drop_triggers_ingest() -> None:
    trigger_prefixes = {prefix for prefix, _ in NOTIFICATIONS}
    for name, grants in ACCESS.items():
        for action, label in grants:
            if action == "s3:PutObject":
                assert label.removeprefix("s3:").removesuffix("*") not in trigger_prefixes, (name, label)


def test_bucket_is_named_by_one_string_everywhere(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # The ingest function cannot !Ref the bucket (circular), so the name is computed; all spellings must agree.
    assert _sub_text(resources["DataBucket"]["Properties"]["BucketName"]) == BUCKET_NAME
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert _sub_text(env[settings_module.BUCKET]) == BUCKET_NAME
    ingest = resources["IngestFunction"]["Properties"]
    assert "Environment" not in ingest or settings_module.BUCKET not in ingest["Environment"]["Variables"]


# ------------------------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------------------------


def test_bucket_is_versioned_encrypted_private_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources["DataBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    block = bucket["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    policies = [
        r["Properties"]
        for r in _of_type(resources, "AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    ]
    assert len(policies) == 1
    denies_plain_http = [
        s
        for s in policies[0]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] in ("s3:*", ["s3:*"])
        and str(s["Condition"]["Bool"]["aws:SecureTransport"]).lower() == "false"
    ]
    assert len(denies_plain_http) == 1
    covered = _as_list(denies_plain_http[0]["Resource"])
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in covered
    assert {"Fn::Sub": "${DataBucket.Arn}/*"} in covered


def _documented_tables() -> dict[str, dict[str, str | None]]:
    """Table name -> key, key type, TTL attribute and stream view, from the **Table** lines of storage.md."""
    pattern = re.compile(
        r"\*\*(\w+)\*\* \(`(\w+)` ([SNB]) hash key(?:; TTL attribute `(\w+)`)?; stream (\w+); SSE\)"
    )
    found = {
        m.group(1): {"key": m.group(2), "type": m.group(3), "ttl": m.group(4), "stream": m.group(5)}
        for m in pattern.finditer(STORAGE_DOC.read_text())
    }
    assert set(found) == {"Events", "Counters"}, f"docs/storage.md table lines changed: {found}"
    return found


@pytest.mark.parametrize(
    ("logical_id", "documented"), [("EventsTable", "Events"), ("CountersTable", "Counters")]
)
def test_tables_match_the_storage_contract(
    resources: dict[str, Any], logical_id: str, documented: str
) -> None:
    doc = _documented_tables()[documented]
    table = resources[logical_id]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": doc["key"], "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": doc["key"], "AttributeType": doc["type"]}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamViewType": doc["stream"]}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    if doc["ttl"]:
        assert table["TimeToLiveSpecification"] == {"AttributeName": doc["ttl"], "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in table


def test_stateful_resources_survive_stack_deletion(resources: dict[str, Any]) -> None:
    for logical_id in ("DataBucket", "EventsTable", "CountersTable"):
        assert resources[logical_id]["DeletionPolicy"] == "Retain"
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain"


# ------------------------------------------------------------------------------------------------------------
# Stream mappings and notifications
# ------------------------------------------------------------------------------------------------------------


def test_stream_mappings_fail_safely(template: dict[str, Any], resources: dict[str, Any]) -> None:
    mapped = {}
    for name, function in _functions(resources).items():
        for event in _events(function, "DynamoDB") + _events(function, "Kinesis"):
            mapped[name] = event["Stream"]
            assert event["StartingPosition"] == "TRIM_HORIZON"
            size = event["BatchSize"]
            if isinstance(size, dict):  # a parameter (FoldBatchSize): its default and its bounds must fit
                spec = template["Parameters"][size["Ref"]]
                assert 1 <= spec["MinValue"] <= spec["Default"] <= spec["MaxValue"] <= 10_000
            else:
                assert 1 <= size <= 10_000
            assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            assert event["BisectBatchOnFunctionError"] is True
            assert 0 <= event["MaximumRetryAttempts"] <= 10, "retries must be bounded (not -1)"
            assert 60 <= event["MaximumRecordAgeInSeconds"] <= 86_400, "record age must be bounded (not -1)"
            assert "MaximumBatchingWindowInSeconds" in event
            # The per-shard sequence guard (docs/storage.md) needs one batch per shard at a time, in order.
            assert event.get("ParallelizationFactor", 1) == 1
            destination = event["DestinationConfig"]["OnFailure"]["Destination"]
            queue_id, attribute = destination["Fn::GetAtt"]
            assert attribute == "Arn"
            queue = resources[queue_id]
            assert queue["Type"] == "AWS::SQS::Queue"
            assert (
                queue["Properties"].get("SqsManagedSseEnabled") is True
                or "KmsMasterKeyId" in queue["Properties"]
            )
    assert mapped == {name: {"Fn::GetAtt": [table, "StreamArn"]} for name, table in STREAMS.items()}


def test_fold_counts_new_events_only(resources: dict[str, Any]) -> None:
    (event,) = _events(resources["FoldFunction"], "DynamoDB")
    patterns = [yaml.safe_load(f["Pattern"]) for f in event["FilterCriteria"]["Filters"]]
    assert patterns == [{"eventName": ["INSERT"]}], "TTL expiry (REMOVE) must never reach the counters"


def test_drops_notify_ingest_and_nothing_else(resources: dict[str, Any]) -> None:
    seen = set()
    for name, function in _functions(resources).items():
        for event in _events(function, "S3"):
            assert name == "IngestFunction"
            assert event["Bucket"] == {"Ref": "DataBucket"}
            assert event["Events"] in ("s3:ObjectCreated:*", ["s3:ObjectCreated:*"])
            rules = {r["Name"]: r["Value"] for r in event["Filter"]["S3Key"]["Rules"]}
            seen.add((rules["prefix"], rules["suffix"]))
    assert seen == NOTIFICATIONS


# ------------------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------------------


def test_routes_exactly(resources: dict[str, Any]) -> None:
    routes = {}
    for name, function in _functions(resources).items():
        for event in _events(function, "HttpApi"):
            assert event["ApiId"] == {"Ref": "HttpApi"}
            assert event["PayloadFormatVersion"] == "2.0"
            key = (event["Method"].upper(), event["Path"])
            assert key not in routes, f"route {key} wired twice"
            routes[key] = name
        assert not _events(function, "Api"), "REST API events are not used (docs/deploy.md)"
    assert routes == ROUTES


def test_api_has_cors_and_access_logs(resources: dict[str, Any]) -> None:
    api = resources["HttpApi"]["Properties"]
    cors = api["CorsConfiguration"]
    assert "*" in cors["AllowOrigins"] and {"GET", "POST"} <= set(cors["AllowMethods"])
    destination = api["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"]
    assert resources[destination[0]]["Type"] == "AWS::Logs::LogGroup"


def test_cloudfront_is_optional_uncached_and_forwards_viewer_signals(resources: dict[str, Any]) -> None:
    cloudfront = {name for name, r in resources.items() if r["Type"].startswith("AWS::CloudFront::")}
    assert cloudfront == {"ApiDistribution"}
    distribution = resources["ApiDistribution"]
    assert distribution["Condition"] == "CloudFrontEnabled"
    config = distribution["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    for behavior in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]:
        assert behavior["CachePolicyId"] == CACHING_DISABLED
        # Every query string, every viewer header but Host, and the CloudFront-Viewer-* geo headers.
        assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST
        assert "POST" in behavior["AllowedMethods"]
    assert any(b["PathPattern"] == "/v1/*" for b in config["CacheBehaviors"])
    outputs = {
        name for name, o in load_template()["Outputs"].items() if o.get("Condition") == "CloudFrontEnabled"
    }
    assert outputs == {"CloudFrontDomain"}


# ------------------------------------------------------------------------------------------------------------
# Functions, layers, alarms
# ------------------------------------------------------------------------------------------------------------


def test_functions_point_at_their_code(template: dict[str, Any], resources: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Handler"] == "app.handler"
    assert template["Globals"]["Function"]["Runtime"] == "python3.11"
    for name, directory in FUNCTION_DIRS.items():
        code = (TEMPLATE_PATH.parent / resources[name]["Properties"]["CodeUri"]).resolve()
        assert code == ROOT / "functions" / directory
        assert (code / "app.py").is_file(), f"{code}/app.py is missing"


def test_layers_split_runtime_package_from_dependencies(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "DcoLayer"}, {"Ref": "DepsLayer"}]
    dco = resources["DcoLayer"]
    assert (TEMPLATE_PATH.parent / dco["Properties"]["ContentUri"]).resolve() == ROOT / "layers" / "dco"
    assert dco["Metadata"]["BuildMethod"] == "makefile"
    dco_make = (ROOT / "layers" / "dco" / "Makefile").read_text()
    assert "build-DcoLayer:" in dco_make
    deps = resources["DepsLayer"]
    deps_dir = (TEMPLATE_PATH.parent / deps["Properties"]["ContentUri"]).resolve()
    assert deps["Metadata"]["BuildMethod"] == "makefile"
    deps_make = (deps_dir / "Makefile").read_text()
    assert "build-DepsLayer:" in deps_make
    # Both layers ship bytecode Lambda can use: /opt is read-only, and sam zips with 1980 timestamps, so only
    # hash-based .pyc validate; the dependencies are arm64 / cp311 wheels for the python3.11 runtime.
    for make in (dco_make, deps_make):
        assert "compileall" in make and "--invalidation-mode unchecked-hash" in make
    assert "--platform manylinux2014_aarch64" in deps_make and "--python-version 3.11" in deps_make
    assert "-r requirements.txt" in deps_make and "--only-binary=:all:" in deps_make

    def names(path: Path) -> set[str]:
        out = set()
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
        return out

    core = names(ROOT / "layers" / "dco" / "requirements.txt")
    assert core <= names(deps_dir / "requirements.txt"), "DepsLayer must install every core dependency"


def test_every_function_has_error_and_throttle_alarms(resources: dict[str, Any]) -> None:
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm").values()
    watched = {
        (a["Properties"]["MetricName"], d["Value"]["Ref"])
        for a in alarms
        for d in a["Properties"]["Dimensions"]
        if isinstance(d["Value"], dict) and "Ref" in d["Value"]
    }
    for name in FUNCTION_DIRS:
        assert ("Errors", name) in watched and ("Throttles", name) in watched, name
    queue_alarms = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for d in a["Properties"]["Dimensions"]
    }
    assert queue_alarms == set(_of_type(resources, "AWS::SQS::Queue"))


# ------------------------------------------------------------------------------------------------------------
# Environment <-> settings <-> docs
# ------------------------------------------------------------------------------------------------------------


def test_environment_is_exactly_the_settings_variables(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for function in _functions(resources).values():
        names |= set(function["Properties"].get("Environment", {}).get("Variables", {}))
    assert names == set(settings_module.ALL_VARIABLES)


def test_settings_variables_are_the_documented_ones() -> None:
    documented = set(re.findall(r"^\| `(DCO_\w+)`", STORAGE_DOC.read_text(), flags=re.MULTILINE))
    assert documented == set(settings_module.DCO_VARIABLES)
    assert set(re.findall(r"`(POWERTOOLS_\w+)`", STORAGE_DOC.read_text())) == set(
        settings_module.POWERTOOLS_VARIABLES
    )


def test_settings_defaults_match_template_parameter_defaults(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    parameters = template["Parameters"]
    defaults = Settings()
    by_variable = {
        settings_module.REFRESH_SECONDS: defaults.refresh_seconds,
        settings_module.EVENT_TTL_DAYS: defaults.event_ttl_days,
        settings_module.TOKEN_MAX_AGE: defaults.token_max_age,
    }
    for variable, default in by_variable.items():
        parameter = env[variable]["Ref"]
        assert float(parameters[parameter]["Default"]) == float(default), variable


# ------------------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------------------


def test_settings_from_env_reads_every_variable() -> None:
    environ = {
        "DCO_BUCKET": "b",
        "DCO_EVENTS_TABLE": "events",
        "DCO_COUNTERS_TABLE": "counters",
        "DCO_HMAC_PARAMETER": "/dco/keys",
        "DCO_REFRESH_SECONDS": "2.5",
        "DCO_EVENT_TTL_DAYS": "7",
        "DCO_TOKEN_MAX_AGE": "600",
        "DCO_PUBLIC_BASE_URL": "https://ads.example.com",
        "POWERTOOLS_SERVICE_NAME": "svc",
        "POWERTOOLS_METRICS_NAMESPACE": "NS",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }
    settings = Settings.from_env(environ)
    assert settings == Settings(
        bucket="b",
        events_table="events",
        counters_table="counters",
        hmac_parameter="/dco/keys",
        refresh_seconds=2.5,
        event_ttl_days=7,
        token_max_age=600,
        public_base_url="https://ads.example.com",
        service_name="svc",
        metrics_namespace="NS",
        log_level="DEBUG",
    )
    assert settings.event_ttl_seconds == 7 * 86_400
    assert Settings.from_env(settings.as_environ()) == settings


def test_settings_defaults_and_explicit_arguments_beat_the_environment() -> None:
    settings = Settings.from_env(
        {"DCO_BUCKET": "b", "DCO_REFRESH_SECONDS": "30"}, refresh_seconds=0, bucket="x"
    )
    assert settings.bucket == "x" and settings.refresh_seconds == 0
    assert (
        settings.event_ttl_days == 30 and settings.token_max_age == 86_400 and settings.public_base_url == ""
    )
    assert settings.metrics_namespace == "DCO" and settings.service_name == "dco"
    with pytest.raises(TypeError):
        Settings.from_env({"DCO_BUCKET": "b"}, no_such_setting=1)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("DCO_REFRESH_SECONDS", "soon"),
        ("DCO_REFRESH_SECONDS", "-1"),
        ("DCO_REFRESH_SECONDS", "nan"),
        ("DCO_EVENT_TTL_DAYS", "1.5"),
        ("DCO_EVENT_TTL_DAYS", "0"),
        ("DCO_TOKEN_MAX_AGE", "a day"),
    ],
)
def test_settings_bad_numbers_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({"DCO_BUCKET": "b", variable: raw})


def test_settings_required_variables() -> None:
    with pytest.raises(ValueError, match="DCO_BUCKET"):
        Settings.from_env({})
    with pytest.raises(ValueError, match="DCO_EVENTS_TABLE"):
        Settings.from_env(
            {"DCO_BUCKET": "b", "DCO_EVENTS_TABLE": "  "}, required=("DCO_BUCKET", "DCO_EVENTS_TABLE")
        )
    settings = Settings.from_env({}, required=())
    with pytest.raises(ValueError, match="DCO_HMAC_PARAMETER"):
        settings.require(settings_module.HMAC_PARAMETER)
    assert Settings(counters_table="c").require(settings_module.COUNTERS_TABLE) == "c"


# ------------------------------------------------------------------------------------------------------------
# cfn-lint
# ------------------------------------------------------------------------------------------------------------


def test_cfn_lint_passes() -> None:
    try:
        from cfnlint.api import lint_file
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("cfn-lint must be installed in CI (pip install cfn-lint)")
        pytest.skip("cfn-lint is not installed")
    matches = lint_file(TEMPLATE_PATH)
    assert [str(m) for m in matches] == []
