"""Staff accounts: argon2 passwords with lockout, hashed bearer tokens, presence, the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import LingbaoError
from bot.storage.models import utcnow
from bot.storage.staff import ROLES, ApiToken, AuditEntry, ConsoleSession, Staff

LOCKOUT_AFTER = 5
LOCKOUT_FOR = timedelta(minutes=15)
SESSION_FOR = timedelta(hours=12)
ONLINE_TTL = 2.0
TOKEN_PREFIX = "lbt_"
_hasher = PasswordHasher()


class AccountError(LingbaoError):
    """A staff-account operation that cannot be done (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff member and their role."""

    id: int
    name: str
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Accounts:
    """Every staff-account operation is one short transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._online: tuple[float, int] = (0.0, 0)
        self._online_lock = asyncio.Lock()

    async def add(self, name: str, role: str, password: str) -> Principal:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise AccountError("name: 1–64 letters, digits, '.', '_' or '-'")
        if len(password) < 10:
            raise AccountError("password: at least 10 characters")
        try:
            async with self.sessions.begin() as session:
                staff = Staff(name=name, role=role, password_hash=_hasher.hash(password), created_at=utcnow())
                session.add(staff)
                await session.flush()
                session.add(AuditEntry(actor="cli", action="user_add", target=name, detail={"role": role}))
                return Principal(staff.id, staff.name, staff.role)
        except IntegrityError:
            raise AccountError(f"a staff member called {name!r} already exists") from None

    async def reset(self, name: str, role: str, password: str) -> None:
        """Create ``name`` or give it a new password and role (demo mode's printed login)."""
        async with self.sessions.begin() as session:
            staff = (await session.execute(select(Staff).where(Staff.name == name))).scalar_one_or_none()
            if staff is None:
                session.add(Staff(name=name, role=role, password_hash=_hasher.hash(password), created_at=utcnow()))
            else:
                staff.password_hash, staff.role, staff.active = _hasher.hash(password), role, True
                staff.failed_logins, staff.locked_until = 0, None

    async def login(self, name: str, password: str) -> Principal | None:
        """Check a password; five failures lock the account for 15 minutes (audited either way)."""
        now = utcnow()
        async with self.sessions.begin() as session:
            # Row-locked (PostgreSQL): attempts spread over several processes at once are all counted.
            staff = (await session.execute(select(Staff).where(Staff.name == name).with_for_update())
                     ).scalar_one_or_none()
            if staff is None or not staff.active:
                _hasher.hash(password)  # same work for unknown names: no timing oracle
                session.add(AuditEntry(actor=name[:64], action="login_failed", detail={"reason": "unknown"}))
                return None
            if staff.locked_until is not None and staff.locked_until > now:
                session.add(AuditEntry(actor=name, action="login_failed", detail={"reason": "locked"}))
                return None
            try:
                _hasher.verify(staff.password_hash, password)
            except (VerificationError, InvalidHashError):
                staff.failed_logins += 1
                if staff.failed_logins >= LOCKOUT_AFTER:
                    staff.locked_until, staff.failed_logins = now + LOCKOUT_FOR, 0
                session.add(AuditEntry(actor=name, action="login_failed", detail={"reason": "password"}))
                return None
            staff.failed_logins, staff.locked_until = 0, None
            staff.presence, staff.presence_at = "online", now
            session.add(AuditEntry(actor=name, action="login"))
            self._online = (0.0, 0)
            return Principal(staff.id, staff.name, staff.role)

    async def create_token(self, name: str) -> str:
        """A new bearer token for ``name``; only its hash is stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.sessions.begin() as session:
            staff = (await session.execute(select(Staff).where(Staff.name == name))).scalar_one_or_none()
            if staff is None:
                raise AccountError(f"no staff member called {name!r}")
            session.add(ApiToken(staff_id=staff.id, token_hash=token_hash(token), prefix=token[:12]))
            session.add(AuditEntry(actor="cli", action="token_create", target=name))
        return token

    async def revoke_token(self, token_or_prefix: str) -> int:
        """Revoke a token (the token itself, or the 12-character prefix ``tokens list`` shows)."""
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(ApiToken).where(ApiToken.revoked_at.is_(None),
                                       (ApiToken.token_hash == token_hash(token_or_prefix))
                                       | (ApiToken.prefix == token_or_prefix[:12]))
                .values(revoked_at=utcnow()))
            if result.rowcount:
                session.add(AuditEntry(actor="cli", action="token_revoke", target=token_or_prefix[:12]))
            return int(result.rowcount)

    async def by_token(self, token: str) -> Principal | None:
        """The active staff member a bearer token belongs to, or None (unknown, revoked, inactive)."""
        async with self.sessions() as session:
            row = (await session.execute(
                select(Staff.id, Staff.name, Staff.role).join(ApiToken, ApiToken.staff_id == Staff.id)
                .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None), Staff.active)
            )).one_or_none()
        return Principal(row.id, row.name, row.role) if row else None

    async def start_session(self, who: Principal) -> tuple[str, str]:
        """A new console session (always a new id: no session fixation); returns (cookie value, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        async with self.sessions.begin() as session:
            session.add(ConsoleSession(token_hash=token_hash(token), staff_id=who.id, csrf=csrf,
                                       expires_at=utcnow() + SESSION_FOR))
        return token, csrf

    async def by_session(self, token: str) -> tuple[Principal, str] | None:
        """The staff member and CSRF token of a live session cookie."""
        async with self.sessions() as session:
            row = (await session.execute(
                select(Staff.id, Staff.name, Staff.role, ConsoleSession.csrf)
                .join(ConsoleSession, ConsoleSession.staff_id == Staff.id)
                .where(ConsoleSession.token_hash == token_hash(token), ConsoleSession.revoked_at.is_(None),
                       ConsoleSession.expires_at > utcnow(), Staff.active))).one_or_none()
        return (Principal(row.id, row.name, row.role), row.csrf) if row else None

    async def end_session(self, token: str, who: Principal) -> None:
        async with self.sessions.begin() as session:
            await session.execute(update(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token))
                                  .values(revoked_at=utcnow()))
            await session.execute(update(Staff).where(Staff.id == who.id)
                                  .values(presence="offline", presence_at=utcnow()))
            session.add(AuditEntry(actor=who.name, action="logout"))
        self._online = (0.0, 0)

    async def set_presence(self, principal: Principal, presence: str) -> None:
        if presence not in ("online", "away", "offline"):
            raise AccountError("presence must be online, away or offline")
        self._online = (0.0, 0)
        async with self.sessions.begin() as session:
            await session.execute(update(Staff).where(Staff.id == principal.id)
                                  .values(presence=presence, presence_at=utcnow()))

    async def online_officers(self) -> int:
        """Officers and supervisors marked online (read at most every two seconds: asked on every queued message)."""
        async with self._online_lock:  # one query for everyone asking at the same moment
            checked, count = self._online
            if time.monotonic() - checked < ONLINE_TTL:
                return count
            async with self.sessions() as session:
                count = int((await session.execute(
                    select(func.count()).select_from(Staff)
                    .where(Staff.presence == "online", Staff.role.in_(("officer", "supervisor")), Staff.active)
                )).scalar_one())
            self._online = (time.monotonic(), count)
            return count

    async def roster(self) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = await session.execute(select(Staff.name, Staff.role, Staff.presence).where(Staff.active)
                                         .order_by(Staff.name))
            return [{"name": r.name, "role": r.role, "presence": r.presence} for r in rows]


async def audit(session: AsyncSession, actor: str, action: str, target: str | None = None,
                **detail: Any) -> None:
    """Record a staff action inside the caller's transaction."""
    session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail, at=utcnow()))
