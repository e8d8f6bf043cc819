"""The one error a config raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run; the message starts with the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key
