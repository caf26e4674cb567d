"""Temporal side of benches/compare: one workflow running one activity (the durable side effect).

    python drive.py worker --address 127.0.0.1:17233            # hosts the workflow and activity
    python drive.py drive  --address 127.0.0.1:17233 --clients 64 --n 400 [--warmup 200]

`drive` is the same closed loop as ../drive.mjs: C clients each start a workflow and await its
result (client.execute_workflow) back to back until N calls are done, after W warm-up calls.
One JSON line and one markdown table row to stdout, progress to stderr.
"""

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "bench"


@activity.defn
async def effect(i: int) -> dict:
    return {"i": i, "ok": True}


@workflow.defn
class BenchWorkflow:
    @workflow.run
    async def run(self, i: int) -> dict:
        return await workflow.execute_activity(effect, i, start_to_close_timeout=timedelta(seconds=30))


async def worker(args) -> None:
    client = await Client.connect(args.address)
    w = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[BenchWorkflow],
        activities=[effect],
        max_concurrent_workflow_tasks=256,
        max_concurrent_activities=256,
    )
    print(f"temporal worker on {args.address}, task queue {TASK_QUEUE}", file=sys.stderr, flush=True)
    await w.run()


async def phase(client, clients: int, total: int, first: int, run: str):
    state = {"next": 0, "done": 0, "errors": 0}
    lat: list[float] = []

    async def one_client() -> None:
        while state["next"] < total:
            i = first + state["next"]
            state["next"] += 1
            s = time.perf_counter()
            try:
                r = await client.execute_workflow(BenchWorkflow.run, i, id=f"bench-{run}-{i}", task_queue=TASK_QUEUE)
                ok = r.get("i") == i
            except Exception as e:  # noqa: BLE001 -- counted and shown, the run goes on
                ok = False
                if state["errors"] < 5:
                    print(f"  error: {e!r}", file=sys.stderr)
            lat.append((time.perf_counter() - s) * 1000)
            state["errors"] += 0 if ok else 1
            state["done"] += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(2)
            print(f"  temporal C={clients}: {state['done']}/{total}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    ticker = asyncio.create_task(progress())
    await asyncio.gather(*(one_client() for _ in range(clients)))
    ticker.cancel()
    return lat, state["errors"], time.perf_counter() - t0


def pct(sorted_lat: list[float], p: float) -> float:
    return sorted_lat[min(len(sorted_lat) - 1, math.ceil(p / 100 * len(sorted_lat)) - 1)]


async def drive(args) -> int:
    client = await Client.connect(args.address)
    run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if args.warmup > 0:
        _, errors, wall = await phase(client, args.clients, args.warmup, 0, run)
        print(f"  temporal C={args.clients}: warm-up {args.warmup} calls in {wall:.2f} s, {errors} errors", file=sys.stderr)
    lat, errors, wall = await phase(client, args.clients, args.n, args.warmup, run)
    lat.sort()
    r = {
        "system": "temporal", "clients": args.clients, "n": args.n, "warmup": args.warmup, "errors": errors,
        "wall_s": round(wall, 3), "throughput": round(args.n / wall, 1),
        "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
    }
    print(json.dumps(r, separators=(",", ":")))
    print(f"| temporal | {args.clients} | {args.n} | {r['throughput']} | {r['p50_ms']} | {r['p99_ms']} | {errors} |", flush=True)
    return 1 if errors else 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["worker", "drive"])
    p.add_argument("--address", default="127.0.0.1:7233")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args()
    if args.role == "worker":
        asyncio.run(worker(args))
        return 0
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())
