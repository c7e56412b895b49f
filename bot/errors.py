"""The project's exception hierarchy: one root, typed leaves."""

from __future__ import annotations


class LingbaoError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(LingbaoError):
    """A setting is missing or invalid; the message names it."""


class BadRequest(LingbaoError):
    """A verified request whose content cannot be handled (malformed XML, bad ciphertext)."""


class Forbidden(LingbaoError):
    """A request that fails verification (signature, timestamp)."""
