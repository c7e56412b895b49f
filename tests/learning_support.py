"""Helpers for the learning tests: staff with tokens or console sessions, the JSON API, waiting for a job."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp

from bot.api import ACCOUNTS
from tests.conftest import Running


async def token_for(bot: Running, name: str, role: str) -> str:
    """A new staff member with ``role`` and a bearer token."""
    await bot.app[ACCOUNTS].add(name, role, f"{name}-password")
    return await bot.app[ACCOUNTS].create_token(name)


async def api(bot: Running, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with bot.wechat.http.request(method, f"{bot.wechat.base}{path}", json=body, headers=headers) as r:
        return r.status, await r.json()


async def console_login(bot: Running, name: str, role: str) -> tuple[aiohttp.ClientSession, str]:
    """A signed-in console session (cookie jar) and its CSRF token, for a new staff member."""
    await bot.app[ACCOUNTS].add(name, role, f"{name}-password")
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{bot.wechat.base}/console/login") as r:
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert login_csrf
    async with session.post(f"{bot.wechat.base}/console/login", allow_redirects=False,
                            data={"name": name, "password": f"{name}-password", "csrf": login_csrf.group(1)}) as r:
        assert r.status == 303
    async with session.get(f"{bot.wechat.base}/console/nlu") as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert csrf, "every console page carries the session's CSRF token"
    return session, csrf.group(1)


async def wait_for_job(bot: Running, token: str, job_id: int, timeout: float = 180.0) -> tuple[dict[str, Any],
                                                                                                 list[dict[str, Any]]]:
    """Poll the job until it finished; the final job and every state seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = await api(bot, "GET", f"/api/v1/nlu/jobs/{job_id}", token)
        assert status == 200, job
        seen.append(job)
        if not job["running"]:
            return job, seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s: {seen[-1]}")


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")
