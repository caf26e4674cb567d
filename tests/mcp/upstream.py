"""An upstream MCP server for warden's tests, on the Python `mcp` SDK
(Streamable HTTP at /mcp, or stdio with --stdio). It honours idempotency
keys the way a tool behind warden should: a key it has completed returns the
stored result and does not run again. Every start and completion of a call
is appended to <dir>/log.jsonl with the server's pid, so a test can count
executions per key across restarts and find the process to kill.

    python upstream.py --port 9000 --dir /tmp/x
    python upstream.py --stdio --dir /tmp/x
"""

import argparse
import asyncio
import json
import os

from mcp.server.mcpserver import Context, MCPServer

parser = argparse.ArgumentParser()
transport = parser.add_mutually_exclusive_group(required=True)
transport.add_argument("--port", type=int)
transport.add_argument("--stdio", action="store_true")
parser.add_argument("--dir", required=True)
opts = parser.parse_args()
LOG = os.path.join(opts.dir, "log.jsonl")

server = MCPServer("warden-test-upstream")


def key_of(ctx: Context) -> str:
    meta = ctx.request_context.meta
    from_meta = (meta or {}).get("warden/idempotency-key")
    from_header = (ctx.headers or {}).get("idempotency-key")
    if from_meta and from_header and from_meta != from_header:
        raise ValueError(f"idempotency key in _meta {from_meta!r} and header {from_header!r} differ")
    return from_header or from_meta or "none"


def record(entry: dict) -> None:
    entry["pid"] = os.getpid()
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def done(key: str):
    if not os.path.exists(LOG):
        return None
    with open(LOG) as f:
        for line in f:
            e = json.loads(line)
            if e["event"] == "done" and e["key"] == key:
                return e["result"]
    return None


async def once(ctx: Context, tool: str, ms: int, make) -> str:
    key = key_of(ctx)
    previous = done(key)
    if previous is not None:
        return previous
    record({"event": "start", "key": key, "tool": tool})
    if ms:
        await asyncio.sleep(ms / 1000)
    result = make()
    record({"event": "done", "key": key, "tool": tool, "result": result})
    return result


@server.tool()
async def echo(text: str) -> str:
    """Returns its text: no effect, no log (the overhead bench's tool)."""
    return text


@server.tool()
async def search(query: str, ctx: Context) -> str:
    """Searches the documents (read-only)."""
    return await once(ctx, "search", 0, lambda: f"3 documents match {query}")


@server.tool()
async def send_email(to: str, body: str, ctx: Context) -> str:
    """Sends an email."""
    return await once(ctx, "send_email", 0, lambda: f"sent to {to}")


@server.tool()
async def write(path: str, ms: int, ctx: Context) -> str:
    """Writes a file, taking `ms` milliseconds."""
    return await once(ctx, "write", ms, lambda: f"wrote {path}")


@server.tool()
async def drop(table: str, ctx: Context) -> str:
    """Drops a table."""
    return await once(ctx, "drop", 0, lambda: f"dropped {table}")


if opts.stdio:
    server.run(transport="stdio")
else:
    server.run(transport="streamable-http", host="127.0.0.1", port=opts.port)
