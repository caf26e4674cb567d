"""An MCP client (the Python `mcp` SDK) for warden's tests: one client per
run, over Streamable HTTP with a bearer token. Prints one JSON line, with
the protocol version the client settled on under "protocol".

    python client.py URL TOKEN list
    python client.py URL TOKEN call TOOL '{"arg": 1}'
    python client.py URL TOKEN bench TOOL '{"arg": 1}' N   # each call's latency, µs
    python client.py URL TOKEN --mode legacy call …        # initialize and a session

--mode is the SDK's: "auto" (the default: `server/discover`, then 2026-07-28
if the server speaks it, else `initialize`), "legacy" or "2026-07-28".
"""

import asyncio
import json
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, args: list[str]) -> dict:
    mode = "auto"
    if args[:1] == ["--mode"]:
        mode, args = args[1], args[2:]
    return await run(url, token, mode, args[0], args[1:])


async def run(url: str, token: str, mode: str, verb: str, rest: list[str]) -> dict:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        answer = await act(client, verb, rest)
        answer["protocol"] = client.protocol_version
        return answer


async def act(client: Client, verb: str, rest: list[str]) -> dict:
    if verb == "list":
        tools = await client.list_tools()
        return {"tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools]}
    if verb == "call":
        result = await client.call_tool(rest[0], json.loads(rest[1]))
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    if verb == "bench":
        latencies = []
        args = json.loads(rest[1])
        for _ in range(int(rest[2])):
            started = time.perf_counter()
            result = await client.call_tool(rest[0], args)
            latencies.append(round((time.perf_counter() - started) * 1e6))
            if result.is_error:
                raise SystemExit(f"call failed: {result}")
        return {"latencies_us": latencies}
    raise SystemExit(f"unknown verb {verb}")


print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))), flush=True)
