"""Where gemfuse keeps user state: the config file and the cache (both overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CONFIG_ENV = "GEMFUSE_CONFIG"
CACHE_ENV = "GEMFUSE_CACHE_DIR"


def config_path() -> Path:
    """$GEMFUSE_CONFIG, else config.toml in the platform's user config folder."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path(platformdirs.user_config_dir("gemfuse")) / "config.toml"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("gemfuse"))
