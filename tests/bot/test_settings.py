"""Settings come from the environment only when asked, and never show secrets."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.settings import Settings


def test_missing_credentials_outside_demo_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({})
    message = str(info.value)
    for name in ("WECHAT_TOKEN", "WECHAT_APP_ID", "WECHAT_APP_SECRET", "BOT_SECRET_KEY"):
        assert name in message


def test_demo_generates_credentials() -> None:
    settings = Settings.from_env({"BOT_PORT": "9123"}, demo=True)
    assert settings.safe_mode and len(settings.encoding_aes_key) == 43
    assert settings.api_base == "http://127.0.0.1:9123/demo-api"


def test_secrets_are_not_in_repr() -> None:
    settings = Settings.from_env({"WECHAT_TOKEN": "tok-SECRET", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "app-SECRET",
                                  "BOT_SECRET_KEY": "key-SECRET"})
    assert "SECRET" not in repr(settings)


@pytest.mark.parametrize("env,needle", [
    ({"BOT_PORT": "eighty"}, "BOT_PORT"),
    ({"WECHAT_ENCODING_AES_KEY": "short"}, "WECHAT_ENCODING_AES_KEY"),
    ({"NLU_ENGINE": "gpt"}, "NLU_ENGINE"),
    ({"BOT_REPLY_BUDGET": "9"}, "BOT_REPLY_BUDGET"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env, demo=True)


def test_helper_processes_by_default_where_there_is_a_second_core() -> None:
    import os

    auto = Settings.from_env({}, demo=True)
    assert auto.nlu_worker == auto.sqlite_writer_process == ((os.cpu_count() or 1) >= 2)
    chosen = Settings.from_env({"BOT_NLU_WORKER": "off", "BOT_SQLITE_WRITER": "process"}, demo=True)
    assert (chosen.nlu_worker, chosen.sqlite_writer_process) == (False, True)
    assert Settings.from_env({"BOT_SQLITE_WRITER": "Thread"}, demo=True).sqlite_writer_process is False
    with pytest.raises(ConfigError, match="BOT_SQLITE_WRITER must be auto, process or thread"):
        Settings.from_env({"BOT_SQLITE_WRITER": "both"}, demo=True)
    with pytest.raises(ConfigError, match="BOT_NLU_WORKER must be auto, on or off"):
        Settings.from_env({"BOT_NLU_WORKER": "2"}, demo=True)
