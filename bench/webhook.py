"""Benchmark the whole ``/wechat`` path in safe mode against a bare aiohttp handler, in one run.

Both servers run as separate processes on loopback; the load generator (this process) sends
pre-encrypted, signed WeChat pushes with a fixed number of concurrent connections, each message
unique (new MsgId), drawn from the NLU test split (emergencies, questions, small talk, requests).

    .venv/bin/python bench/webhook.py [--seconds 10] [--concurrency 32]

Prints messages per second, p50/p99 latency and the ratio of the bot to the bare handler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before bench/, whose nlu.py would hide the package

from bot.cli import event_loop  # noqa: E402
from bot.wechat.crypto import MessageCrypto, parse_xml_fields, sign  # noqa: E402
from nlu.data import load_examples  # noqa: E402
from tests.fakes.wechat_server import text as text_xml  # noqa: E402
from wire import Client, HTTPError, post_head  # noqa: E402

TOKEN, APP_ID, SECRET = "benchtoken", "wxbench0000000001", "benchsecret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

BARE = '''
import asyncio, sys, time
from aiohttp import web
sys.path.insert(0, {root!r})
from bot.wechat.crypto import MessageCrypto, check_request, envelope_ciphertext
from bot.wechat.messages import parse_inbound, render_text_reply
from bot.cli import event_loop
crypto = MessageCrypto({token!r}, {key!r}, {app!r})

async def wechat(request):
    q = request.query
    check_request({token!r}, q["signature"], q["timestamp"], q["nonce"], tolerance=300)
    body = await request.read()
    msg = parse_inbound(crypto.decrypt(envelope_ciphertext(body), q["msg_signature"], q["timestamp"], q["nonce"]))
    xml = crypto.encrypt(render_text_reply(msg, "收到：" + (msg.text or "")), q["nonce"], str(int(time.time())))
    return web.Response(text=xml, content_type="application/xml")

app = web.Application()
app.router.add_post("/wechat", wechat)
# The same event loop as the bot's server, so the ceiling is a fair one.
web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None, loop=event_loop())
'''


FAKE_API = '''
import sys
sys.path.insert(0, {root!r})
sys.path.append({root!r} + "/bench")
from bot.cli import event_loop
from wire import serve_json

# A stand-in for WeChat's servers, which are not on the bot's machine: as light as it can be (bench/wire.py).
OK = b'{{"errcode": 0, "errmsg": "ok"}}'
answers = {{"/cgi-bin/stable_token": b'{{"access_token": "BENCH", "expires_in": 7200}}',
           "/cgi-bin/message/custom/send": OK, "/cgi-bin/message/custom/typing": OK}}
event_loop().run_until_complete(serve_json("127.0.0.1", {port}, answers))
'''


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process and its live children (the NLU worker) have used so
    far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) or 0.0 for child in children)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the load generator on the servers' event loop: it shares the machine with the bot and its helpers, so
    the less CPU it takes from them, the more the figures are the bot's."""
    with asyncio.Runner(loop_factory=event_loop) as runner:
        runner.run(main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_bare(port: int) -> subprocess.Popen[bytes]:
    code = BARE.format(root=str(ROOT), token=TOKEN, key=AES_KEY, app=APP_ID, port=port)
    return subprocess.Popen([sys.executable, "-c", code])


def start_bot(port: int, workdir: Path, api_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BOT_PORT=str(port), BOT_HOST="127.0.0.1", WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID,
               WECHAT_APP_SECRET=SECRET, WECHAT_ENCODING_AES_KEY=AES_KEY, BOT_SECRET_KEY="b" * 64,
               BOT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}", BOT_VAR_DIR=str(ROOT / "var"),
               WECHAT_API_BASE=f"http://127.0.0.1:{api_port}")
    return subprocess.Popen([sys.executable, "-m", "bot", "--log-level", "WARNING", "serve"], cwd=ROOT, env=env)


async def servers() -> AsyncIterator[tuple[str, str, Path, int]]:
    """The bare handler, then the bot (over a fresh SQLite file, a fake WeChat API beside it):
    (name, url, workdir, pid).

    Each server runs only while the caller works with it and is stopped before the next starts.
    """
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-c", FAKE_API.format(root=str(ROOT), port=api_port)])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for name in ("bare", "bot"):
                port = free_port()
                process = start_bare(port) if name == "bare" else start_bot(port, workdir, api_port)
                try:
                    url = f"http://127.0.0.1:{port}/wechat"
                    await wait_ready(url)
                    yield name, url, workdir, process.pid
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    finally:
        api.terminate()
        api.wait(timeout=20)


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url.replace("/wechat", "/ready-probe")):
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def prepare(count: int) -> list[tuple[dict[str, str], bytes]]:
    """Signed, encrypted pushes: every one a new message from one of 500 users."""
    texts = [e.text for e in load_examples([ROOT / "data" / "nlu" / "test"])]
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    requests = []
    timestamp = str(int(time.time()))
    for i in range(count):
        nonce = secrets.token_hex(5)
        envelope = crypto.encrypt(text_xml(f"oBench{i % 500:04d}", texts[i % len(texts)]), nonce, timestamp)
        encrypted = str(parse_xml_fields(envelope)["Encrypt"])
        params = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                  "encrypt_type": "aes", "msg_signature": sign(TOKEN, timestamp, nonce, encrypted)}
        requests.append((params, envelope.encode()))
    return requests


async def load(url: str, requests: list[tuple[dict[str, str], bytes]], seconds: float,
               concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    answered_passively = 0
    index = 0
    heads = [post_head(url, params) for params, _ in requests]
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal index, errors, answered_passively
        client = Client(url)
        while time.monotonic() < deadline and index < len(requests):
            _, body = requests[index]
            head = heads[index]
            index += 1
            started = time.perf_counter()
            try:
                status, reply = await client.request(head, body, timeout=5.0)
            except (OSError, HTTPError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors += 1
            elif b"<Encrypt>" in reply:
                answered_passively += 1
        client.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    n = len(latencies)
    return {"messages": n, "rate": n / elapsed, "p50": latencies[n // 2], "p99": latencies[int(n * 0.99) - 1],
            "errors": errors, "passive": answered_passively / max(n, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    requests = prepare(int(args.seconds * 6000))
    results = {}
    async for name, url, _, _ in servers():
        await load(url, requests[-2000:], 2.0, args.concurrency)  # warm-up, not counted
        results[name] = await load(url, requests[:-2000], args.seconds, args.concurrency)
    print(f"safe mode, {args.concurrency} connections, {args.seconds:.0f} s each, cores: {os.cpu_count()}")
    print(f"{'':6} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} {'passive':>8}")
    for name, r in results.items():
        print(f"{name:6} {r['rate']:8.0f} {r['p50']:8.1f} {r['p99']:8.1f} {r['errors']:8.0f} {r['passive']:8.1%}")
    print(f"bot / bare throughput ratio: {results['bot']['rate'] / results['bare']['rate']:.2f}")


if __name__ == "__main__":
    run(main())
