"""Shared NLU fixtures: the real data directory and the real built-in model, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.builtin import MODEL_VERSION, load_or_train, training_files
from nlu.data import fingerprint
from nlu.engine import NLU
from nlu.geo import Gazetteer

DATA = Path(__file__).resolve().parents[2] / "data"


def model_key(data_dir: Path) -> str:
    """The cache key load_or_train uses for ``data_dir`` (computed with the project's own functions)."""
    return fingerprint(training_files(data_dir), salt=MODEL_VERSION)


@pytest.fixture(scope="session")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nlu-cache")


@pytest.fixture(scope="session")
def nlu(nlu_cache: Path) -> NLU:
    """The real built-in engine on the real data (trains once; later loads hit the cache in ``nlu_cache``)."""
    loaded = NLU.load(DATA, nlu_cache)
    cached = nlu_cache / f"builtin-{loaded.model.key}.pkl"
    if not cached.exists():  # another test in this process had the model in memory already
        load_or_train(DATA, nlu_cache, force=True)
    return loaded


@pytest.fixture(scope="session")
def gazetteer() -> Gazetteer:
    return Gazetteer.load(DATA)
