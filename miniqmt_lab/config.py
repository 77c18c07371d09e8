"""One typed, frozen settings object for the whole product.

Settings come from defaults, then a TOML file, then ``MINIQMT_<FIELD>`` environment variables
(field names are unique across sections, so ``MINIQMT_STOP_LOSS_RATIO=-0.05`` works).
Every problem is reported at load time as a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from miniqmt_lab.errors import ConfigError

DEFAULT_DYNAMIC_TAKE_PROFIT: tuple[tuple[float, float], ...] = (
    (0.05, 0.96),
    (0.10, 0.93),
    (0.15, 0.90),
    (0.20, 0.87),
    (0.30, 0.85),
    (0.40, 0.83),
    (0.50, 0.80),
)


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    simulation: bool = True
    auto_trading: bool = False
    thread_monitor: bool = True
    monitor_interval: float = 3.0
    data_update_interval: float = 60.0
    strategy_interval: float = 5.0
    call_timeout: float = 3.0
    position_query_interval: float = 10.0
    sqlite_sync_interval: float = 15.0
    thread_check_interval: float = 60.0
    restart_cooldown: float = 60.0
    idle_sleep: float = 60.0
    signal_stale_seconds: float = 60.0
    signal_repeat_seconds: float = 300.0
    simulation_balance: float = 1_000_000.0
    stock_pool: tuple[str, ...] = ()
    entry: str = "macd"


@dataclass(frozen=True, kw_only=True)
class RuleSettings:
    stop_loss_ratio: float = -0.075
    initial_take_profit_ratio: float = 0.06
    initial_take_profit_fraction: float = 0.6
    dynamic_take_profit: tuple[tuple[float, float], ...] = DEFAULT_DYNAMIC_TAKE_PROFIT
    grid_enabled: bool = True
    grid_levels: tuple[float, ...] = (0.93, 0.86)
    position_unit: float = 20_000.0
    max_position_value: float = 50_000.0
    price_limits: bool = True


@dataclass(frozen=True, kw_only=True)
class FeeSettings:
    commission_rate: float = 0.00025
    min_commission: float = 5.0
    stamp_duty_rate: float = 0.0005
    transfer_fee_rate: float = 0.00001


@dataclass(frozen=True, kw_only=True)
class PathSettings:
    data_dir: str = "data"
    log_dir: str = "logs"
    log_retention_days: int = 14


@dataclass(frozen=True, kw_only=True)
class QmtSettings:
    account_id: str = ""
    account_type: str = "STOCK"
    qmt_userdata_path: str = ""
    session_id: int = 0


@dataclass(frozen=True, kw_only=True)
class Settings:
    engine: EngineSettings = field(default_factory=EngineSettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    fees: FeeSettings = field(default_factory=FeeSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    qmt: QmtSettings = field(default_factory=QmtSettings)

    def __post_init__(self) -> None:
        validate(self)

    # -- convenience -------------------------------------------------------------------------
    def with_values(self, **flat: Any) -> Settings:
        """A copy with fields changed by flat name (``stop_loss_ratio=-0.05``), validated."""
        return _apply_flat(self, flat, source="argument")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s.name: _section_to_dict(getattr(self, s.name)) for s in fields(self)}

    @property
    def data_path(self) -> Path:
        return Path(self.paths.data_dir)

    @property
    def database_path(self) -> Path:
        """SQLite file of the engine; paper and live never share one."""
        name = "paper.sqlite" if self.engine.simulation else "live.sqlite"
        return self.data_path / name


SECTIONS: dict[str, type] = {
    "engine": EngineSettings,
    "rules": RuleSettings,
    "fees": FeeSettings,
    "paths": PathSettings,
    "qmt": QmtSettings,
}
FIELD_SECTION: dict[str, str] = {f.name: sec for sec, cls in SECTIONS.items() for f in fields(cls)}
ENV_PREFIX = "MINIQMT_"


def _section_to_dict(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


# -- coercion -----------------------------------------------------------------------------------


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn a TOML/env value into the field's type or raise ConfigError naming ``key``."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return out
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = _parse_env_list(key, value)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(hint)
        inner = args[0]
        return tuple(_coerce(f"{key}[{i}]", inner, v) for i, v in enumerate(value))
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover - programming error


def _coerce_pair_table(key: str, value: Any) -> tuple[tuple[float, float], ...]:
    if isinstance(value, str):
        value = _parse_env_list(key, value)
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list of [min_high_ratio, keep_ratio] pairs, got {value!r}")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, list | tuple) or len(row) != 2:
            raise ConfigError(f"{key}[{i}]: expected a pair [min_high_ratio, keep_ratio], got {row!r}")
        rows.append((_coerce(f"{key}[{i}][0]", float, row[0]), _coerce(f"{key}[{i}][1]", float, row[1])))
    return tuple(rows)


def _parse_env_list(key: str, text: str) -> Any:
    """Environment lists are TOML arrays: ``MINIQMT_GRID_LEVELS='[0.95, 0.9]'``."""
    stripped = text.strip()
    if stripped == "":
        return []
    try:
        return tomllib.loads(f"v = {stripped}")["v"]
    except tomllib.TOMLDecodeError:
        if "[" not in stripped:
            return [s.strip() for s in stripped.split(",") if s.strip()]
        raise ConfigError(f"{key}: expected a TOML array such as [0.93, 0.86], got {text!r}") from None


def _coerce_field(section: str, name: str, value: Any) -> Any:
    key = f"{section}.{name}"
    if name == "dynamic_take_profit":
        return _coerce_pair_table(key, value)
    hints = get_type_hints(SECTIONS[section])
    return _coerce(key, hints[name], value)


# -- validation ---------------------------------------------------------------------------------


def _check(cond: bool, key: str, message: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}, got {value!r}")


def validate(s: Settings) -> None:
    """Reject impossible values with the key named."""
    e, r, f, p, q = s.engine, s.rules, s.fees, s.paths, s.qmt
    for name in (
        "monitor_interval",
        "data_update_interval",
        "strategy_interval",
        "call_timeout",
        "position_query_interval",
        "sqlite_sync_interval",
        "thread_check_interval",
        "idle_sleep",
        "signal_stale_seconds",
        "signal_repeat_seconds",
    ):
        v = getattr(e, name)
        _check(v > 0, f"engine.{name}", "must be > 0 seconds", v)
    _check(e.restart_cooldown >= 0, "engine.restart_cooldown", "must be >= 0 seconds", e.restart_cooldown)
    _check(e.simulation_balance > 0, "engine.simulation_balance", "must be > 0", e.simulation_balance)
    _check(e.entry in {"macd", "none"}, "engine.entry", "must be 'macd' or 'none'", e.entry)
    if e.stock_pool:
        from miniqmt_lab.market import normalize_code

        for i, code in enumerate(e.stock_pool):
            try:
                normalize_code(code)
            except ValueError as exc:
                raise ConfigError(f"engine.stock_pool[{i}]: {exc}") from None

    _check(-1 < r.stop_loss_ratio < 0, "rules.stop_loss_ratio", "must be between -1 and 0 (exclusive)",
           r.stop_loss_ratio)
    _check(r.initial_take_profit_ratio > 0, "rules.initial_take_profit_ratio", "must be > 0",
           r.initial_take_profit_ratio)
    _check(0 < r.initial_take_profit_fraction <= 1, "rules.initial_take_profit_fraction",
           "must be in (0, 1]", r.initial_take_profit_fraction)
    table = r.dynamic_take_profit
    for i, (min_high, keep) in enumerate(table):
        _check(min_high > 0, f"rules.dynamic_take_profit[{i}][0]", "min_high_ratio must be > 0", min_high)
        _check(0 < keep <= 1, f"rules.dynamic_take_profit[{i}][1]", "keep_ratio must be in (0, 1]", keep)
        if i:
            _check(min_high > table[i - 1][0], f"rules.dynamic_take_profit[{i}][0]",
                   "min_high_ratio must be strictly ascending", min_high)
    for i, level in enumerate(r.grid_levels):
        _check(0 < level < 1, f"rules.grid_levels[{i}]", "must be in (0, 1)", level)
        if i:
            _check(level < r.grid_levels[i - 1], f"rules.grid_levels[{i}]", "levels must be strictly descending",
                   level)
    _check(r.position_unit > 0, "rules.position_unit", "must be > 0 yuan", r.position_unit)
    _check(r.max_position_value >= r.position_unit, "rules.max_position_value",
           f"must be >= position_unit ({r.position_unit})", r.max_position_value)

    for name in ("commission_rate", "stamp_duty_rate", "transfer_fee_rate"):
        v = getattr(f, name)
        _check(0 <= v < 0.01, f"fees.{name}", "must be in [0, 0.01)", v)
    _check(f.min_commission >= 0, "fees.min_commission", "must be >= 0", f.min_commission)

    _check(p.data_dir.strip() != "", "paths.data_dir", "must not be empty", p.data_dir)
    _check(p.log_dir.strip() != "", "paths.log_dir", "must not be empty", p.log_dir)
    _check(p.log_retention_days >= 1, "paths.log_retention_days", "must be >= 1", p.log_retention_days)
    _check(q.account_type in {"STOCK", "CREDIT"}, "qmt.account_type", "must be 'STOCK' or 'CREDIT'",
           q.account_type)
    _check(q.session_id >= 0, "qmt.session_id", "must be >= 0", q.session_id)
    if not e.simulation:
        _check(q.account_id.strip() != "", "qmt.account_id", "is required when simulation = false", q.account_id)
        _check(q.qmt_userdata_path.strip() != "", "qmt.qmt_userdata_path",
               "is required when simulation = false (the client's userdata_mini folder)", q.qmt_userdata_path)


# -- loading and saving -------------------------------------------------------------------------


def _apply_flat(base: Settings, flat: Mapping[str, Any], *, source: str) -> Settings:
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        section = FIELD_SECTION.get(name)
        if section is None:
            raise ConfigError(f"{name}: unknown setting ({source})")
        grouped.setdefault(section, {})[name] = _coerce_field(section, name, value)
    return _replace_sections(base, grouped)


def _replace_sections(base: Settings, grouped: Mapping[str, Mapping[str, Any]]) -> Settings:
    sections = {sec: replace(getattr(base, sec), **vals) for sec, vals in grouped.items()}
    return replace(base, **sections)


def from_mapping(data: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Settings from a parsed TOML document (sections as tables). Unknown keys are errors."""
    base = base or Settings()
    grouped: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{section}: expected a table [{section}], got {table!r}")
        known = {f.name for f in fields(SECTIONS[section])}
        for name, value in table.items():
            if name not in known:
                raise ConfigError(f"{section}.{name}: unknown setting")
            grouped.setdefault(section, {})[name] = _coerce_field(section, name, value)
    return _replace_sections(base, grouped)


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name == "config":
            continue
        if name not in FIELD_SECTION:
            raise ConfigError(f"{key}: unknown setting (environment)")
        out[name] = value
    return out


def load(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (if given or named by ``MINIQMT_CONFIG``), then the environment."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get("MINIQMT_CONFIG"):
        path = environ["MINIQMT_CONFIG"]
    settings = Settings()
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{file}: config file not found") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        settings = from_mapping(data, settings)
    overrides = env_overrides(environ)
    if overrides:
        settings = _apply_flat(settings, overrides, source="environment")
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover


def to_toml(settings: Settings) -> str:
    lines = ["# miniqmt-lab settings: every key is optional; see miniqmt_lab/config.py for meanings"]
    for section, values in settings.to_dict().items():
        lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in values.items())
    return "\n".join(lines) + "\n"


def save(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Write the settings as TOML atomically (write to a temp file, then rename)."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(file.suffix + ".tmp")
    tmp.write_text(to_toml(settings), encoding="utf-8")
    os.replace(tmp, file)
    return file


def update_file(path: str | os.PathLike[str], **flat: Any) -> Settings:
    """Change some fields of a config file (creating it if absent) and save it; returns the new settings."""
    file = Path(path)
    current = load(file, environ={}) if file.exists() else Settings()
    new = current.with_values(**flat)
    save(new, file)
    return new


__all__ = [
    "EngineSettings",
    "FeeSettings",
    "PathSettings",
    "QmtSettings",
    "RuleSettings",
    "Settings",
    "from_mapping",
    "load",
    "save",
    "to_toml",
    "update_file",
]
