"""Lingbao (领保): the WeChat channel, storage, delivery, console and CLI."""
