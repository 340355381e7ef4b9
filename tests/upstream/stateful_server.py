#!/usr/bin/env python3
"""A small stateful MCP server for Jetway's bridge-mode tests.

Built on FastMCP from the pinned official Python SDK (PyPI `mcp`, see
scripts/upstreams/requirements.txt; installed by scripts/install-upstreams.sh
into .local/upstreams/py). It keeps per-session state in its own in-process
store, so a test can tell whether the bridge keeps talking to the same
upstream session:

  remember(key, value)  stores value under key for this session; returns value
  recall(key)           the value stored under key in this session, or null (text `null`)
  count()               increments this session's counter and returns it (1, 2, ...)
  whoami()              {"pid", "session_id", "state_key", "transport", "stateless",
                        "stored_sessions"}: the server process id, the
                        Mcp-Session-Id request header it saw (null when there is
                        none: over stdio and in --stateless mode), the key of this
                        session in its own store, how it is being served, and how
                        many sessions' state the store holds (an entry is dropped
                        once its session is gone: DELETE, idle reap, end of a
                        stateless request)
  sample_later(delay, text)
                        returns at once; `delay` seconds later a background task,
                        outside any request, asks the client for a sampling
                        (`sampling/createMessage` with `text`: on the session's GET
                        stream over HTTP) and keeps what came back; it prints
                        `sample_later: asking the client` to stderr just before
                        it asks
  tick_later(count, interval, label)
                        returns at once; a background task then sends `count`
                        log notifications (`notifications/message`, data
                        `<label> 1` ... `<label> <count>`) outside any request,
                        `interval` seconds apart, printing `tick_later: <label> <i>`
                        to stderr before each
  slow(seconds)         {"pid", "count"}: prints `slow: waiting` to stderr, waits
                        `seconds`, then increments this session's counter and
                        returns it with the server's pid
  background()          {"outcome": ...}: what the last sample_later got, as
                        {"answer": <CreateMessageResult>} or {"error": <message>},
                        or null while it waits

Usage (with PYTHONPATH=.local/upstreams/py, or via .local/upstreams/bin/stateful-server):

  stateful_server.py [--port N]          Streamable HTTP on http://127.0.0.1:N/mcp
                                         (N from --port, else env PORT, else 8000;
                                         0 picks a free port). When it accepts
                                         connections it prints exactly one line to
                                         stdout: `listening on 127.0.0.1:N` (the
                                         real port, also for --port 0).
  stateful_server.py --stateless [...]   the same with FastMCP stateless_http=True:
                                         no Mcp-Session-Id, every POST is a fresh
                                         session, so state lives for one request
                                         only: count() always returns 1 and recall()
                                         never sees an earlier remember().
  stateful_server.py --stdio             MCP over stdin/stdout (one session for the
                                         process); prints `serving stdio` to stderr.

  --json-response                        answer POSTs with application/json instead
                                         of an SSE stream
  --resumable                            keep every SSE event in an in-memory event
                                         store, so a GET with Last-Event-ID replays
                                         what the stream sent after it (also while no
                                         GET stream was open). The SDK shares one store
                                         among sessions and names every session's GET
                                         stream alike, so a resumed GET stream replays
                                         the GET events of every session: use it with
                                         one session at a time.
  --session-idle-timeout SECONDS         reap a stateful HTTP session after this much
                                         idle time (default 1800, the SDK's); its id
                                         then answers 404 Session not found
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
import weakref
from typing import Annotated, Any, Optional

try:
    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.streamable_http import EventMessage, EventStore
    from mcp.types import CallToolResult, SamplingMessage, TextContent
except ImportError as exc:  # pragma: no cover - setup error
    sys.exit(
        f"stateful_server.py: cannot import the MCP SDK ({exc}); run scripts/install-upstreams.sh "
        "and start with PYTHONPATH=.local/upstreams/py (or .local/upstreams/bin/stateful-server)"
    )

# session key -> {"values": {key: value}, "count": int}
STORE: dict[str, dict[str, Any]] = {}
MODE = {"transport": "streamable-http", "stateless": False}
# Background tasks of sample_later, kept here so none is collected while it runs.
BACKGROUND: set[asyncio.Task[None]] = set()

_KEY_ATTR = "_jetway_state_key"


def _state_key(ctx: Context) -> str:
    """The key of this MCP session in STORE.

    One ServerSession object exists per MCP session: per Mcp-Session-Id in
    stateful HTTP mode, per process over stdio, per request in stateless mode.
    A fresh random key is attached to it the first time it is seen (not id(),
    which Python may reuse once a stateless session is freed).
    """
    session = ctx.session
    key = getattr(session, _KEY_ATTR, None)
    if key is None:
        key = uuid.uuid4().hex
        setattr(session, _KEY_ATTR, key)
        # Forget the state once the session object is gone (client DELETE,
        # idle reap, or the end of a stateless request).
        weakref.finalize(session, STORE.pop, key, None)
    return key


def _state(ctx: Context) -> dict[str, Any]:
    return STORE.setdefault(_state_key(ctx), {"values": {}, "count": 0})


def _header_session_id(ctx: Context) -> str | None:
    request = getattr(ctx.request_context, "request", None)
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    return headers.get("mcp-session-id")


class MemoryEventStore(EventStore):
    """Every event, in order, for Last-Event-ID replay (--resumable)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (stream id, event id, message)

    async def store_event(self, stream_id, message):  # type: ignore[override]
        event_id = f"ev-{len(self.events) + 1}-{uuid.uuid4().hex[:8]}"
        self.events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):  # type: ignore[override]
        at = next((i for i, (_, e, _) in enumerate(self.events) if e == last_event_id), None)
        if at is None:
            return None
        stream_id = self.events[at][0]
        for s, e, m in self.events[at + 1 :]:
            if s == stream_id and m is not None:
                await send_callback(EventMessage(m, e))
        return stream_id


def build(args: argparse.Namespace) -> FastMCP:
    mcp = FastMCP(
        "jetway-stateful-upstream",
        instructions="Test upstream for Jetway's bridge mode: per-session state.",
        host="127.0.0.1",
        port=args.port,
        streamable_http_path="/mcp",
        stateless_http=args.stateless,
        json_response=args.json_response,
        session_idle_timeout=args.session_idle_timeout,
        event_store=MemoryEventStore() if args.resumable else None,
        log_level="WARNING",
    )

    @mcp.tool(description="Store value under key in this session's state; returns the value.")
    def remember(key: str, value: str, ctx: Context) -> str:
        _state(ctx)["values"][key] = value
        return value

    @mcp.tool(description="The value stored under key in this session, or null if none.")
    def recall(key: str, ctx: Context) -> Annotated[CallToolResult, Optional[str]]:
        value = _state(ctx)["values"].get(key)
        # FastMCP would send no content block at all for None; send the text `null`.
        return CallToolResult(
            content=[TextContent(type="text", text="null" if value is None else value)],
            structuredContent={"result": value},
        )

    @mcp.tool(description="Increment this session's counter and return it (1 on the first call).")
    def count(ctx: Context) -> int:
        state = _state(ctx)
        state["count"] += 1
        return state["count"]

    @mcp.tool(description="The server's pid and the upstream MCP session it sees.")
    def whoami(ctx: Context) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "session_id": _header_session_id(ctx),
            "state_key": _state_key(ctx),
            "transport": MODE["transport"],
            "stateless": MODE["stateless"],
            "stored_sessions": len(STORE),
        }

    @mcp.tool(description="Ask the client for a sampling from a background task, outside any request, after delay seconds.")
    async def sample_later(delay: float, text: str, ctx: Context) -> str:
        session = ctx.session
        state = _state(ctx)
        state["background"] = None

        async def ask() -> None:
            await asyncio.sleep(delay)
            print("sample_later: asking the client", file=sys.stderr, flush=True)
            try:
                result = await session.create_message(
                    messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
                    max_tokens=16,
                )
                state["background"] = {"answer": result.model_dump(mode="json", exclude_none=True)}
            except Exception as exc:  # an error answer, or the session went away
                state["background"] = {"error": str(exc)}

        task = asyncio.create_task(ask())
        BACKGROUND.add(task)
        task.add_done_callback(BACKGROUND.discard)
        return "asking later"

    @mcp.tool(description="Send count numbered log notifications from a background task, outside any request.")
    async def tick_later(count: int, interval: float, label: str, ctx: Context) -> str:
        session = ctx.session

        async def tick() -> None:
            for i in range(1, count + 1):
                await asyncio.sleep(interval)
                print(f"tick_later: {label} {i}", file=sys.stderr, flush=True)
                await session.send_log_message(level="info", data=f"{label} {i}")

        task = asyncio.create_task(tick())
        BACKGROUND.add(task)
        task.add_done_callback(BACKGROUND.discard)
        return "ticking later"

    @mcp.tool(description="Wait seconds, then increment this session's counter; returns it with the pid.")
    async def slow(seconds: float, ctx: Context) -> dict[str, Any]:
        print("slow: waiting", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)
        state = _state(ctx)
        state["count"] += 1
        return {"pid": os.getpid(), "count": state["count"]}

    @mcp.tool(description="What the last sample_later got back, or null while it waits.")
    def background(ctx: Context) -> dict[str, Any]:
        return {"outcome": _state(ctx).get("background")}

    return mcp


async def serve_http(mcp: FastMCP, port: int) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[override]
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1]
                print(f"listening on 127.0.0.1:{bound}", flush=True)

    config = uvicorn.Config(
        mcp.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    await Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: env PORT, else 8000; 0 = any free port)")
    parser.add_argument("--stateless", action="store_true", help="FastMCP stateless_http=True: no sessions, state per request")
    parser.add_argument("--stdio", action="store_true", help="serve MCP over stdin/stdout instead of HTTP")
    parser.add_argument("--json-response", action="store_true", help="JSON responses instead of SSE streams")
    parser.add_argument("--resumable", action="store_true", help="an in-memory event store: Last-Event-ID replay")
    parser.add_argument("--session-idle-timeout", type=float, default=1800, help="idle seconds before a session is reaped")
    args = parser.parse_args()
    if args.port is None:
        env_port = os.environ.get("PORT", "")
        try:
            args.port = int(env_port) if env_port else 8000
        except ValueError:
            parser.error(f"PORT={env_port!r} is not a port number")
    if not 0 <= args.port <= 65535:
        parser.error(f"port {args.port} out of range")
    if args.stdio and args.stateless:
        parser.error("--stateless applies to HTTP only")

    MODE["stateless"] = args.stateless
    mcp = build(args)
    if args.stdio:
        MODE["transport"] = "stdio"
        print("serving stdio", file=sys.stderr, flush=True)
        mcp.run(transport="stdio")
    else:
        try:
            asyncio.run(serve_http(mcp, args.port))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
