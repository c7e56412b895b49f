"""load_or_train(): the on-disk model cache keyed by a hash of data/nlu/train, retraining on change or corruption.

Each test works on its own copy of data/ so the real files and the session model are never touched. The
process-wide ``_loaded`` cache in nlu.builtin is keyed by the same hash, so every retraining test uses
training data no other test uses.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nlu.builtin import BuiltinModel, features, load_or_train, train
from nlu.data import Example, load_examples
from nlu.engine import NLU
from nlu.normalize import normalize
from tests.nlu.conftest import DATA, model_key

ROOT = DATA.parent


def copy_data(tmp_path: Path, extra: str | None = None) -> Path:
    """A copy of data/, optionally with one more out_of_scope example appended to the training file."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    if extra is not None:
        append_example(data, extra)
    return data


def append_example(data: Path, text: str) -> None:
    path = data / "nlu" / "train" / "other.yml"
    content = path.read_text(encoding="utf-8")
    path.write_text(content.rstrip("\n") + f"\n    - {text}\n", encoding="utf-8")


def pickles(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("builtin-*.pkl"))


def test_features() -> None:
    feats = features(normalize("护照 丢了"))
    assert {"c护", "c护照", "c照_丢", "w护照"} <= set(feats)


def test_trained_model_ranks_like_sklearn() -> None:
    """The hand-rolled scorer gives the same ranking as the scikit-learn model it was learnt from."""
    examples = [Example("我被绑架了", "emergency_kidnap"), Example("救命 有人绑架我", "emergency_kidnap"),
                Example("护照丢了怎么办", "faq"), Example("怎么补办护照", "faq"),
                Example("你好", "greet"), Example("hello", "greet")]
    model = train(examples, key="tiny")
    assert model.classes == ["emergency_kidnap", "faq", "greet"]
    assert model.key == "tiny"
    ranking = model.rank(normalize("绑架"))
    assert ranking[0][0] == "emergency_kidnap"
    assert abs(sum(p for _, p in ranking) - 1.0) < 1e-9
    assert model.rank("") and abs(sum(p for _, p in model.rank("")) - 1.0) < 1e-9


def test_cache_hit_then_retrain_on_change(tmp_path: Path, nlu: NLU, nlu_cache: Path) -> None:
    data = copy_data(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    key = model_key(data)
    assert key == nlu.model.key  # same training data, different directory: same key
    # Seed this cache with the session's model file, so the first load never trains whatever ran before.
    shutil.copy(nlu_cache / f"builtin-{key}.pkl", cache)

    first, trained = load_or_train(data, cache, force=False)
    assert trained is False and first.key == key
    second, trained = load_or_train(data, cache, force=False)
    assert trained is False
    assert second is first  # the process-wide cache
    assert pickles(cache) == [f"builtin-{key}.pkl"]

    before = len(load_examples([data / "nlu" / "train"]))
    append_example(data, "帮我推荐一下好看的电视剧 缓存测试专用")
    assert len(load_examples([data / "nlu" / "train"])) == before + 1
    new_key = model_key(data)
    assert new_key != key

    model, trained = load_or_train(data, cache, force=False)
    assert trained is True
    assert model.key == new_key
    assert pickles(cache) == [f"builtin-{new_key}.pkl"]  # written, and the stale model removed
    assert not list(cache.glob("*.tmp"))
    assert model.classes == first.classes
    assert model.rank(normalize("我被绑架了"))[0][0] == "emergency_kidnap"

    again, trained = load_or_train(data, cache, force=False)
    assert trained is False and again is model

    with (cache / f"builtin-{new_key}.pkl").open("rb") as fh:
        on_disk = pickle.load(fh)
    assert isinstance(on_disk, BuiltinModel) and on_disk.key == new_key
    assert on_disk.rank("护照丢了") == model.rank("护照丢了")

    # A new process (a restart) loads the file instead of training.
    script = (
        "import sys, time; from pathlib import Path; from nlu.builtin import load_or_train;"
        "t = time.monotonic(); m, trained = load_or_train(Path(sys.argv[1]), Path(sys.argv[2]));"
        "print(trained, m.key, round(time.monotonic() - t, 2))"
    )
    out = subprocess.run([sys.executable, "-c", script, str(data), str(cache)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    trained_flag, loaded_key, _seconds = out.stdout.split()
    assert (trained_flag, loaded_key) == ("False", new_key)
    assert pickles(cache) == [f"builtin-{new_key}.pkl"]


def test_corrupt_cache_file_is_retrained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = copy_data(tmp_path, extra="今天晚饭吃什么好呢 损坏缓存测试专用")
    cache = tmp_path / "cache"
    cache.mkdir()
    key = model_key(data)
    path = cache / f"builtin-{key}.pkl"
    path.write_bytes(b"this is not a pickle \x00\xff" * 10)

    with caplog.at_level(logging.WARNING, logger="nlu.builtin"):
        model, trained = load_or_train(data, cache, force=False)
    assert trained is True
    assert model.key == key
    assert "cached NLU model unreadable" in caplog.text  # the file was read, rejected, and replaced
    with path.open("rb") as fh:
        repaired = pickle.load(fh)
    assert isinstance(repaired, BuiltinModel) and repaired.key == key
    assert pickles(cache) == [path.name]


def test_cache_file_with_a_corrupt_string_is_retrained(tmp_path: Path, nlu: NLU, nlu_cache: Path) -> None:
    data = copy_data(tmp_path, extra="周末去哪里爬山比较好 坏字符串缓存测试专用")
    cache = tmp_path / "cache"
    cache.mkdir()
    key = model_key(data)
    raw = bytearray((nlu_cache / f"builtin-{nlu.model.key}.pkl").read_bytes())
    # Flip one UTF-8 lead byte of a Chinese vocabulary entry (护 = e6 8a a4): what bit rot does to a model file.
    at = raw.index("护照".encode())
    raw[at] = 0xFF
    (cache / f"builtin-{key}.pkl").write_bytes(bytes(raw))

    model, trained = load_or_train(data, cache, force=False)
    assert trained is True and model.key == key


def test_force_retrains_even_when_cached(tmp_path: Path) -> None:
    """force=True skips both caches; checked cheaply on a tiny training set of its own."""
    data = tmp_path / "data"
    (data / "nlu" / "train").mkdir(parents=True)
    (data / "nlu" / "train" / "tiny.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 你好\n    - hello\n'
        "- intent: faq\n  examples: |\n    - 护照丢了\n    - 签证过期\n", encoding="utf-8")
    cache = tmp_path / "cache"
    model, trained = load_or_train(data, cache)
    assert trained is True and model.classes == ["faq", "greet"]
    again, trained = load_or_train(data, cache)
    assert trained is False and again is model
    forced, trained = load_or_train(data, cache, force=True)
    assert trained is True and forced is not model
    assert pickles(cache) == [f"builtin-{model_key(data)}.pkl"]
