"""What decide and track share (dco.aws.handler_support): the SSM parameter cache, and a cold start that needs
neither boto3 nor Jinja2 (docs/performance.md, "coldstart")."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dco.aws.handler_support import SSMParameters
from dco.aws.keys import load_keys

ROOT = Path(__file__).resolve().parents[2]
KEYS = json.dumps({"k2": base64.b64encode(b"k" * 32).decode(), "k1": base64.b64encode(b"j" * 32).decode()})


class FakeSSM:
    """``get_parameter`` over a dict, recording every call."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[tuple[str, bool]] = []

    def get_parameter(self, *, Name: str, WithDecryption: bool) -> dict[str, Any]:  # noqa: N803 - boto3 names
        self.calls.append((Name, WithDecryption))
        return {"Parameter": {"Name": Name, "Type": "SecureString", "Value": self.values[Name]}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ssm_parameters_cache_a_value_for_max_age_seconds():
    # GIVEN a parameter in SSM and a cache over it
    ssm, clock = FakeSSM({"/dco/keys": "v1"}), Clock()
    parameters = SSMParameters(ssm, clock=clock)
    # WHEN it is read three times within max_age, then once after
    assert parameters.get("/dco/keys", decrypt=True, max_age=300) == "v1"
    ssm.values["/dco/keys"] = "v2"
    clock.now += 299.9
    assert parameters.get("/dco/keys", decrypt=True, max_age=300) == "v1"
    clock.now += 0.1
    # THEN SSM is asked once per max_age, decrypting, and the new value shows after expiry
    assert parameters.get("/dco/keys", decrypt=True, max_age=300) == "v2"
    assert ssm.calls == [("/dco/keys", True), ("/dco/keys", True)]


def test_ssm_parameters_max_age_zero_always_fetches_and_decrypt_is_part_of_the_key():
    ssm, clock = FakeSSM({"/p": "x"}), Clock()
    parameters = SSMParameters(ssm, clock=clock)
    parameters.get("/p", max_age=0)
    parameters.get("/p", max_age=0)
    parameters.get("/p", decrypt=True)
    parameters.get("/p", decrypt=True)
    parameters.get("/p")
    assert ssm.calls == [("/p", False), ("/p", False), ("/p", True), ("/p", False)]


def test_load_keys_reads_the_ring_through_ssm_parameters():
    ssm = FakeSSM({"/dco/keys": KEYS})
    ring = load_keys("/dco/keys", provider=SSMParameters(ssm, clock=Clock()))
    assert ring.current == "k2" and ring.keys == {"k2": b"k" * 32, "k1": b"j" * 32}
    assert ssm.calls == [("/dco/keys", True)]


def test_ssm_parameters_errors_are_the_clients_own():
    class Down:
        def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
            raise ConnectionError("unreachable")

    parameters = SSMParameters(Down(), clock=Clock())
    with pytest.raises(ConnectionError):
        parameters.get("/p", decrypt=True)
    with pytest.raises(ConnectionError):  # a failure is not cached
        parameters.get("/p", decrypt=True)


_COLD_START = """
import importlib.abc, importlib.util, json, os, sys
BLOCKED = {"boto3", "s3transfer", "jinja2", "markupsafe", "aws_xray_sdk"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(fullname + " is blocked: decide must not need it")
sys.meta_path.insert(0, Blocker())
root = sys.argv[1]
spec = importlib.util.spec_from_file_location("decide_app", root + "/functions/decide/app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

from dco.aws.keys import KeyRing
from dco.aws.settings import Settings
from dco.ingest import build, snapshot_key
from dco.warm import Blob
config = open(root + "/examples/retail/campaign.yaml", "rb").read()
feed = b"".join(open(root + "/examples/retail/feed.tsv", "rb").read().splitlines(keepends=True)[:41])
result = build("retail-demo", config, feed, built_at=1)
key = snapshot_key("retail-demo", result.version)
objects = {key: result.snapshot, "pointers/retail-demo.json": json.dumps(
    {"campaign": "retail-demo", "version": result.version, "key": key}).encode()}
class Memory:
    def fetch(self, key, etag=None):
        body = objects.get(key)
        return None if body is None else Blob(body, '"1"')
app.get_settings = lambda: Settings(bucket="data", hmac_parameter="/dco/keys")
app.get_store = lambda: Memory()
app.get_keys = lambda: KeyRing(current="k1", keys={"k1": b"k" * 32})
class Context:
    function_name = "decide"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:decide"
    aws_request_id = "1"
event = json.load(open(root + "/events/decide/ad_request.json"))
response = app.handler(event, Context())
# the clients decide builds by default come from a botocore session (no request is made here)
store = app._clients.s3_store("data")
ssm = app._clients.session().create_client("ssm")
print(json.dumps({"status": response["statusCode"], "store": type(store).__name__,
                  "session": type(app._clients.session()).__module__, "ssm": ssm.meta.service_model.service_name}))
"""


def test_decide_serves_its_first_decision_without_boto3_or_jinja2():
    # GIVEN a fresh interpreter where boto3, s3transfer, Jinja2, MarkupSafe and the X-Ray SDK cannot be imported
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}
    # WHEN it imports decide, serves the sample ad request and builds decide's S3 and SSM clients
    proc = subprocess.run([sys.executable, "-c", _COLD_START, str(ROOT)], capture_output=True, text=True,
                          timeout=120, env=env)
    # THEN all of it works: decide's cold start pays for none of them
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "status": 200, "store": "S3Store", "session": "botocore.session", "ssm": "ssm"}


_REGENERATE = """python - <<'PY'
import gzip, json, os, botocore
from dco.aws.handler_support import MODELS, service_subset
base = os.path.join(os.path.dirname(botocore.__file__), "data", "ssm", "2014-11-06")
model = json.loads(gzip.open(os.path.join(base, "service-2.json.gz")).read())
(MODELS / "ssm" / "2014-11-06" / "service-2.json").write_text(
    json.dumps(service_subset(model, ["GetParameter"]), indent=1) + "\\n")
PY"""


def _structure(value):
    """A model fragment without its documentation strings (which change with every botocore release)."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return value


def _within(part, whole, where="model"):
    """Every key of ``part`` is in ``whole`` with an equal value (dicts key by key, lists item by item)."""
    if isinstance(part, dict) and isinstance(whole, dict):
        for key, value in part.items():
            assert key in whole, f"{where}.{key} is gone from botocore's model: regenerate\n{_REGENERATE}"
            _within(value, whole[key], f"{where}.{key}")
    elif isinstance(part, list) and isinstance(whole, list):  # enums, required members: a new value is fine
        missing = [item for item in part if item not in whole]
        assert not missing, f"{where}: {missing} gone from botocore's model: regenerate\n{_REGENERATE}"
    else:
        assert part == whole, f"{where} differs from botocore's model: regenerate\n{_REGENERATE}"


def test_the_shipped_ssm_model_is_botocores_cut_down_to_get_parameter():
    # GIVEN the installed botocore's SSM model and the cut-down copy decide and track load first
    import gzip

    import botocore
    from dco.aws.handler_support import MODELS, service_subset

    data = Path(botocore.__file__).parent / "data" / "ssm" / "2014-11-06"
    full = json.loads(gzip.decompress((data / "service-2.json.gz").read_bytes()))
    shipped = json.loads((MODELS / "ssm" / "2014-11-06" / "service-2.json").read_text())
    # THEN the copy holds GetParameter alone, with every shape that operation reaches
    assert list(shipped["operations"]) == ["GetParameter"]
    assert set(shipped["shapes"]) == set(service_subset(shipped, ["GetParameter"])["shapes"])
    # AND what it keeps still means the same in the installed botocore: protocol, signing and endpoint metadata,
    # the operation and its shapes (AWS may add members or errors later: the copy then ignores them, as an older
    # botocore would; a removed or changed member fails here)
    for key in ("apiVersion", "endpointPrefix", "jsonVersion", "protocol", "signatureVersion", "signingName",
                "targetPrefix"):
        assert shipped["metadata"].get(key) == full["metadata"].get(key), key
    _within(_structure({k: v for k, v in shipped["operations"]["GetParameter"].items() if k != "errors"}),
            _structure(full["operations"]["GetParameter"]), "operations.GetParameter")
    for name, shape in shipped["shapes"].items():
        _within(_structure(shape), _structure(full["shapes"].get(name, {})), f"shapes.{name}")


def test_clients_build_the_ssm_client_from_the_cut_down_model(monkeypatch: pytest.MonkeyPatch):
    from dco.aws.handler_support import Clients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients = Clients()
    ssm = clients.session().create_client("ssm")
    s3 = clients.session().create_client("s3")
    assert ssm.meta.service_model.operation_names == ["GetParameter"]
    assert "GetObject" in s3.meta.service_model.operation_names and len(s3.meta.service_model.operation_names) > 50
