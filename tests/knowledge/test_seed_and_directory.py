"""Seed data quality (every number checked against libphonenumber), idempotent seeding that keeps
staff edits, validation messages, and a YAML export/import round trip."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import REPO_ROOT
from knowledge import seed
from knowledge.base import KnowledgeBase
from knowledge.models import KBEntry, KBVersion
from knowledge.validate import check_emergency

DATA = REPO_ROOT / "data"
SEED_SLUGS = {"lost_passport", "passport_renewal", "travel_document", "visa", "notarization", "consular_scope",
              "embassy_contact", "safety_alert", "registration", "labor_dispute", "hotline", "fraud_check",
              "money_trouble"}
PLAYBOOKS = {"emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing", "emergency_kidnap",
             "emergency_disaster", "emergency_death"}


def test_seed_data_has_no_problems() -> None:
    data = seed.read(DATA)
    assert data.problems == []
    slugs = {e["slug"] for e in data.entries}
    assert SEED_SLUGS | PLAYBOOKS <= slugs


def test_every_emergency_number_is_one_for_its_country_or_explained() -> None:
    data = seed.read(DATA)
    foreign = {iso: e for iso, e in data.emergency.items() if not e.get("domestic")}
    assert len(foreign) >= 80
    for iso, entry in data.emergency.items():
        assert check_emergency(entry, "emergency_numbers.yml") == [], iso
        assert entry["source"]["url"].startswith("http") and entry["source"]["date"]
        assert entry["last_reviewed"]
        for service, reason in (entry.get("exceptions") or {}).items():
            assert len(reason) > 20, f"{iso}.{service}: an exception needs a real explanation"


def test_missions_cover_forty_countries_with_sources() -> None:
    data = seed.read(DATA)
    assert len(data.missions) >= 40
    for iso, missions in data.missions.items():
        assert any(m["kind"] == "embassy" for m in missions), iso
        for mission in missions:
            assert mission["source"]["url"].startswith("http"), mission["name"]
            assert mission["last_reviewed"]


def test_a_wrong_emergency_number_is_caught() -> None:
    problems = check_emergency({"iso": "FR", "police": "118", "source": {"url": "https://x", "date": "2026"}},
                               "emergency_numbers.yml")
    assert [(p.entry, p.field) for p in problems] == [("FR", "police")]
    assert "not an emergency number" in problems[0].reason


async def test_seeding_is_idempotent(sessions: async_sessionmaker[AsyncSession]) -> None:
    data = seed.read(DATA)
    first = await seed.apply(sessions, data)
    second = await seed.apply(sessions, data)
    assert first.created > 0 and not second.changed and second.unchanged == first.created


async def test_seed_upgrade_never_overwrites_staff_edits(sessions: async_sessionmaker[AsyncSession],
                                                          tmp_path: Path) -> None:
    await seed.apply(sessions, seed.read(DATA))
    # Staff edit the hotline entry (an import is a staff action).
    staff = tmp_path / "staff"
    (staff / "kb").mkdir(parents=True)
    entry = yaml.safe_load((DATA / "kb" / "hotline.yml").read_text(encoding="utf-8"))
    entry["answer"]["zh"] = "值班人员改过的回答。"
    (staff / "kb" / "hotline.yml").write_text(yaml.safe_dump(entry, allow_unicode=True), encoding="utf-8")
    await seed.apply(sessions, seed.read(staff), author="ops", staff=True)
    # A new seed changes both hotline and visa.
    changed = tmp_path / "data"
    shutil.copytree(DATA, changed)
    for slug in ("hotline", "visa"):
        path = changed / "kb" / f"{slug}.yml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["answer"]["zh"] += "\n（种子更新）"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    report = await seed.apply(sessions, seed.read(changed))
    assert report.upgraded == 1 and report.kept_staff_edits == ["hotline"]
    kb = KnowledgeBase(sessions, DATA)
    snapshot = await kb.current()
    assert snapshot.entries["hotline"]["answer"]["zh"] == "值班人员改过的回答。"
    assert snapshot.entries["visa"]["answer"]["zh"].endswith("（种子更新）")
    async with sessions() as session:
        versions = (await session.execute(
            select(KBVersion.version, KBVersion.author).join(KBEntry).where(KBEntry.slug == "visa")
            .order_by(KBVersion.version))).all()
    assert [tuple(v) for v in versions] == [(1, "seed"), (2, "seed")]


def test_validate_names_file_entry_field_and_reason(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    bad = {"slug": "Bad Slug", "kind": "faq", "title": {"zh": "t"}, "questions": [], "answer": {"zh": "a"},
           "sources": [{"url": "not a url", "date": "2024-01-01"}], "last_reviewed": "yesterday",
           "overrides": {"XX": {"zh": "x"}}}
    (tmp_path / "kb" / "broken.yml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "bot", "kb", "validate", str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for field in ("slug", "questions", "sources[0].url", "last_reviewed", "overrides.XX"):
        assert any(line.startswith(f"broken.yml: Bad Slug: {field}: ") for line in lines), (field, lines)


def test_export_import_round_trip_is_identical(tmp_path: Path) -> None:
    env = {"BOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}", "BOT_VAR_DIR": str(tmp_path / "var"),
           "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "bot", "--log-level", "WARNING", "kb", *args],
                                capture_output=True, text=True, cwd=REPO_ROOT, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    run("export", str(tmp_path / "first"))
    assert "0 new, 0 updated" in run("import", str(tmp_path / "first"))
    run("export", str(tmp_path / "second"))
    for path in sorted((tmp_path / "first").rglob("*.yml")):
        twin = tmp_path / "second" / path.relative_to(tmp_path / "first")
        assert twin.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path.name
    assert len(list((tmp_path / "first" / "kb").glob("*.yml"))) == len(SEED_SLUGS | PLAYBOOKS)


async def test_territory_is_served_by_its_country(sessions: async_sessionmaker[AsyncSession]) -> None:
    await seed.apply(sessions, seed.read(DATA))
    snapshot = await KnowledgeBase(sessions, DATA).current()
    emergency, missions = snapshot.country("GU")
    assert emergency == {"unified": "911"} or (emergency and "911" in emergency.values())
    assert missions and all(m["iso"] == "US" for m in missions)
