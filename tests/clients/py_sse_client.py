"""The Python MCP SDK's SSE client (`mcp.client.sse.sse_client`, mcp==1.30.0
from scripts/upstreams/requirements.txt), run as a user runs it, against a
Jetway HTTP+SSE endpoint behind a load balancer. Driven by
tests/tests/http_sse.rs.

Usage: python3 py_sse_client.py <sse url> [--kill]
  Prints `REPORT <json>` last. With --kill it prints `KILL <instance>` once
  the first progress of a long analyze_data arrives (the test then SIGKILLs
  that gateway) and records what the client does afterwards.
"""

import asyncio
import json
import sys
from datetime import timedelta

import httpx
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.shared._httpx_utils import create_mcp_http_client

URL = sys.argv[1]
KILL = "--kill" in sys.argv[2:]
report = {"gets": [], "posts": [], "errors": []}


async def record(response: httpx.Response) -> None:
    entry = {
        "url": str(response.request.url),
        "status": response.status_code,
        "instance": response.headers.get("jetway-instance"),
    }
    if response.request.method == "GET":
        entry["lastEventId"] = response.request.headers.get("last-event-id")
        report["gets"].append(entry)
    else:
        report["posts"].append(entry)


def factory(headers=None, timeout=None, auth=None):
    # The documented `httpx_client_factory` hook, with an event hook that
    # says which gateway served each request.
    client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
    client.event_hooks["response"].append(record)
    return client


async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", model="stub", content=types.TextContent(type="text", text="from python")
    )


async def main() -> None:
    async with sse_client(URL, httpx_client_factory=factory) as (read, write):
        async with ClientSession(read, write, sampling_callback=sampling) as session:
            init = await session.initialize()
            report["protocolVersion"] = init.protocolVersion
            report["endpoint"] = report["posts"][0]["url"]
            report["tools"] = len((await session.list_tools()).tools)
            report["counters"] = []
            for _ in range(10):
                r = await session.call_tool("increment_counter", {})
                report["counters"].append(r.structuredContent["counter"])
            report["progress"] = []

            async def on_progress(progress, total, message):
                report["progress"].append(progress)

            r = await session.call_tool("analyze_data", {"num_items": 3}, progress_callback=on_progress)
            report["analysis"] = r.structuredContent
            r = await session.call_tool("test_sampling", {"prompt": "hi"})
            report["sampling"] = r.content[0].text
            if KILL:
                report["killProgress"] = []

                async def on_kill_progress(progress, total, message):
                    if not report["killProgress"]:
                        print(f"KILL {report['gets'][-1]['instance']}", flush=True)
                    report["killProgress"].append(progress)

                try:
                    r = await session.call_tool(
                        "analyze_data",
                        {"num_items": 8},
                        read_timeout_seconds=timedelta(seconds=12),
                        progress_callback=on_kill_progress,
                    )
                    report["killResult"] = r.structuredContent
                except BaseException as e:  # noqa: BLE001 - recording what happens is the point
                    report["killError"] = f"{type(e).__name__}: {e}"
                try:
                    r = await asyncio.wait_for(session.call_tool("get_counter", {}), 5)
                    report["afterCounter"] = r.structuredContent["counter"]
                except BaseException as e:  # noqa: BLE001
                    report["afterError"] = f"{type(e).__name__}: {e}"


async def run() -> int:
    try:
        await main()
        return 0
    except BaseException as e:  # noqa: BLE001
        report["exit"] = f"{type(e).__name__}: {e}"
        return 0 if KILL and "killProgress" in report else 1


if __name__ == "__main__":
    code = asyncio.run(run())
    if code and "exit" in report:
        report["fatal"] = report["exit"]
    print("REPORT " + json.dumps(report), flush=True)
    sys.exit(code)
