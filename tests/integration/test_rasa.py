"""The Rasa engine for real: `rasa run --enable-api` with the model trained from data/, and the
fall-back to the built-in engine when the server stops mid-test.

Needs `.venv-rasa` and a trained model (`python -m bot rasa setup && python -m bot rasa train --fast`,
which `scripts/test` does). Without them the tests are skipped, unless LINGBAO_REQUIRE_RASA=1
(CI sets it), where a missing setup is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app import BRAIN
from bot.settings import REPO_ROOT, Settings
from nlu.rasa_env import VENV, project_dir, rasa_env, serve_command
from tests.conftest import StartBot
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.rasa

TRAINED_VAR = REPO_ROOT / "var"


def require_rasa() -> None:
    """Skip without Rasa set up and trained; in CI (LINGBAO_REQUIRE_RASA=1) that is a failure."""
    reason = None
    if not (VENV / "bin" / "rasa").exists():
        reason = "Rasa is not set up (.venv-rasa missing)"
    elif not (project_dir(Settings(var_dir=TRAINED_VAR)) / "models" / "lingbao-nlu.tar.gz").exists():
        reason = "no trained Rasa model in var/rasa/models"
    if reason and os.environ.get("LINGBAO_REQUIRE_RASA") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def rasa_url() -> object:
    require_rasa()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = serve_command(Settings(var_dir=TRAINED_VAR, rasa_url=url))
    log = open(TRAINED_VAR / "rasa-test-server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=rasa_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_up(url, process, timeout=240)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rasa exited with {process.returncode}; see var/rasa-test-server.log")
        try:
            with urllib.request.urlopen(f"{url}/status", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError("rasa server did not start in time")


@pytest.fixture
async def rasa_settings(settings: Settings, rasa_url: tuple[str, subprocess.Popen[bytes]]) -> AsyncIterator[Settings]:
    url, _ = rasa_url
    async with aiohttp.ClientSession() as http:  # the first parse loads jieba: do it before timing anything
        async with http.post(f"{url}/model/parse", json={"text": "你好"}) as response:
            assert response.status == 200
    yield settings.replace(nlu_engine="rasa", rasa_url=url, rasa_timeout=2.0)


async def test_rasa_answers_through_the_bot(start_bot: StartBot, rasa_settings: Settings) -> None:
    bot = await start_bot(rasa_settings)
    reply = await bot.wechat.post(text("oRasa1", "我在迪拜被警察抓了，怎么办"))
    assert reply.text and "+86-10-12308" in reply.text and "999" in reply.text
    nlu = bot.app[BRAIN].services.nlu
    assert nlu.stats["rasa"] >= 1 and nlu.stats["rasa_fallbacks"] == 0
    assert bot.rows("SELECT intent FROM messages WHERE direction='in'") == [("emergency_arrest",)]


async def test_rasa_ranking_is_used_for_faq(start_bot: StartBot, rasa_settings: Settings) -> None:
    bot = await start_bot(rasa_settings)
    reply = await bot.wechat.post(text("oRasa2", "护照在曼谷丢了怎么补办"))
    assert reply.text and "报案" in reply.text
    assert bot.app[BRAIN].services.nlu.stats["rasa"] >= 1


# Stops the module's server: keep it the last test that talks to Rasa.
async def test_stopping_rasa_mid_test_falls_back_to_builtin(
        start_bot: StartBot, rasa_settings: Settings, rasa_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    bot = await start_bot(rasa_settings)
    first = await bot.wechat.post(text("oRasa3", "你好"))
    assert first.text
    _, process = rasa_url
    process.terminate()
    process.wait(timeout=30)
    started = time.monotonic()
    reply = await bot.wechat.post(text("oRasa3", "我儿子在西港联系不上三天了"))
    assert time.monotonic() - started < 5
    assert reply.text and "+86-10-12308" in reply.text
    nlu = bot.app[BRAIN].services.nlu
    assert nlu.stats["rasa_fallbacks"] >= 1
    assert bot.rows("SELECT intent FROM messages WHERE direction='in' ORDER BY id")[-1] == ("emergency_missing",)


def test_rasa_data_validate_passes() -> None:
    require_rasa()
    project = project_dir(Settings(var_dir=TRAINED_VAR))
    result = subprocess.run([str(VENV / "bin" / "rasa"), "data", "validate", "--domain", "domain.yml", "--data",
                             "data"], cwd=project, env=rasa_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

