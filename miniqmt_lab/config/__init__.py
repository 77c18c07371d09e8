"""Settings: the typed sections (:mod:`~miniqmt_lab.config.settings`) and their files
(:mod:`~miniqmt_lab.config.files`)."""

from miniqmt_lab.config.files import ENV_ALLOW_LIVE, load, save, to_toml, update_file
from miniqmt_lab.config.settings import (
    ALERT_EVENTS,
    FIELD_SECTION,
    SECTIONS,
    AlertSettings,
    ConfigError,
    EngineSettings,
    FeeSettings,
    PathSettings,
    QmtSettings,
    RuleSettings,
    ServerSettings,
    Settings,
    from_mapping,
)

__all__ = [
    "ALERT_EVENTS",
    "ENV_ALLOW_LIVE",
    "FIELD_SECTION",
    "SECTIONS",
    "AlertSettings",
    "ConfigError",
    "EngineSettings",
    "FeeSettings",
    "PathSettings",
    "QmtSettings",
    "RuleSettings",
    "ServerSettings",
    "Settings",
    "from_mapping",
    "load",
    "save",
    "to_toml",
    "update_file",
]
