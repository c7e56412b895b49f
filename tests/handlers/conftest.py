"""Fixtures for conversation tests: a person (distinct openid per test) chatting with a running bot."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest

from tests.conftest import Running
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.handlers.support import Chat

NewChat = Callable[..., Chat]


@pytest.fixture
def new_chat(bot: Running, fake_api: FakeWeChatAPI, request: pytest.FixtureRequest) -> NewChat:
    """Chats with the ``bot`` fixture, each under an openid unique to this test (and ``who``)."""

    def make(who: str = "", running: Running | None = None) -> Chat:
        name = request.node.nodeid + "|" + who
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        readable = re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:60]
        return Chat(running or bot, fake_api, f"o_{readable}_{digest}")

    return make


@pytest.fixture
def chat(new_chat: NewChat) -> Chat:
    return new_chat()
