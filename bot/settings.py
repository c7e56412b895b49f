"""Typed settings, built once from the environment in ``main()`` and passed down."""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bot.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/lingbao.db"


@dataclass(frozen=True)
class Settings:
    """Everything the bot needs to run; secrets are kept out of ``repr``."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    wechat_token: str = field(default="", repr=False)
    app_id: str = ""
    app_secret: str = field(default="", repr=False)
    encoding_aes_key: str = field(default="", repr=False)
    api_base: str = "https://api.weixin.qq.com"
    nlu_engine: str = "builtin"
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout: float = 0.8
    secret_key: str = field(default="", repr=False)
    reply_budget: float = 4.0
    timestamp_tolerance: int = 300
    api_timeout: float = 5.0
    data_dir: Path = REPO_ROOT / "data"
    var_dir: Path = REPO_ROOT / "var"
    demo: bool = False
    outbox_poll_interval: float = 0.5
    sla_minutes: tuple[float, float, float] = (2.0, 10.0, 30.0)
    retention_days: int = 180
    nlu_worker: bool = False
    sqlite_writer_process: bool = False

    @property
    def safe_mode(self) -> bool:
        """True when messages are encrypted (safe or compatible mode)."""
        return bool(self.encoding_aes_key)

    def sla(self, priority: int) -> timedelta:
        """How soon a case of ``priority`` (1–3) must be claimed."""
        return timedelta(minutes=self.sla_minutes[min(max(priority, 1), 3) - 1])

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and demo mode use it)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
        """Build settings from environment variables; in demo mode fill in generated credentials."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("BOT_VAR_DIR", str(REPO_ROOT / "var")))
        settings = cls(
            database_url=env.get("BOT_DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.get("BOT_HOST", "127.0.0.1"),
            port=_int(env, "BOT_PORT", 8080),
            wechat_token=env.get("WECHAT_TOKEN", ""),
            app_id=env.get("WECHAT_APP_ID", ""),
            app_secret=env.get("WECHAT_APP_SECRET", ""),
            encoding_aes_key=env.get("WECHAT_ENCODING_AES_KEY", ""),
            api_base=env.get("WECHAT_API_BASE", "https://api.weixin.qq.com").rstrip("/"),
            nlu_engine=env.get("NLU_ENGINE", "builtin"),
            rasa_url=env.get("RASA_URL", "http://127.0.0.1:5005").rstrip("/"),
            rasa_timeout=_float(env, "RASA_TIMEOUT", 0.8),
            secret_key=env.get("BOT_SECRET_KEY", ""),
            reply_budget=_float(env, "BOT_REPLY_BUDGET", 4.0),
            sla_minutes=_sla(env.get("BOT_SLA_MINUTES", "")),
            retention_days=_int(env, "BOT_RETENTION_DAYS", 180),
            nlu_worker=_choice(env, "BOT_NLU_WORKER", {"on": True, "off": False}),
            sqlite_writer_process=_choice(env, "BOT_SQLITE_WRITER", {"process": True, "thread": False}),
            data_dir=Path(env.get("BOT_DATA_DIR", str(REPO_ROOT / "data"))),
            var_dir=var_dir,
            demo=demo,
        )
        if demo:
            settings = settings.with_demo_credentials()
        settings.validate()
        return settings

    def with_demo_credentials(self) -> Settings:
        """Generated credentials and a built-in stand-in of WeChat's API on this server."""
        return self.replace(
            demo=True,
            wechat_token=self.wechat_token or secrets.token_hex(16),
            app_id=self.app_id or "wxdemo" + secrets.token_hex(5),
            app_secret=self.app_secret or secrets.token_hex(16),
            encoding_aes_key=self.encoding_aes_key or generate_aes_key(),
            secret_key=self.secret_key or secrets.token_hex(32),
            api_base=f"http://{self.host}:{self.port}/demo-api",
        )

    def validate(self) -> None:
        """Raise ConfigError naming every missing or invalid setting."""
        problems: list[str] = []
        if not self.demo:
            for name, value in (
                ("WECHAT_TOKEN", self.wechat_token),
                ("WECHAT_APP_ID", self.app_id),
                ("WECHAT_APP_SECRET", self.app_secret),
                ("BOT_SECRET_KEY", self.secret_key),
            ):
                if not value:
                    problems.append(f"{name} is required outside demo mode")
        if self.encoding_aes_key and not _valid_aes_key(self.encoding_aes_key):
            problems.append("WECHAT_ENCODING_AES_KEY must be 43 characters of [A-Za-z0-9]")
        if self.nlu_engine not in ("builtin", "rasa"):
            problems.append("NLU_ENGINE must be 'builtin' or 'rasa'")
        if self.retention_days < 1:
            problems.append("BOT_RETENTION_DAYS must be at least 1")
        if not 0.5 <= self.reply_budget <= 4.8:
            problems.append("BOT_REPLY_BUDGET must be between 0.5 and 4.8 seconds")
        if problems:
            raise ConfigError("; ".join(problems))


def generate_aes_key() -> str:
    """A random EncodingAESKey as the WeChat console makes them (43 alphanumerics)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


def _valid_aes_key(key: str) -> bool:
    if len(key) != 43 or not key.isascii() or not key.isalnum():
        return False
    return len(base64.b64decode(key + "=")) == 32


def _sla(raw: str) -> tuple[float, float, float]:
    if not raw:
        return (2.0, 10.0, 30.0)
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ConfigError(f"BOT_SLA_MINUTES must be three positive numbers (P1,P2,P3 minutes), got {raw!r}")
    return values  # type: ignore[return-value]


def _choice(env: Mapping[str, str], name: str, values: dict[str, bool]) -> bool:
    """A helper process or not: ``auto`` (the default) means yes where the machine has a second core."""
    raw = env.get(name, "")
    value = raw.strip().lower() or "auto"
    if value == "auto":
        return (os.cpu_count() or 1) >= 2
    if value not in values:
        raise ConfigError(f"{name} must be auto, {' or '.join(values)}, got {raw!r}")
    return values[value]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default, int))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return float(_number(env, name, default, float))


def _number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
