"""Helper processes of the server (the NLU worker, the SQLite writer): starting and stopping them.

Each is ``python -m <module>`` with the server's interpreter and code, talking over its stdin and stdout
in length-prefixed pickles; it exits when the server closes its stdin (also when the server dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = struct.Struct(">I")  # a frame's length, then the pickle


async def spawn(module: str, *args: str) -> asyncio.subprocess.Process:
    """Start ``python -m module args…`` with pipes to and from it (stderr shared with the server's log)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=path), limit=2 ** 26)


async def reap(process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Stop a child and collect it: closing its stdin lets a healthy one finish what it holds and exit."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
