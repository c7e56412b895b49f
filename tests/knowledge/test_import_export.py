"""YAML export and import of the whole knowledge base, directory and alerts: round-trip identical,
and every problem in an import names file, entry, field and reason (and nothing is imported)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import REPO_ROOT
from bot.storage.db import make_engine, make_sessionmaker, migrate
from knowledge import seed
from knowledge.editor import Editor

DATA = REPO_ROOT / "data"


async def database(path: Path) -> tuple[async_sessionmaker[AsyncSession], object]:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    engine = make_engine(url)
    return make_sessionmaker(engine), engine


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    sessions, engine = await database(tmp_path / "a.db")
    await seed.apply(sessions, seed.read(DATA))
    yield sessions
    await engine.dispose()  # type: ignore[attr-defined]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.yml"))}


async def test_export_import_export_is_identical(seeded: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    editor = Editor(seeded)
    entry = await editor.entry("visa")
    await editor.update("visa", {**entry["latest"], "tags": ["签证", "编辑过"]}, actor="olga")
    await editor.publish("visa", actor="olga")
    created = await editor.create_alert({
        "country": "MM", "level": "暂勿前往", "text": {"zh": "缅北地区武装冲突持续", "en": "Armed conflict in northern Myanmar"},
        "starts_at": "2026-11-01", "ends_at": "2027-02-28",
        "source": {"title": "中国驻缅甸大使馆", "url": "https://mm.china-embassy.gov.cn/"}}, actor="olga")
    await editor.publish_alert(created["id"], actor="olga")

    first, second = tmp_path / "first", tmp_path / "second"
    count = await seed.export(seeded, first)
    assert count == len(list((DATA / "kb").glob("*.yml")))
    assert (first / "alerts" / "alerts.yml").exists()

    data = seed.read(first)
    assert data.problems == []
    fresh, engine = await database(tmp_path / "b.db")
    try:
        report = await seed.apply(fresh, data, author="import", staff=True)
        assert report.created == count + len(data.emergency.keys() | data.missions.keys()) + 1
        await seed.export(fresh, second)
        again = await seed.apply(fresh, seed.read(first), author="import", staff=True)
        assert not again.changed, "importing the same files twice changes nothing"
    finally:
        await engine.dispose()  # type: ignore[attr-defined]
    assert files(first) == files(second)
    exported_visa = (first / "kb" / "visa.yml").read_text(encoding="utf-8")
    assert "编辑过" in exported_visa, "the published edit is what is exported"


def test_import_problems_name_file_entry_field_and_reason(tmp_path: Path) -> None:
    shutil.copytree(DATA / "kb", tmp_path / "kb")
    shutil.copytree(DATA / "directory", tmp_path / "directory")
    broken = (tmp_path / "kb" / "visa.yml").read_text(encoding="utf-8").replace("slug: visa", "slug: Visa!")
    (tmp_path / "kb" / "visa.yml").write_text(broken, encoding="utf-8")
    numbers = (tmp_path / "directory" / "emergency_numbers.yml").read_text(encoding="utf-8")
    (tmp_path / "directory" / "emergency_numbers.yml").write_text(
        numbers.replace('police: "191"', 'police: "12345"', 1), encoding="utf-8")
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "alerts.yml").write_text(
        "alerts:\n- country: TH\n  level: 很危险\n  text: {zh: 测试}\n  starts_at: 2026-12-01\n"
        "  ends_at: 2026-11-01\n  source: {title: 使馆, url: 'https://th.china-embassy.gov.cn/'}\n", encoding="utf-8")
    (tmp_path / "kb" / "broken.yml").write_text("slug: [unclosed\n", encoding="utf-8")

    found = {(p.file, p.entry, p.field) for p in seed.read(tmp_path).problems}
    assert ("visa.yml", "Visa!", "slug") in found
    assert ("emergency_numbers.yml", "TH", "police") in found
    assert ("alerts.yml", "alerts[0]", "level") in found and ("alerts.yml", "alerts[0]", "ends_at") in found
    assert any(f == "broken.yml" and field == "(yaml)" for f, _, field in found)

    db = tmp_path / "import.db"
    env = {"BOT_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "bot", "kb", "import", str(tmp_path)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "visa.yml: Visa!: slug: lower-case letters" in result.stdout
    assert "nothing imported" in result.stdout
    assert not db.exists(), "nothing was written"
