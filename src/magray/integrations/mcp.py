"""An MCP (Model Context Protocol) server over a magray store: ``magray mcp``.

Built on the official ``mcp`` Python SDK (``MCPServer``). Tools: ``remember``,
``recall``, ``forget``, ``list_recent`` and ``memory_stats``; resource
``magray://stats``. It serves whatever memory it is given: a local store
(``magray.open``) or a server namespace (``magray.connect``), through the same API.

A bad argument (a wrong type, an empty text, an unknown id or layer) comes back as a
tool error whose text names the problem; the server keeps serving.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field

from magray.errors import MagrayError

LayerName = Literal["interact", "insights", "assets"]
Mode = Literal["hybrid", "vector", "text"]


def _hit(h: Any) -> dict[str, Any]:
    r = h.record
    return {
        "id": h.id,
        "text": r.text,
        "score": round(float(h.score), 6),
        "scores": {k: round(float(v), 6) for k, v in h.scores.items()},
        "layer": h.layer.value,
        "tags": list(r.tags),
        "project": r.project,
        "created_at": r.created_at,
    }


def _record(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "text": r.text,
        "layer": r.layer.value,
        "tags": list(r.tags),
        "project": r.project,
        "created_at": r.created_at,
    }


def build_server(mem: Any) -> Any:
    """An MCPServer whose tools call mem (a magray.Memory or RemoteMemory)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from magray import __version__

    server = MCPServer(
        name="magray",
        version=__version__,
        log_level="WARNING",
        instructions=(
            "Long-term memory for this agent. Call `recall` before answering questions "
            "about the user, past work or decisions; call `remember` for facts, "
            "preferences and outcomes worth keeping. Memories live in layers: interact "
            "(recent, expires after a day unless used), insights (90 days), assets "
            "(permanent)."
        ),
    )

    def guarded(fn: Any) -> Any:
        try:
            return fn()
        except MagrayError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        description="Store one memory (a fact, preference, decision or event) and return "
        "its id. Text already stored in the same layer returns the existing id."
    )
    def remember(
        text: Annotated[str, Field(description="What to remember, in plain language.")],
        tags: Annotated[
            list[str] | None, Field(description="Labels to filter by later, e.g. ['ops'].")
        ] = None,
        layer: Annotated[
            LayerName, Field(description="interact (default), insights or assets.")
        ] = "interact",
        project: Annotated[str | None, Field(description="A project to scope it to.")] = None,
        importance: Annotated[
            float, Field(ge=0.0, le=1.0, description="0-1; 0.8 or more is kept longer.")
        ] = 0.0,
    ) -> dict[str, Any]:
        rid = guarded(
            lambda: mem.add(
                text, tags=tags or (), layer=layer, project=project, importance=importance
            )
        )
        return {"id": rid}

    @server.tool(
        description="Find the memories that best match a question or keywords, across "
        "all layers; returns text, id, score and layer of each, best first."
    )
    def recall(
        query: Annotated[str, Field(description="A question or keywords.")],
        k: Annotated[int, Field(ge=1, le=100, description="How many results.")] = 5,
        mode: Annotated[
            Mode | None,
            Field(description="hybrid (meaning and words, default), vector or text."),
        ] = None,
        layers: Annotated[list[LayerName] | None, Field(description="Only these layers.")] = None,
        tags: Annotated[list[str] | None, Field(description="Any of these tags.")] = None,
        project: Annotated[str | None, Field(description="Only this project.")] = None,
        contains: Annotated[
            str | None, Field(description="Only memories whose text holds this.")
        ] = None,
    ) -> list[dict[str, Any]]:
        hits = guarded(
            lambda: mem.search(
                query,
                k=k,
                mode=mode,
                layers=layers,
                tags=tags,
                project=project,
                contains=contains,
            )
        )
        return [_hit(h) for h in hits]

    @server.tool(description="Delete memories by id; returns how many were deleted.")
    def forget(
        ids: Annotated[list[str], Field(min_length=1, description="Ids from remember/recall.")],
    ) -> dict[str, Any]:
        return {"deleted": guarded(lambda: mem.delete(ids))}

    @server.tool(description="The newest memories, newest first.")
    def list_recent(
        limit: Annotated[int, Field(ge=1, le=200, description="How many.")] = 10,
        layer: Annotated[LayerName | None, Field(description="Only this layer.")] = None,
    ) -> list[dict[str, Any]]:
        return [_record(r) for r in guarded(lambda: mem.recent(layer=layer, limit=limit))]

    @server.tool(description="Counts per layer, index state and embedder of the store.")
    def memory_stats() -> dict[str, Any]:
        return _stats(guarded(mem.stats))

    @server.resource(
        "magray://stats",
        name="stats",
        description="The store's stats.",
        mime_type="application/json",
    )
    def stats_resource() -> str:
        return json.dumps(_stats(mem.stats()), default=str)

    return server


def _stats(st: dict[str, Any]) -> dict[str, Any]:
    keep = ("records", "layers", "dim", "fingerprint", "index", "store_bytes")
    out = {k: st[k] for k in keep if k in st}
    e = st.get("embedder") or {}
    out["embedder"] = e.get("name")
    plain: dict[str, Any] = json.loads(json.dumps(out, default=str))
    return plain
