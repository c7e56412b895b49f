"""Per-message classification latency and throughput of the NLU engines, in one run.

    .venv/bin/python bench/nlu.py [--rounds 5] [--no-rasa]

The built-in engine is timed in-process on every test-split message (normalise, rank, safety
net, country), warm; as a baseline in the same run, scikit-learn's own ``predict_proba`` on the
same trained model shows what per-call overhead the hand-applied weights avoid. The Rasa engine
is timed over HTTP against a `rasa run` server started here from var/rasa/models (skipped when
Rasa is not set up).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bot.settings import Settings  # noqa: E402
from nlu.builtin import features  # noqa: E402
from nlu.data import load_examples  # noqa: E402
from nlu.engine import NLU, RasaClient  # noqa: E402
from nlu.normalize import normalize  # noqa: E402
from nlu.rasa_env import VENV, project_dir, rasa_env, serve_command  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[max(0, int(len(ordered) * 0.99) - 1)]


def report(name: str, samples_ms: list[float], wall: float) -> None:
    p50, p99 = percentiles(samples_ms)
    print(f"{name:28} {len(samples_ms):7d} {len(samples_ms) / wall:10.0f} {p50:9.3f} {p99:9.3f}")


def bench_builtin(nlu: NLU, texts: list[str], rounds: int) -> None:
    for text in texts:  # warm caches
        nlu.understand_now(text)
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            t = time.perf_counter()
            nlu.understand_now(text)
            samples.append((time.perf_counter() - t) * 1000)
    report("builtin (full understand)", samples, time.perf_counter() - started)


def bench_sklearn_baseline(texts: list[str], rounds: int) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    examples = load_examples([ROOT / "data" / "nlu" / "train"])
    vectorizer = TfidfVectorizer(analyzer=features, sublinear_tf=True)
    matrix = vectorizer.fit_transform([normalize(e.text) for e in examples])
    model = LogisticRegression(C=20.0, max_iter=3000, class_weight="balanced").fit(matrix, [e.intent for e in examples])
    normalised = [normalize(t) for t in texts]
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(max(1, rounds // 2)):
        for text in normalised:
            t = time.perf_counter()
            model.predict_proba(vectorizer.transform([text]))
            samples.append((time.perf_counter() - t) * 1000)
    report("baseline: sklearn per call", samples, time.perf_counter() - started)


async def bench_rasa(nlu: NLU, texts: list[str]) -> None:
    model = project_dir(Settings(var_dir=ROOT / "var")) / "models" / "lingbao-nlu.tar.gz"
    if not (VENV / "bin" / "rasa").exists() or not model.exists():
        print("rasa: not set up or not trained (python -m bot rasa setup && python -m bot rasa train --fast)")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = serve_command(Settings(var_dir=ROOT / "var", rasa_url=url))
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=rasa_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            async with aiohttp.ClientSession() as http:
                await _wait(http, url)
                client = RasaClient(http, url, timeout=10.0)
                for text in texts[:20]:
                    await client.rank(normalize(text))
                samples: list[float] = []
                started = time.perf_counter()
                for text in texts:
                    t = time.perf_counter()
                    await client.rank(normalize(text))
                    samples.append((time.perf_counter() - t) * 1000)
                report("rasa over HTTP, sequential", samples, time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=30)


async def _wait(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{url}/status") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            await asyncio.sleep(1)
    raise RuntimeError("rasa did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-rasa", action="store_true")
    args = parser.parse_args()
    texts = [e.text for e in load_examples([ROOT / "data" / "nlu" / "test"])]
    with tempfile.TemporaryDirectory() as cache:
        nlu = NLU.load(ROOT / "data", Path(cache))
    print(f"{'engine':28} {'msgs':>7} {'msg/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    bench_builtin(nlu, texts, args.rounds)
    bench_sklearn_baseline(texts, args.rounds)
    if not args.no_rasa:
        asyncio.run(bench_rasa(nlu, texts))


if __name__ == "__main__":
    main()
