"""CLI commands for the NLU, Rasa and knowledge base (filled in by their issues)."""

from __future__ import annotations

import argparse
from typing import Any


def add_nlu_commands(sub: Any) -> None:
    """Register ``nlu``, ``rasa`` and ``kb`` command groups."""
    del sub
