"""Bot servers as separate processes (`python -m bot serve`), so they can be killed for real or run side by side."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from bot.settings import REPO_ROOT, Settings
from tests.conftest import AES_KEY, APP_ID, APP_SECRET, TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """`python -m bot serve` as a separate process (so it can be killed for real)."""

    def __init__(self, settings: Settings, port: int, log: Path, **env: str) -> None:
        self.env = dict(os.environ, BOT_DATABASE_URL=settings.database_url, BOT_PORT=str(port), BOT_HOST="127.0.0.1",
                        WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET=APP_SECRET,
                        WECHAT_ENCODING_AES_KEY=AES_KEY, WECHAT_API_BASE=settings.api_base, BOT_SECRET_KEY="c" * 64,
                        BOT_VAR_DIR=str(REPO_ROOT / "var"), **env)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "bot", "--log-level", "WARNING", "serve"],
                                            cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"bot did not start; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
