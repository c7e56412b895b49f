"""Seed the knowledge base and directory from ``data/``, idempotently, never over staff edits.

Also the YAML import and export used by ``python -m bot kb import|export``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import utcnow
from knowledge.models import DirectoryCountry, DocVersion, KBEntry, KBState, KBVersion, SafetyAlert
from knowledge.validate import Problem, check_alert, check_emergency, check_entry, check_mission
from nlu.data import fingerprint

log = logging.getLogger(__name__)


@dataclass
class SeedData:
    """Entries and directory rows read from YAML, with every problem found."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    emergency: dict[str, dict[str, Any]] = field(default_factory=dict)
    missions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class SeedReport:
    created: int = 0
    upgraded: int = 0
    unchanged: int = 0
    kept_staff_edits: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.upgraded)


def plain(value: Any) -> Any:
    """YAML dates to ISO strings, recursively, so content is JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def content_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read(data_dir: Path) -> SeedData:
    """Read ``kb/*.yml``, ``directory/*.yml`` and ``alerts/*.yml`` under ``data_dir`` (parsed once per
    content, per process)."""
    return _read(data_dir, fingerprint([data_dir / "kb", data_dir / "directory", data_dir / "alerts"]))


@lru_cache(maxsize=4)
def _read(data_dir: Path, key: str) -> SeedData:
    del key  # only part of the cache key
    seed = SeedData()
    for path in sorted((data_dir / "kb").glob("*.yml")):
        seed.entries.extend(_read_entries(path, seed.problems))
    seen: dict[str, str] = {}
    for entry in seed.entries:
        slug = str(entry.get("slug"))
        if slug in seen:
            seed.problems.append(Problem(entry.get("_file", "?"), slug, "slug", f"also defined in {seen[slug]}"))
        seen[slug] = entry.get("_file", "?")
    directory = data_dir / "directory"
    numbers = directory / "emergency_numbers.yml"
    for item in _load(numbers, seed.problems).get("countries") or []:
        item = plain(item)
        seed.problems.extend(check_emergency(item, numbers.name))
        seed.emergency[str(item.get("iso"))] = item
    missions = directory / "missions.yml"
    for item in _load(missions, seed.problems).get("missions") or []:
        item = plain(item)
        seed.problems.extend(check_mission(item, missions.name))
        seed.missions.setdefault(str(item.get("iso")), []).append(item)
    for path in sorted((data_dir / "alerts").glob("*.yml")):
        for i, item in enumerate(_load(path, seed.problems).get("alerts") or []):
            item = plain(item)
            found = check_alert(item, f"alerts[{i}]", path.name)
            seed.problems.extend(found)
            if not found:
                seed.alerts.append(item)
    return seed


def _read_entries(path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    doc = _load(path, problems)
    items = doc.get("entries") if isinstance(doc, dict) and "entries" in doc else [doc]
    entries = []
    for item in items or []:
        item = plain(item)
        found = check_entry(item, path.name)
        problems.extend(found)
        if not found:
            entries.append({**item, "_file": path.name})
    return entries


def _load(path: Path, problems: list[Problem]) -> Any:
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        problems.append(Problem(path.name, "(file)", "(yaml)", str(exc).replace("\n", " ")))
        return {}


def entry_content(entry: dict[str, Any]) -> dict[str, Any]:
    """What is stored in a version: the entry without bookkeeping keys."""
    return {k: v for k, v in entry.items() if not k.startswith("_")}


async def apply(sessions: async_sessionmaker[AsyncSession], seed: SeedData, *, author: str = "seed",
                staff: bool = False) -> SeedReport:
    """Create missing entries and upgrade seed-owned ones; staff-edited entries are left alone."""
    report = SeedReport()
    async with sessions.begin() as session:
        for entry in seed.entries:
            await _apply_entry(session, entry_content(entry), report, author=author, staff=staff)
        for iso in sorted(set(seed.emergency) | set(seed.missions)):
            await _apply_country(session, iso, seed.emergency.get(iso), seed.missions.get(iso, []), report, staff=staff)
        await _apply_alerts(session, seed.alerts, report, author=author)
        if report.changed:
            await bump_generation(session)
    if report.kept_staff_edits:
        log.info("seed left staff-edited entries alone", extra={"slugs": report.kept_staff_edits})
    return report


async def _apply_entry(session: AsyncSession, data: dict[str, Any], report: SeedReport, *, author: str,
                       staff: bool) -> None:
    digest = content_hash(data)
    row = (await session.execute(select(KBEntry).where(KBEntry.slug == data["slug"]))).scalar_one_or_none()
    now = utcnow()
    if row is None:
        row = KBEntry(slug=data["slug"], kind=data["kind"], status="published", published_version=1,
                      latest_version=1, seed_hash=None if staff else digest, staff_edited=staff,
                      created_at=now, updated_at=now)
        session.add(row)
        await session.flush()
        session.add(KBVersion(entry_id=row.id, version=1, data=data, author=author, created_at=now))
        report.created += 1
        return
    if not staff and row.seed_hash == digest:
        report.unchanged += 1
        return
    if not staff and row.staff_edited:
        report.kept_staff_edits.append(row.slug)
        return
    current = (await session.execute(select(KBVersion.data).where(
        KBVersion.entry_id == row.id, KBVersion.version == row.published_version))).scalar_one_or_none()
    if current == data:
        report.unchanged += 1
        row.seed_hash = None if staff else digest
        return
    row.latest_version += 1
    session.add(KBVersion(entry_id=row.id, version=row.latest_version, data=data, author=author, created_at=now))
    row.published_version, row.status, row.kind, row.updated_at = row.latest_version, "published", data["kind"], now
    if staff:
        row.staff_edited = True
    else:
        row.seed_hash = digest
    report.upgraded += 1


async def _apply_country(session: AsyncSession, iso: str, emergency: dict[str, Any] | None,
                         missions: list[dict[str, Any]], report: SeedReport, *, staff: bool = False) -> None:
    digest = content_hash({"emergency": emergency, "missions": missions})
    row = await session.get(DirectoryCountry, iso)
    if row is None:
        session.add(DirectoryCountry(iso=iso, emergency=emergency, missions=missions, seed_hash=None if staff else digest,
                                     staff_edited=staff, latest_version=0, updated_at=utcnow()))
        report.created += 1
    elif row.seed_hash == digest and not staff:
        report.unchanged += 1
    elif row.staff_edited and not staff:
        report.kept_staff_edits.append(f"directory:{iso}")
    elif {"emergency": row.emergency, "missions": row.missions} == {"emergency": emergency, "missions": missions}:
        if not staff:
            row.seed_hash = digest
        report.unchanged += 1
    else:
        row.emergency, row.missions, row.updated_at = emergency, missions, utcnow()
        row.seed_hash, row.staff_edited = (None, True) if staff else (digest, row.staff_edited)
        if row.latest_version:  # edited in the console before: the import is the newest published version
            row.latest_version += 1
            row.published_version = row.latest_version
            session.add(DocVersion(kind="directory", key=iso, version=row.latest_version, author="import",
                                   data={"emergency": emergency, "missions": missions}, created_at=row.updated_at))
        report.upgraded += 1


async def _apply_alerts(session: AsyncSession, alerts: list[dict[str, Any]], report: SeedReport, *,
                        author: str) -> None:
    """Publish each alert that is not already published with exactly this content."""
    if not alerts:
        return
    live = {content_hash(a.data) for a in (await session.execute(
        select(SafetyAlert).where(SafetyAlert.status == "published"))).scalars()}
    for alert in alerts:
        if content_hash(alert) in live:
            report.unchanged += 1
            continue
        now = utcnow()
        row = SafetyAlert(country=alert["country"], status="published", published_version=1, latest_version=1,
                          data=alert, created_at=now, updated_at=now)
        session.add(row)
        await session.flush()
        session.add(DocVersion(kind="alert", key=str(row.id), version=1, data=alert, author=author, created_at=now))
        live.add(content_hash(alert))
        report.created += 1


async def bump_generation(session: AsyncSession) -> None:
    """Tell every process that published content changed."""
    result = await session.execute(update(KBState).where(KBState.id == 1)
                                   .values(generation=KBState.generation + 1, updated_at=utcnow()))
    if not result.rowcount:
        session.add(KBState(id=1, generation=1, updated_at=utcnow()))


async def export(sessions: async_sessionmaker[AsyncSession], out_dir: Path) -> int:
    """Write the published knowledge base, the directory and the published alerts as YAML in the seed layout."""
    (out_dir / "kb").mkdir(parents=True, exist_ok=True)
    (out_dir / "directory").mkdir(parents=True, exist_ok=True)
    count = 0
    async with sessions() as session:
        rows = await session.execute(
            select(KBEntry.slug, KBVersion.data).join(KBVersion, KBVersion.entry_id == KBEntry.id)
            .where(KBVersion.version == KBEntry.published_version).order_by(KBEntry.slug))
        for slug, data in rows:
            _dump(out_dir / "kb" / f"{slug}.yml", data)
            count += 1
        countries = (await session.execute(select(DirectoryCountry).order_by(DirectoryCountry.iso))).scalars().all()
        alerts = [a.data for a in (await session.execute(
            select(SafetyAlert).where(SafetyAlert.status == "published"))).scalars() if a.data]
    if alerts:
        (out_dir / "alerts").mkdir(exist_ok=True)
        alerts.sort(key=lambda a: (a["country"], str(a["starts_at"]), a["level"], json.dumps(a, sort_keys=True)))
        _dump(out_dir / "alerts" / "alerts.yml", {"version": 1, "alerts": alerts})
    _dump(out_dir / "directory" / "emergency_numbers.yml",
          {"version": 1, "countries": [c.emergency for c in countries if c.emergency]})
    _dump(out_dir / "directory" / "missions.yml",
          {"version": 1, "missions": [m for c in countries for m in c.missions]})
    return count


def _dump(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100), encoding="utf-8")
