"""magray mcp, judged by the official MCP client: it starts the server over stdio as a
subprocess, lists the tools and calls each; bad arguments are tool errors and the
server keeps serving. Once against a local store, once against a magray server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from ..server.conftest import start_server  # noqa: E402

BIN = Path(sys.executable).with_name("magray")

BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("remember", {}),
    ("remember", {"text": 5}),
    ("remember", {"text": ""}),
    ("remember", {"text": "   "}),
    ("remember", {"text": "x", "layer": "attic"}),
    ("remember", {"text": "x", "importance": 7}),
    ("remember", {"text": "x", "tags": "ops"}),
    ("remember", {"text": "x", "tags": [""]}),
    ("recall", {}),
    ("recall", {"query": ""}),
    ("recall", {"query": "x", "k": 0}),
    ("recall", {"query": "x", "k": "ten"}),
    ("recall", {"query": "x", "mode": "fuzzy"}),
    ("recall", {"query": "x", "layers": ["attic"]}),
    ("recall", {"query": "x", "contains": " "}),
    ("forget", {}),
    ("forget", {"ids": []}),
    ("forget", {"ids": ["not-an-id"]}),
    ("forget", {"ids": ["01M8NDACK1T22E7YQCRQS0FJDB"]}),  # well formed, unknown
    ("list_recent", {"limit": -1}),
    ("list_recent", {"layer": "attic"}),
    ("no_such_tool", {}),
]


def _params(*args: str) -> StdioServerParameters:
    env = {**os.environ, "MAGRAY_EMBEDDER": "hash", "NO_COLOR": "1"}
    return StdioServerParameters(command=str(BIN), args=[*args, "mcp"], env=env)


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def _round_trip(params: StdioServerParameters) -> None:
    async with Client(params) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {"remember", "recall", "forget", "list_recent", "memory_stats"}
        for tool in tools.values():
            assert tool.description and tool.input_schema["type"] == "object"
        recall_props = tools["recall"].input_schema["properties"]
        assert all(p.get("description") for p in recall_props.values())

        a = _data(await c.call_tool("remember", {"text": "the deploy key lives in the vault",
                                                 "tags": ["ops"]}))["id"]  # fmt: skip
        b = _data(await c.call_tool("remember", {"text": "standup moved to 9:30",
                                                 "layer": "insights"}))["id"]  # fmt: skip
        hits = _data(await c.call_tool("recall", {"query": "where is the deploy key?"}))["result"]
        assert hits[0]["id"] == a and hits[0]["layer"] == "interact" and hits[0]["score"] > 0
        only = _data(await c.call_tool("recall", {"query": "standup", "layers": ["insights"]}))
        assert [h["id"] for h in only["result"]] == [b]
        recent = _data(await c.call_tool("list_recent", {"limit": 5}))["result"]
        assert [r["id"] for r in recent] == [b, a]
        stats = _data(await c.call_tool("memory_stats", {}))
        assert stats["records"] == 2
        res = await c.read_resource("magray://stats")
        assert json.loads(res.contents[0].text)["records"] == 2

        for name, args in BAD_CALLS:
            result = await c.call_tool(name, args)
            assert result.is_error, (name, args)
            assert result.content and result.content[0].text, (name, args)
        # Still serving, and nothing was damaged.
        assert _data(await c.call_tool("forget", {"ids": [a]})) == {"deleted": 1}
        assert _data(await c.call_tool("memory_stats", {}))["records"] == 1


def test_the_sdk_client_round_trip_over_stdio(tmp_path: Path) -> None:
    anyio.run(_round_trip, _params("--store", str(tmp_path / "store")))


def test_the_same_against_a_magray_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "root")
    try:
        anyio.run(_round_trip, _params("--server", server.url, "--namespace", "mcp"))
    finally:
        assert server.stop() == 0


def test_streamable_http(tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MAGRAY_EMBEDDER": "hash", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [str(BIN), "--store", str(tmp_path / "store"), "mcp", "--http", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)

        async def run() -> None:
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:
                rid = _data(await c.call_tool("remember", {"text": "over http"}))["id"]
                hits = _data(await c.call_tool("recall", {"query": "over http", "k": 1}))
                assert hits["result"][0]["id"] == rid

        anyio.run(run)
    finally:
        proc.terminate()
        proc.wait(30)
