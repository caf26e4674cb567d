"""An MCP client (the Python `mcp` SDK) for warden's tests: one session per
run, over Streamable HTTP with a bearer token. Prints one JSON line.

    python client.py URL TOKEN list
    python client.py URL TOKEN call TOOL '{"arg": 1}'
    python client.py URL TOKEN bench TOOL '{"arg": 1}' N   # each call's latency, µs
"""

import asyncio
import json
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, verb: str, rest: list[str]) -> dict:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with Client(streamable_http_client(url, http_client=http)) as client:
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


print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))), flush=True)
