"""Load benchmark: many users, a realistic mix, one bot process on SQLite, against the bare ceiling.

    .venv/bin/python bench/load.py [--users 2000] [--messages 12000] [--concurrency 32]

Plays WeChat's server (safe mode, real signatures and encryption): every user sends messages drawn
from the NLU test split (emergencies, questions, small talk, requests for a person), each with its
own MsgId. Reports messages per second, p50/p95/p99 latency, the share answered within 5 s, 5xx
answers, and lost messages (sent but, once the outbox has drained, neither answered passively nor
answered in the database), and each server's CPU time per message. In the same run a bare aiohttp handler that only verifies, decrypts,
parses, encrypts and replies gives the ceiling, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook import AES_KEY, APP_ID, TOKEN, cpu_seconds, run, servers  # noqa: E402
from wire import Client, HTTPError, post_head  # noqa: E402

from bot.wechat.crypto import MessageCrypto, parse_xml_fields, sign  # noqa: E402
from nlu.data import load_examples  # noqa: E402
from tests.fakes.wechat_server import text as text_xml  # noqa: E402

Request = tuple[str, dict[str, str], bytes]


def prepare(users: int, count: int, seed: int = 7308) -> list[Request]:
    """(msg id, query, body) for ``count`` messages from ``users`` users, in a shuffled realistic mix."""
    rng = random.Random(seed)
    texts = [e.text for e in load_examples([ROOT / "data" / "nlu" / "test"])]
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    timestamp = str(int(time.time()))
    out: list[Request] = []
    for i in range(count):
        msg_id = str(8_000_000_000 + i)
        nonce = secrets.token_hex(5)
        xml = text_xml(f"oLoad{rng.randrange(users):05d}", rng.choice(texts), msg_id=int(msg_id))
        envelope = crypto.encrypt(xml, nonce, timestamp)
        encrypted = str(parse_xml_fields(envelope)["Encrypt"])
        params = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                  "encrypt_type": "aes", "msg_signature": sign(TOKEN, timestamp, nonce, encrypted)}
        out.append((msg_id, params, envelope.encode()))
    return out


async def play(url: str, requests: list[Request], concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    passive: set[str] = set()
    statuses: dict[int, int] = {}
    failed = 0
    index = 0
    heads = [post_head(url, params) for _, params, _ in requests]  # built before the clock starts

    async def worker() -> None:
        nonlocal index, failed
        client = Client(url)
        while index < len(requests):
            msg_id, _, body = requests[index]
            head = heads[index]
            index += 1
            started = time.perf_counter()
            try:
                status, reply = await client.request(head, body, timeout=5.0)  # WeChat gives up after 5 s
            except (OSError, HTTPError):
                failed += 1
                continue
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)
            if status == 200 and b"<Encrypt>" in reply:
                passive.add(msg_id)
        client.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(n * q))] if n else 0.0

    return {"sent": len(requests), "rate": n / elapsed, "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
            "within_5s": sum(1 for v in latencies if v < 5000) / len(requests), "statuses": statuses,
            "failed": failed, "passive": passive}


def lost(database: Path, requests: list[Request], passive: set[str], timeout: float = 60.0) -> int:
    """Messages neither answered passively nor answered in the database once the outbox drained."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(database) as conn:
        while time.monotonic() < deadline:
            backlog = conn.execute("SELECT COUNT(*) FROM outbox WHERE status IN ('pending','sending')").fetchone()[0]
            open_ = conn.execute("SELECT COUNT(*) FROM messages WHERE direction='in' AND status='received'").fetchone()[0]
            if backlog == 0 and open_ == 0:
                break
            time.sleep(0.5)
        answered = {row[0] for row in conn.execute(
            "SELECT channel_key FROM messages WHERE direction='in' AND status='answered'")}
    return sum(1 for msg_id, _, _ in requests if msg_id not in passive and f"m:{msg_id}" not in answered)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=12000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    requests = prepare(args.users, args.messages)
    results: dict[str, dict[str, object]] = {}
    async for name, url, workdir, pid in servers():
        cpu_before = cpu_seconds(pid)
        results[name] = await play(url, requests, args.concurrency)
        cpu_after = cpu_seconds(pid)
        if cpu_before is not None and cpu_after is not None:  # the server's own CPU time per message
            results[name]["cpu_ms"] = (cpu_after - cpu_before) * 1000 / len(requests)
        if name == "bot":
            results[name]["lost"] = lost(workdir / "bench.db", requests, results[name]["passive"])  # type: ignore[arg-type]
    print(f"{args.messages} messages from {args.users} users, safe mode, {args.concurrency} connections")
    print(f"{'':6} {'msg/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'<5 s':>7} {'5xx':>5} {'lost':>5}"
          f" {'CPU ms/msg':>11}")
    for name, r in results.items():
        statuses = r["statuses"]
        assert isinstance(statuses, dict)
        five_xx = sum(v for k, v in statuses.items() if k >= 500)
        lost_text = str(r.get("lost", "-"))
        cpu = r.get("cpu_ms")
        cpu_text = f"{cpu:.2f}" if isinstance(cpu, float) else "-"
        print(f"{name:6} {r['rate']:8.0f} {r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} "
              f"{r['within_5s']:7.1%} {five_xx:5d} {lost_text:>5} {cpu_text:>11}")
    bot_rate, bare_rate = results["bot"]["rate"], results["bare"]["rate"]
    assert isinstance(bot_rate, float) and isinstance(bare_rate, float)
    print(f"bot / ceiling throughput ratio: {bot_rate / bare_rate:.2f} (target: ≥ 1,000 msg/s, p99 ≤ 50 ms)")


if __name__ == "__main__":
    run(main())
