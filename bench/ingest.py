"""Load benchmark: simulated citizens against the real webhook, measured against the database.

    python -m bench.ingest --citizens 200 --duration 60 [--rate 0] [--profile out.txt]

Starts the embedded database server (its own process), the fake Bot API (here) and the
gateway (`bench.gateway_proc`, its own process), then N citizens each file a full report
(six webhook deliveries: text, location, photo, two buttons, contact) and wait for each
answer like a person. `--rate` caps the total sends per second (0: as fast as answers come).
Afterwards, on the same server, one async client times single-document `insert_one`: the
database's own limit for this workload. Prints the figures (with the CPU time the gateway,
the database and this process spent per message) and one JSON line. Only ever
talks to 127.0.0.1; every loop is bounded by the citizen count and `--duration`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench.citizens import BenchTelegramAPI, Tally, crowd
from store.embedded import EmbeddedServer, free_port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--citizens", type=int, default=100)
    p.add_argument("--duration", type=float, default=60.0, help="stop sending after S seconds")
    p.add_argument("--rate", type=float, default=0.0, help="max webhook deliveries per second (0: none)")
    p.add_argument("--insert-seconds", type=float, default=5.0)
    p.add_argument("--profile", help="write a py-spy profile of the gateway (collapsed stacks) here")
    return p.parse_args(argv)


def spawn_gateway(uri: str, database: str, api_url: str,
                  extra: list[str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """Start `bench.gateway_proc` and wait for its `ready PORT` line (crash tests use it too)."""
    return spawn("bench.gateway_proc", "--mongodb-uri", uri, "--database", database, "--api-url", api_url,
                 "--port", "0", *(extra or []))


def spawn(module: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """Start a gateway module of ours as its own process; return it once it prints `ready PORT`."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        proc.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return proc, int(line.split()[1])


async def insert_rate(uri: str, seconds: float) -> float:
    """Sequential single-document inserts from one async client, per second."""
    client: AsyncMongoClient = AsyncMongoClient(uri)
    coll = client[f"raw_{uuid.uuid4().hex[:8]}"].docs
    await coll.insert_one({"warm": True})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await coll.insert_one({"channel": "telegram", "message_id": str(n), "payload": {"text": "x" * 200}})
        n += 1
    rate = n / (time.perf_counter() - start)
    await client.drop_database(coll.database.name)
    await client.close()
    return rate


async def store_counts(uri: str, database: str, settle: float) -> dict[str, Any]:
    """Wait (bounded) until nothing is pending, then count what the gateway stored and sent."""
    client: AsyncMongoClient = AsyncMongoClient(uri)
    db = client[database]
    deadline = time.perf_counter() + settle
    while time.perf_counter() < deadline:
        busy = await db.inbound.count_documents({"status": {"$in": ["pending", "processing"]}})
        busy += await db.outbox.count_documents({"status": {"$in": ["pending", "sending"]}})
        if not busy:
            break
        await asyncio.sleep(0.5)
    counts = {
        "inbound": {d["_id"]: d["n"] async for d in await db.inbound.aggregate(
            [{"$group": {"_id": "$status", "n": {"$sum": 1}}}])},
        "outbox": {d["_id"]: d["n"] async for d in await db.outbox.aggregate(
            [{"$group": {"_id": "$status", "n": {"$sum": 1}}}])},
        "reports": await db.reflections.count_documents({}),
        "handled_ms": await _spans(db.inbound, "received_at", "done_at"),
        "sent_ms": await _spans(db.outbox, "created_at", "sent_at"),
        "conversations_open": await db.conversations.count_documents({}),
    }
    await client.close()
    return counts


async def _spans(collection: Any, start: str, end: str) -> dict[str, float]:
    """p50/p95 of `end - start` in ms: how long events waited to be handled, replies to be sent."""
    ms = [(d[end] - d[start]).total_seconds() * 1000 async for d in collection.find(
        {end: {"$exists": True}}, {start: 1, end: 1})]
    return {"p50": round(percentile(ms, 0.5), 1), "p95": round(percentile(ms, 0.95), 1)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(args: argparse.Namespace, uri: str, db_pid: int) -> dict[str, Any]:
    api = BenchTelegramAPI()
    await api.start()
    database = f"bench_{uuid.uuid4().hex[:8]}"
    proc, port = await asyncio.to_thread(spawn_gateway, uri, database, api.base_url.removesuffix("/bot"))
    profiler = _start_profiler(args.profile, proc.pid)
    pids = {"gateway": proc.pid, "database": db_pid, "benchmark": os.getpid()}  # the last: citizens and fake Bot API
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    try:
        tally = await crowd(f"http://127.0.0.1:{port}", api, args.citizens, args.duration, args.rate)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        counts = await store_counts(uri, database, settle=30)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiler.wait(60)
        proc.terminate()
        proc.wait(30)
        await api.stop()
    elapsed = max(tally.last_reply - (tally.first_send or tally.last_reply), 1e-9)
    figures = _figures(tally, counts, api, elapsed)
    messages = max(figures["messages"], 1)
    figures["cpu_ms_per_message"] = {name: round(1000 * used / messages, 2) for name, used in cpu.items()}
    return figures


def _start_profiler(path: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    if not path:
        return None
    return subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
                             "--format", "raw", "--output", path, "--rate", "200", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _figures(tally: Tally, counts: dict[str, Any], api: BenchTelegramAPI, elapsed: float) -> dict[str, Any]:
    acked = tally.statuses.get(200, 0)
    errors = sum(n for status, n in tally.statuses.items() if status != 200) + tally.missing_replies
    errors += counts["inbound"].get("failed", 0) + counts["outbox"].get("failed", 0)
    ms = [x * 1000 for x in tally.latencies]
    return {
        "messages": acked, "seconds": round(elapsed, 2), "messages_per_s": round(acked / elapsed, 1),
        "ack_ms_p50": round(percentile(ms, 0.50), 1), "ack_ms_p95": round(percentile(ms, 0.95), 1),
        "ack_ms_p99": round(percentile(ms, 0.99), 1), "ack_ms_mean": round(statistics.fmean(ms), 1) if ms else None,
        "reports_finished": tally.reports_finished, "reports_stored": counts["reports"],
        "replies_sent": counts["outbox"].get("sent", 0),
        "handled_ms": counts["handled_ms"], "sent_ms": counts["sent_ms"], "replies_received": sum(api.replies.values()),
        "errors": errors, "statuses": dict(tally.statuses), "inbound": counts["inbound"], "outbox": counts["outbox"],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="bench-db-")), free_port())
    server.start()
    try:
        figures = await load(args, server.uri, server.pid)
        figures["insert_one_per_s"] = round(await insert_rate(server.uri, args.insert_seconds), 1)
    finally:
        server.stop()
    figures["ratio"] = round(figures["messages_per_s"] / figures["insert_one_per_s"], 3)
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    f = asyncio.run(main_async(args))
    print(f"citizens {args.citizens}, rate cap {args.rate or 'none'}/s, duration cap {args.duration:.0f} s")
    print(f"messages/s          {f['messages_per_s']}  ({f['messages']} in {f['seconds']} s)")
    print(f"ack latency ms      p50 {f['ack_ms_p50']}  p95 {f['ack_ms_p95']}  p99 {f['ack_ms_p99']}")
    print(f"reports stored      {f['reports_stored']} (finished by citizens: {f['reports_finished']})")
    print(f"replies sent        {f['replies_sent']} (received by the fake API: {f['replies_received']})")
    print(f"errors              {f['errors']}")
    print(f"stored → handled ms p50 {f['handled_ms']['p50']}  p95 {f['handled_ms']['p95']}; "
          f"queued → sent ms p50 {f['sent_ms']['p50']}  p95 {f['sent_ms']['p95']}")
    print("CPU ms per message  " + "  ".join(f"{name} {ms}" for name, ms in f["cpu_ms_per_message"].items()))
    print(f"insert_one/s        {f['insert_one_per_s']} (one async client, same server)")
    print(f"ratio               {f['ratio']}")
    print(json.dumps(f, ensure_ascii=False))


if __name__ == "__main__":
    main()
