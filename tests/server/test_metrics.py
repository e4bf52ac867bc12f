"""``/metrics`` and the request telemetry, at the public surface: the scrape needs the bearer
token (and is absent without one), parses with prometheus-client's own parser, its counters
move when messages flow, its labels never carry an id; every response carries a request id;
JSON logs parse line by line and hold no secret; with several processes on one host, any of
them answers for all."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics
from server.api.telemetry import Telemetry
from server.api.wire import on_crash
from server.settings import Settings, load_settings
from tests.conftest import TEST_PASSWORD, Tenant, bearer
from tests.server.realtime_clients import free_port, serve, sse, websocket
from tests.system.processes import Node, cli, command, wait_healthy
from tests.test_cli import cli_env

TOKEN = "metrics-token-0123456789"
# How long the counters of a closing connection may take to settle; only a failure waits.
SETTLE_S = 5.0
# How long the counters of a closing connection may take to settle; only a failure waits.
SETTLE_S = 5.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_METRICS_TOKEN": TOKEN})


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels), through prometheus-client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_metrics_are_not_served_without_a_token_configured(tmp_path: Path) -> None:
    from server.app import create_app

    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data")}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for headers in ({}, bearer(""), bearer("anything")):
                response = await client.get("/metrics", headers=headers)
                assert response.status_code == 404
                assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong-token-0123456789", f"Basic {TOKEN}",
                      f"Bearer {TOKEN}x", f"bearer  {TOKEN}"],
)  # fmt: skip
async def test_an_anonymous_or_wrong_scrape_is_refused(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "liveop_" not in response.text


async def test_counters_move_when_messages_flow_and_labels_carry_no_id(
    app: Starlette, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    before = await scrape(client)
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": f"ada@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    token = login.json()["token"]
    async with (
        serve(app) as address,
        sse(address, token) as stream,
        websocket(f"ws://{address}/{tenant.account_id}/liveoperator/ws") as visitor,
    ):
        await visitor.send(type="hello")
        await visitor.until("ready")
        await visitor.send(type="send", message="Hello", clientMsgID="m1")
        convo = (await visitor.until("ack"))["convoID"]
        await stream.until("message:new")
        await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi!")
        await visitor.until("message:new")
        # A retry of the same message commits nothing more.
        await visitor.send(type="send", message="Hello", clientMsgID="m1")
        assert (await visitor.until("ack"))["duplicate"] is True
        await visitor.conn.send("not json")  # closed with 4000, a bad frame
        await visitor.conn.wait_closed()
    # A close is counted once the server's handler returned, just after the client saw it.
    deadline = time.monotonic() + SETTLE_S
    while True:
        text = (await client.get("/metrics", headers=bearer(TOKEN))).text
        after = parse(text)
        key = ("liveop_connections_closed_total", (("kind", "visitor_ws"), ("reason", "bad_frame")))
        if after.get(key, 0) > before.get(key, 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("liveop_messages_committed_total", channel="liveoperator") == 2
    assert moved("liveop_connections_opened_total", kind="visitor_ws") == 1
    assert moved("liveop_connections_opened_total", kind="operator_sse") == 1
    assert moved("liveop_connections_closed_total", kind="visitor_ws", reason="bad_frame") == 1
    assert moved("liveop_connections_closed_total", kind="operator_sse", reason="client") == 1
    assert value(after, "liveop_connections", kind="visitor_ws") == value(
        before, "liveop_connections", kind="visitor_ws"
    )
    assert moved("liveop_events_published_total", result="ok") >= 2
    assert moved("liveop_events_delivered_total", kind="visitor_ws") >= 1
    assert moved("liveop_events_delivered_total", kind="operator_sse") >= 1
    assert moved("liveop_delivery_lag_seconds_count", kind="visitor_ws") >= 1
    assert moved("liveop_store_operation_seconds_count", operation="write") >= 2
    assert moved("liveop_http_requests_total", route="/", method="POST", status="200") == 1
    assert moved("liveop_http_requests_total", route="/api/v1/auth/login", method="POST",
                 status="200") == 1  # fmt: skip
    # Bounded labels: no account, conversation or token anywhere in the exposition.
    for secret in (tenant.account_id, convo, token, tenant.api_key):
        assert secret not in text
    names = {name for name, _ in after}
    assert all(name.startswith(("liveop_", "python_", "process_")) for name in names), names


async def test_an_unmatched_path_is_counted_under_one_label(client: httpx.AsyncClient) -> None:
    for path in ("/no/such/a1", "/no/such/b2", "/zz%00"):
        assert (await client.get(path)).status_code == 404
    response = await client.request("BREW", "/healthz")
    assert response.status_code == 405
    samples = await scrape(client)
    assert (
        value(samples, "liveop_http_requests_total", route="unmatched", method="GET", status="404")
        >= 3
    )
    assert (
        value(samples, "liveop_http_requests_total", route="/healthz", method="other", status="405")
        == 1
    )
    assert not any("no/such" in str(labels) for _, labels in samples)


@pytest.mark.parametrize("given", ["req-1234", "6f1c0d3e-9a4b-4c47-8d5e-0123456789ab"])
async def test_a_plain_request_id_is_echoed(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "x" * 129, "a b", 'id"quote', "é"])
async def test_a_bad_request_id_is_replaced(client: httpx.AsyncClient, given: str) -> None:
    # Bytes as they arrive on the wire: a non-ASCII id is refused like any other bad one.
    response = await client.get("/healthz", headers={"X-Request-ID": given.encode()})
    echoed = response.headers["x-request-id"]
    # A generated id: this process's prefix and its request number.
    assert echoed != given and re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", echoed)


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/no-such-page"),
        await client.post("/", content=b"x" * 200_000, headers={"content-type": "text/plain"}),
        await client.get("/metrics"),
        await client.get("/readyz"),
    ]
    assert [a.status_code for a in answers] == [200, 404, 413, 401, 200]
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids)


async def test_a_crash_answers_500_with_a_request_id_and_is_counted() -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(
        routes=[Route("/crash", crash)],
        middleware=[Middleware(Telemetry, access_log=False)],
        exception_handlers={Exception: on_crash},
    )
    before = value(parse(metrics.exposition().decode()), "liveop_http_requests_total",
                   route="/crash", method="GET", status="500")  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/crash", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] == "crash-1"
    after = value(parse(metrics.exposition().decode()), "liveop_http_requests_total",
                  route="/crash", method="GET", status="500")  # fmt: skip
    assert after == before + 1


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[tuple[Node, Path, dict[str, str]]]:
    env = {**cli_env(tmp_path / "data"), "LIVEOP_LOG_FORMAT": "json"}
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    node = Node(f"127.0.0.1:{port}", process)
    try:
        wait_healthy(node, log)
        yield node, log, env
    finally:
        process.terminate()
        process.wait(15)


async def test_json_logs_parse_line_by_line_and_hold_no_secret(
    json_server: tuple[Node, Path, dict[str, str]],
) -> None:
    node, log, env = json_server
    account = cli(env, "account", "create", "--name", "Logs")
    await command(node, account["accountID"], account["apiKey"], "sendmessage", message="hi",
                  sourceApp="liveoperator")  # fmt: skip
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.secret-part.signature"
    async with httpx.AsyncClient(base_url=f"http://{node.base}") as client:
        await client.get("/api/v1/operator/stream", params={"token": jwt_like},
                         headers={"X-Request-ID": "trace-42"})  # fmt: skip
        await client.get(f"/?accountID={account['accountID']}&key={account['apiKey']}")
    node.process.terminate()
    node.process.wait(15)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = [orjson.loads(line) for line in lines]  # every line is one JSON object
    for line in parsed:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    access = [line for line in parsed if line["logger"] == "liveop.access"]
    stream = next(line for line in access if line["route"] == "/api/v1/operator/stream")
    assert stream["request_id"] == "trace-42"
    assert stream["status"] == 401 and stream["method"] == "GET"
    assert isinstance(stream["duration_s"], float)
    chat = next(line for line in access if line["route"] == "/" and line["method"] == "POST")
    assert chat["status"] == 200
    text = log.read_text()
    assert jwt_like not in text and "secret-part" not in text
    assert account["apiKey"] not in text
    assert any(line["logger"].startswith("uvicorn") for line in parsed)


def test_with_several_processes_any_one_answers_for_all(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {
        **cli_env(tmp_path / "data"),
        "LIVEOP_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    account = cli(env, "account", "create", "--name", "Multi")
    nodes: list[Node] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            nodes.append(Node(f"127.0.0.1:{port}", process))
            wait_healthy(nodes[-1], log)
        a, b = nodes
        for node in (a, b, b):
            asyncio.run(command(node, account["accountID"], account["apiKey"], "sendmessage",
                                message="hi", sourceApp="liveoperator"))  # fmt: skip
        for node in (a, b):
            scraped = httpx.get(f"http://{node.base}/metrics", headers=bearer(TOKEN))
            samples = parse(scraped.text)
            assert value(samples, "liveop_messages_committed_total", channel="liveoperator") == 3
            assert (
                value(samples, "liveop_http_requests_total", route="/", method="POST", status="200")
                == 3
            )
    finally:
        for node in nodes:
            node.process.terminate()
        for node in nodes:
            node.process.wait(15)
    assert os.listdir(shared)
