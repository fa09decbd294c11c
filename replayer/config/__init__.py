"""Settings of `replayer run`: defaults < config.toml < environment < flags, checked once.

`settings` holds the values (Settings, Secret, ConfigError), `table` the one table of
settings (FIELDS), `load` the layers and `load_settings`, `checks` the whole-settings checks.
"""

from __future__ import annotations

from replayer.config.checks import describe_target, is_remote, key_file_warning
from replayer.config.load import CONFIG_ENV, load_settings
from replayer.config.settings import (
    EMBEDDED_APP_ID,
    EMBEDDED_CLIENT_KEY,
    ConfigError,
    Secret,
    Settings,
)
from replayer.config.table import FIELDS, SECTIONS, SPECS, FieldSpec

__all__ = [
    "CONFIG_ENV",
    "EMBEDDED_APP_ID",
    "EMBEDDED_CLIENT_KEY",
    "FIELDS",
    "SECTIONS",
    "SPECS",
    "ConfigError",
    "FieldSpec",
    "Secret",
    "Settings",
    "describe_target",
    "is_remote",
    "key_file_warning",
    "load_settings",
]
