"""Config files: reading (UTF-8 with or without a byte-order mark), the environment on top, and
writing back in place so a user's comments and layout survive (tomlkit).

Going live from the environment alone is refused: ``MINIQMT_SIMULATION=0`` over a config that says
paper (or no config at all) raises :class:`ConfigError` unless ``MINIQMT_ALLOW_LIVE_FROM_ENV=1`` is
set too; either way the switch is logged loudly.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from miniqmt_lab.config.settings import (
    FIELD_SECTION,
    ConfigError,
    Settings,
    apply_flat,
    from_mapping,
    section_to_dict,
)
from miniqmt_lab.fsutil import atomic_write_text

log = logging.getLogger(__name__)

ENV_PREFIX = "MINIQMT_"
ENV_CONFIG = "MINIQMT_CONFIG"
ENV_ALLOW_LIVE = "MINIQMT_ALLOW_LIVE_FROM_ENV"
_NOT_SETTINGS = {"config", "allow_live_from_env"}
UTF8_BOM = b"\xef\xbb\xbf"


def read_text(file: Path) -> str:
    """The text of a config file: UTF-8, a leading byte-order mark dropped; anything else is one line
    naming the file and the encoding to use."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from None
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    if b"\x00" in raw:
        raise ConfigError(f"{file}: not a text file (it holds NUL bytes): a config is a UTF-8 TOML text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        raw.decode("gbk")
        hint = "it looks like GBK, the Chinese Windows default"
    except UnicodeDecodeError:
        hint = "its encoding is unknown"
    raise ConfigError(
        f"{file}: not UTF-8 ({hint}): save it as UTF-8 (Notepad: File > Save as > Encoding: UTF-8)"
    )


def _parse(file: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in _NOT_SETTINGS:
            continue
        if name not in FIELD_SECTION:
            raise ConfigError(f"{key}: unknown setting (environment)")
        out[name] = value
    return out


def load(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (if given or named by ``MINIQMT_CONFIG``), then the environment.

    Relative folders of ``[paths]`` are taken from the config file's folder.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get(ENV_CONFIG):
        path = environ[ENV_CONFIG]
    settings = Settings()
    if path is not None:
        file = Path(path).expanduser()
        settings = from_mapping(_parse(file, read_text(file)), Settings(config_file=str(file.resolve())))
    overrides = env_overrides(environ)
    if not overrides:
        return settings
    changed = apply_flat(settings, overrides, source="environment", strict=False)
    _guard_live_from_env(settings, changed, environ)
    return changed


def _guard_live_from_env(before: Settings, after: Settings, environ: Mapping[str, str]) -> None:
    if after.engine.auto_trading and not before.engine.auto_trading:
        log.warning("MINIQMT_AUTO_TRADING turns auto trading ON over the config file")
    if before.engine.simulation and not after.engine.simulation:
        if environ.get(ENV_ALLOW_LIVE, "").strip() != "1":
            raise ConfigError(
                "MINIQMT_SIMULATION: live trading cannot be switched on from the environment alone: set"
                f" simulation = false in the config file (or also set {ENV_ALLOW_LIVE}=1)"
            )
        log.warning("LIVE TRADING switched on from the environment (MINIQMT_SIMULATION with %s=1)", ENV_ALLOW_LIVE)


# -- writing -------------------------------------------------------------------------------------


def _toml_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_toml_value(v) for v in value]
    return value


def to_toml(settings: Settings) -> str:
    """A whole settings file, every key written."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("miniqmt-lab settings: every key is optional; see miniqmt_lab/config/settings.py"))
    for section, values in settings.to_dict().items():
        table = tomlkit.table()
        for name, value in values.items():
            table.add(name, _toml_value(value))
        doc.add(section, table)
    return tomlkit.dumps(doc)


def _edit(doc: tomlkit.TOMLDocument, changes: Mapping[str, Mapping[str, Any]]) -> None:
    for section, values in changes.items():
        if section not in doc:
            doc.add(section, tomlkit.table())
        table = doc[section]
        for name, value in values.items():
            if name in table:
                table[name] = _toml_value(value)  # tomlkit keeps the line's comment
            else:
                table.add(name, _toml_value(value))


def save(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` to ``path``: a new file gets every key; an existing one is edited in place,
    only the keys whose value differs from the file's, so its comments and layout stay."""
    file = Path(path)
    if not file.exists():
        return atomic_write_text(file, to_toml(settings))
    text = read_text(file)
    current = from_mapping(_parse(file, text))
    changes: dict[str, dict[str, Any]] = {}
    for section, values in settings.to_dict().items():
        old = section_to_dict(getattr(current, section))
        diff = {name: value for name, value in values.items() if old[name] != value}
        if diff:
            changes[section] = diff
    doc = tomlkit.parse(text)
    _edit(doc, changes)
    return atomic_write_text(file, tomlkit.dumps(doc))


def update_file(path: str | os.PathLike[str], **flat: Any) -> Settings:
    """Change some fields of a config file (creating it if absent), validated first, keeping the file's
    comments and layout; returns the file's new settings (without the environment)."""
    file = Path(path)
    current = load(file, environ={}) if file.exists() else Settings(config_file=str(file.resolve()))
    new = current.with_values(**flat)
    save(new, file)
    return new


__all__ = ["ENV_ALLOW_LIVE", "env_overrides", "load", "read_text", "save", "to_toml", "update_file"]
