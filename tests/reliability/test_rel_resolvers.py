"""Two HTTP functions of the local stack invoked at once must not see each other's request.

Powertools' resolvers keep the request being resolved in a class attribute (``BaseRouter.current_event``, set by
``resolve()``), shared by every resolver of the process: decide's ``app`` and track's ``app``. In Lambda each
function has its own process; in the local stack they share one, so a decide request resolved while a track
request started could match track's path against decide's routes (decide's not_found: the rare
``ad 404 {"error": ... "no such endpoint; see docs/api.md"}`` of test_rel_load.py) or read track's query.

The interleaving is forced: function A's resolver pauses between ``resolve()`` storing its event and the route
match, while function B is invoked from another thread.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from dco_local.stack import _Function
from dco_local.template import FunctionSpec, Route

_MODULE = '''
import threading
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

paused = threading.Event()    # A is between resolve() storing its event and the route match
release = threading.Event()   # set by the test once B has been invoked (or has had its chance)


class PausingResolver(APIGatewayHttpResolver):
    pause = False

    def _resolve(self):
        if self.pause:
            paused.set()
            release.wait(5)
        return super()._resolve()


app = PausingResolver()


@app.get("{path}")
def route():
    return Response(200, "text/plain", "{name} " + app.current_event.query_string_parameters["q"])


@app.not_found
def not_found(exc):
    return Response(404, "text/plain", "{name}: no such endpoint")


def handler(event, context):
    return app.resolve(event, context)
'''


def _function(tmp_path: Path, name: str, path: str) -> _Function:
    code = tmp_path / name
    code.mkdir()
    (code / "app.py").write_text(_MODULE.format(name=name, path=path))
    spec = FunctionSpec(logical_id=f"{name.title()}Function", code_dir=code, handler="app.handler", environment={},
                        timeout=30, routes=(Route("GET", path, f"{name.title()}Function"),))
    return _Function(spec, f"_dco_test_resolvers_{name}", f"local-{name}", "us-east-1")


def _event(path: str, q: str) -> dict:
    return {
        "version": "2.0", "routeKey": f"GET {path}", "rawPath": path, "rawQueryString": f"q={q}",
        "queryStringParameters": {"q": q}, "headers": {},
        "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": ""}, "stage": "$default", "routeKey": f"GET {path}"},
        "isBase64Encoded": False,
    }


def test_concurrent_http_functions_each_resolve_their_own_request(tmp_path: Path) -> None:
    decide = _function(tmp_path, "decide", "/v1/ad")
    track = _function(tmp_path, "track", "/v1/events/imp")
    decide.load()
    track.load()
    try:
        decide.module.app.pause = True
        results: dict[str, dict] = {}
        a = threading.Thread(target=lambda: results.update(decide=decide(_event("/v1/ad", "one"))))
        a.start()
        assert decide.module.paused.wait(10)
        # B from another thread, while A is paused mid-resolve; it may wait for A (then A's wait times out).
        b = threading.Thread(target=lambda: results.update(track=track(_event("/v1/events/imp", "two"))))
        b.start()
        b.join(1.0)
        decide.module.release.set()
        a.join(10)
        b.join(10)
        assert not a.is_alive() and not b.is_alive()
        assert (results["decide"]["statusCode"], results["decide"]["body"]) == (200, "decide one"), json.dumps(results)
        assert (results["track"]["statusCode"], results["track"]["body"]) == (200, "track two"), json.dumps(results)
    finally:
        for function in (decide, track):
            sys.modules.pop(function.module_name, None)
