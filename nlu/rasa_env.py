"""Rasa Open Source 3.6 in its own Python 3.10 environment: set up, train, serve.

Rasa 3.6 pins aiohttp < 3.10 and SQLAlchemy < 1.5 and needs Python < 3.11, so it cannot share the
bot's environment (shared/reference/rasa-notes.md); the bot talks to it over HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from bot.settings import REPO_ROOT, Settings

VENV = REPO_ROOT / ".venv-rasa"
RASA_VERSION = "3.6.21"
MODEL_NAME = "lingbao-nlu"


def rasa_env() -> dict[str, str]:
    """Environment for every Rasa process: no telemetry, no training cache, quiet TensorFlow."""
    env = dict(os.environ)
    env.update(RASA_TELEMETRY_ENABLED="false", RASA_MAX_CACHE_SIZE="0", TF_CPP_MIN_LOG_LEVEL="2",
               SQLALCHEMY_SILENCE_UBER_WARNING="1", PYTHONWARNINGS="ignore")
    return env


def python310() -> list[str]:
    """A Python 3.10 interpreter: ``python3.10`` on PATH, else pyenv's 3.10.13."""
    for candidate in (["python3.10"], ["env", "PYENV_VERSION=3.10.13", "python3"]):
        try:
            out = subprocess.run([*candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 10)":
            return candidate
    raise SystemExit("Rasa needs Python 3.10: install python3.10 or pyenv's 3.10.13")


def setup() -> int:
    """Create ``.venv-rasa`` and install Rasa (about 2 minutes and 2.7 GB the first time)."""
    rasa = VENV / "bin" / "rasa"
    if rasa.exists() and _installed_version() == RASA_VERSION:
        print(f"{VENV} already has rasa {RASA_VERSION}")
        return 0
    subprocess.run([*python310(), "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip", "wheel"], check=True, env=rasa_env())
    subprocess.run([*pip, f"rasa=={RASA_VERSION}", "jieba==0.42.1"], check=True, env=rasa_env())
    print(f"installed rasa {_installed_version()} in {VENV}")
    return 0


def _installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('rasa'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def project_dir(settings: Settings) -> Path:
    return settings.var_dir / "rasa"


def prepare(settings: Settings, *, fast: bool, epochs: int | None) -> Path:
    """Lay out a Rasa project under ``var/rasa``: config, domain, training data, lookup table, jieba dict."""
    project = project_dir(settings)
    data = project / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    for path in sorted((settings.data_dir / "nlu" / "train").glob("*.yml")):
        shutil.copy(path, data / path.name)
    names = _place_names(settings)
    lookup = {"version": "3.1", "nlu": [{"lookup": "country", "examples": "".join(f"- {n}\n" for n in names)}]}
    (data / "lookup_country.yml").write_text(yaml.safe_dump(lookup, allow_unicode=True), encoding="utf-8")
    _write_jieba_dict(project / "jieba_dict", names)
    source = settings.data_dir / "rasa" / ("config_fast.yml" if fast else "config.yml")
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    for component in config["pipeline"]:
        if component["name"] == "JiebaTokenizer":
            component["dictionary_path"] = str(project / "jieba_dict")
        if component["name"] == "DIETClassifier" and epochs:
            component["epochs"] = epochs
    (project / "config.yml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                                        encoding="utf-8")
    shutil.copy(settings.data_dir / "rasa" / "domain.yml", project / "domain.yml")
    return project


def _place_names(settings: Settings) -> list[str]:
    """Chinese country and city names (for the lookup table and jieba)."""
    from nlu.geo import Gazetteer

    gazetteer = Gazetteer.load(settings.data_dir)
    return sorted(name for name in gazetteer.cjk if len(name) >= 2)


def _write_jieba_dict(folder: Path, names: list[str]) -> None:
    """Keep place names whole and split jieba's "country + word" compounds (美国签证 → 美国 签证)."""
    import jieba

    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{name} 2000" for name in names]
    dictionary = Path(jieba.__file__).with_name("dict.txt")
    prefixes = tuple(names)
    with dictionary.open(encoding="utf-8") as fh:
        for line in fh:
            word = line.split(" ", 1)[0]
            if word.startswith(prefixes) and word not in names:
                lines.append(f"{word} 0")
    (folder / "places.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def train(settings: Settings, *, fast: bool = False, epochs: int | None = None) -> int:
    """Train into ``var/rasa/models/lingbao-nlu.tar.gz`` (1–2 minutes on 2 cores)."""
    rasa = VENV / "bin" / "rasa"
    if not rasa.exists():
        print("Rasa is not set up: run `python -m bot rasa setup` first", file=sys.stderr)
        return 2
    project = prepare(settings, fast=fast, epochs=epochs)
    command = [str(rasa), "train", "nlu", "--config", "config.yml", "--nlu", "data", "--out", "models",
               "--fixed-model-name", MODEL_NAME]
    result = subprocess.run(command, cwd=project, env=rasa_env())
    if result.returncode == 0:
        print(f"model: {project / 'models' / (MODEL_NAME + '.tar.gz')}")
    return result.returncode


def serve_command(settings: Settings) -> list[str]:
    """The ``rasa run`` command line for ``RASA_URL``'s port, bound to loopback."""
    port = urlparse(settings.rasa_url).port or 5005
    model = project_dir(settings) / "models" / f"{MODEL_NAME}.tar.gz"
    return [str(VENV / "bin" / "rasa"), "run", "--enable-api", "-m", str(model), "--port", str(port),
            "--interface", "127.0.0.1"]


def serve(settings: Settings) -> int:
    """Run the Rasa server in the foreground."""
    command = serve_command(settings)
    if not Path(command[0]).exists() or not Path(command[4]).exists():
        print("Rasa is not set up or not trained: run `python -m bot rasa setup` and `rasa train`", file=sys.stderr)
        return 2
    os.execve(command[0], command, rasa_env())
    return 0  # pragma: no cover - execve does not return
