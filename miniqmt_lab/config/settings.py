"""One typed, frozen settings object for the whole product.

Settings come from defaults, then a TOML file, then ``MINIQMT_<FIELD>`` environment variables
(field names are unique across sections, so ``MINIQMT_STOP_LOSS_RATIO=-0.05`` works). Every
section validates itself on construction, so ``RuleSettings(stop_loss_ratio=0.5)`` fails as a
config file would: a :class:`ConfigError` naming the key. A TOML value of the wrong type fails (a
string ``"yes"`` is not a bool); environment variables are text and are parsed.

Reading and writing files is in :mod:`miniqmt_lab.config.files`; the package re-exports both.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from miniqmt_lab import market
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
ALERT_EVENTS = ("fill", "rejection", "halt", "thread_restart", "disconnect", "reconnect", "daily_summary")
MAX_INTERVAL = 86_400.0  # seconds: no loop of the engine waits longer than a day
MAX_WINDOW = 365 * 86_400.0  # seconds: the signal guards remember at most a year
MAX_CALL_TIMEOUT = 600.0


def _check(cond: bool, key: str, message: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}, got {value!r}")


def _check_interval(section: str, name: str, value: float, *, upper: float = MAX_INTERVAL) -> None:
    _check(isinstance(value, int | float) and math.isfinite(value) and 0 < value <= upper,
           f"{section}.{name}", f"must be > 0 and <= {upper:g} seconds", value)


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    simulation: bool = True
    auto_trading: bool = False
    thread_monitor: bool = True
    monitor_interval: float = 3.0
    data_update_interval: float = 60.0
    strategy_interval: float = 5.0
    call_timeout: float = 3.0
    connect_timeout: float = 30.0
    database_timeout: float = 10.0
    position_query_interval: float = 10.0
    sqlite_sync_interval: float = 15.0
    thread_check_interval: float = 60.0
    restart_cooldown: float = 60.0
    idle_sleep: float = 60.0
    signal_stale_seconds: float = 60.0
    signal_repeat_seconds: float = 300.0
    broker_away_halt_seconds: float = 300.0
    max_orders_per_minute: int = 20
    max_order_value: float = 100_000.0
    simulation_balance: float = 1_000_000.0
    stock_pool: tuple[str, ...] = ()
    entry: str = "macd"
    holidays: tuple[str, ...] = ()  # exchange closures the calendar package does not record ("2027-02-08")

    def __post_init__(self) -> None:
        for name in (
            "monitor_interval", "data_update_interval", "strategy_interval", "position_query_interval",
            "sqlite_sync_interval", "thread_check_interval", "idle_sleep", "broker_away_halt_seconds",
            "connect_timeout", "database_timeout",
        ):
            _check_interval("engine", name, getattr(self, name))
        for name in ("signal_stale_seconds", "signal_repeat_seconds"):
            _check_interval("engine", name, getattr(self, name), upper=MAX_WINDOW)
        _check_interval("engine", "call_timeout", self.call_timeout, upper=MAX_CALL_TIMEOUT)
        _check(0 <= self.restart_cooldown <= MAX_INTERVAL, "engine.restart_cooldown",
               f"must be >= 0 and <= {MAX_INTERVAL:g} seconds", self.restart_cooldown)
        _check(self.simulation_balance > 0 and math.isfinite(self.simulation_balance), "engine.simulation_balance",
               "must be > 0", self.simulation_balance)
        _check(self.max_orders_per_minute >= 1, "engine.max_orders_per_minute", "must be >= 1",
               self.max_orders_per_minute)
        _check(self.max_order_value > 0 and math.isfinite(self.max_order_value), "engine.max_order_value",
               "must be > 0 yuan", self.max_order_value)
        _check(self.entry in {"macd", "none"}, "engine.entry", "must be 'macd' or 'none'", self.entry)
        for i, code in enumerate(self.stock_pool):
            try:
                market.normalize_code(code)
            except ValueError as exc:
                raise ConfigError(f"engine.stock_pool[{i}]: {exc}") from None
        for i, day in enumerate(self.holidays):
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                raise ConfigError(f"engine.holidays[{i}]: expected a date as a string such as \"2027-02-08\","
                                  f" got {day!r}") from None


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

    def __post_init__(self) -> None:
        _check(-1 < self.stop_loss_ratio < 0, "rules.stop_loss_ratio", "must be between -1 and 0 (exclusive)",
               self.stop_loss_ratio)
        _check(self.initial_take_profit_ratio > 0, "rules.initial_take_profit_ratio", "must be > 0",
               self.initial_take_profit_ratio)
        _check(0 < self.initial_take_profit_fraction <= 1, "rules.initial_take_profit_fraction",
               "must be in (0, 1]", self.initial_take_profit_fraction)
        table = self.dynamic_take_profit
        for i, row in enumerate(table):
            _check(len(row) == 2, f"rules.dynamic_take_profit[{i}]", "expected a pair [min_high_ratio, keep_ratio]",
                   row)
            min_high, keep = row
            _check(min_high > 0, f"rules.dynamic_take_profit[{i}][0]", "min_high_ratio must be > 0", min_high)
            _check(0 < keep <= 1, f"rules.dynamic_take_profit[{i}][1]", "keep_ratio must be in (0, 1]", keep)
            if i:
                _check(min_high > table[i - 1][0], f"rules.dynamic_take_profit[{i}][0]",
                       "min_high_ratio must be strictly ascending", min_high)
        for i, level in enumerate(self.grid_levels):
            _check(0 < level < 1, f"rules.grid_levels[{i}]", "must be in (0, 1)", level)
            if i:
                _check(level < self.grid_levels[i - 1], f"rules.grid_levels[{i}]",
                       "levels must be strictly descending", level)
        _check(self.position_unit > 0 and math.isfinite(self.position_unit), "rules.position_unit",
               "must be > 0 yuan", self.position_unit)
        _check(self.max_position_value >= self.position_unit and math.isfinite(self.max_position_value),
               "rules.max_position_value", f"must be >= position_unit ({self.position_unit})",
               self.max_position_value)


Schedule = tuple[tuple[str, float], ...]


def _check_schedule(key: str, schedule: Schedule) -> None:
    _check(len(schedule) >= 1, key, "needs at least one [from_date, rate] row", schedule)
    previous: dt.date | None = None
    for i, row in enumerate(schedule):
        _check(len(row) == 2, f"{key}[{i}]", "expected a pair [from_date, rate]", row)
        start, rate = row
        try:
            day = dt.date.fromisoformat(str(start))
        except ValueError:
            raise ConfigError(f"{key}[{i}][0]: expected a date like '2023-08-28', got {start!r}") from None
        _check(previous is None or day > previous, f"{key}[{i}][0]", "dates must be strictly ascending", start)
        _check(0 <= rate < 0.01, f"{key}[{i}][1]", "must be in [0, 0.01)", rate)
        previous = day


@dataclass(frozen=True, kw_only=True)
class FeeSettings:
    """Commission both ways (with a minimum); stamp duty on sells and the transfer fee both ways as dated
    schedules of ``(from_date, rate)`` rows: a trade pays the rate of its own trading day."""

    commission_rate: float = market.COMMISSION_RATE
    min_commission: float = market.MIN_COMMISSION
    stamp_duty_schedule: Schedule = market.STAMP_DUTY_SCHEDULE
    transfer_fee_schedule: Schedule = market.TRANSFER_FEE_SCHEDULE

    def __post_init__(self) -> None:
        _check(0 <= self.commission_rate < 0.01, "fees.commission_rate", "must be in [0, 0.01)", self.commission_rate)
        _check(self.min_commission >= 0, "fees.min_commission", "must be >= 0", self.min_commission)
        _check_schedule("fees.stamp_duty_schedule", self.stamp_duty_schedule)
        _check_schedule("fees.transfer_fee_schedule", self.transfer_fee_schedule)


@dataclass(frozen=True, kw_only=True)
class PathSettings:
    """Folders; a relative one is taken from the folder of the config file (else the working folder)."""

    data_dir: str = "data"
    log_dir: str = "logs"
    log_retention_days: int = 14
    journal_retention_days: int = 30
    journal_compact_days: int = 7

    def __post_init__(self) -> None:
        _check(self.data_dir.strip() != "", "paths.data_dir", "must not be empty", self.data_dir)
        _check(self.log_dir.strip() != "", "paths.log_dir", "must not be empty", self.log_dir)
        _check(1 <= self.log_retention_days <= 3650, "paths.log_retention_days", "must be >= 1 and <= 3650",
               self.log_retention_days)
        _check(1 <= self.journal_retention_days <= 3650, "paths.journal_retention_days",
               "must be >= 1 and <= 3650", self.journal_retention_days)
        _check(1 <= self.journal_compact_days <= 3650, "paths.journal_compact_days",
               "must be >= 1 and <= 3650 (days before a session journal is gzipped)", self.journal_compact_days)


@dataclass(frozen=True, kw_only=True)
class QmtSettings:
    account_id: str = ""
    account_type: str = "STOCK"
    qmt_userdata_path: str = ""
    session_id: int = 0

    def __post_init__(self) -> None:
        _check(self.account_type in {"STOCK", "CREDIT"}, "qmt.account_type", "must be 'STOCK' or 'CREDIT'",
               self.account_type)
        _check(0 <= self.session_id < 2**31, "qmt.session_id", "must be >= 0 and < 2**31", self.session_id)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """``miniqmt-lab serve``: loopback by default; another host must be asked for on the command line."""

    server_host: str = "127.0.0.1"
    server_port: int = 8765

    def __post_init__(self) -> None:
        _check(self.server_host.strip() != "", "server.server_host", "must not be empty", self.server_host)
        _check(1 <= self.server_port <= 65535, "server.server_port", "must be in 1..65535", self.server_port)


@dataclass(frozen=True, kw_only=True)
class AlertSettings:
    """Notifications for unattended running, sent through apprise URLs; off while ``alert_urls`` is empty."""

    alert_urls: tuple[str, ...] = ()
    alert_events: tuple[str, ...] = ALERT_EVENTS
    daily_summary_time: str = "15:10"

    def __post_init__(self) -> None:
        for i, url in enumerate(self.alert_urls):
            _check("://" in url, f"alerts.alert_urls[{i}]", "expected an apprise URL such as 'mailto://...'",
                   url)
        for i, event in enumerate(self.alert_events):
            _check(event in ALERT_EVENTS, f"alerts.alert_events[{i}]", f"must be one of {', '.join(ALERT_EVENTS)}",
                   event)
        try:
            dt.time.fromisoformat(self.daily_summary_time)
        except ValueError:
            raise ConfigError(
                f"alerts.daily_summary_time: expected a time like '15:10', got {self.daily_summary_time!r}"
            ) from None


@dataclass(frozen=True, kw_only=True)
class Settings:
    engine: EngineSettings = field(default_factory=EngineSettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    fees: FeeSettings = field(default_factory=FeeSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    qmt: QmtSettings = field(default_factory=QmtSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    config_file: str = field(default="", compare=False)  # the file these settings came from ("": none)

    def __post_init__(self) -> None:
        if not self.engine.simulation:
            q = self.qmt
            _check(q.account_id.strip() != "", "qmt.account_id", "is required when simulation = false", q.account_id)
            _check(q.qmt_userdata_path.strip() != "", "qmt.qmt_userdata_path",
                   "is required when simulation = false (the client's userdata_mini folder)", q.qmt_userdata_path)

    # -- convenience -------------------------------------------------------------------------
    def with_values(self, **flat: Any) -> Settings:
        """A copy with fields changed by flat name (``stop_loss_ratio=-0.05``), validated."""
        return apply_flat(self, flat, source="argument", strict=True)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: section_to_dict(getattr(self, name)) for name in SECTIONS}

    def resolve(self, folder: str) -> Path:
        """A path setting as an absolute path: relative ones from the config file's folder."""
        path = Path(folder).expanduser()
        if not path.is_absolute():
            base = Path(self.config_file).resolve().parent if self.config_file else Path.cwd()
            path = base / path
        return path.resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve(self.paths.data_dir)

    @property
    def log_path(self) -> Path:
        return self.resolve(self.paths.log_dir)

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
    "server": ServerSettings,
    "alerts": AlertSettings,
}
FIELD_SECTION: dict[str, str] = {f.name: sec for sec, cls in SECTIONS.items() for f in fields(cls)}
PAIR_TABLES = {"dynamic_take_profit": (float, float), "stamp_duty_schedule": (str, float),
               "transfer_fee_schedule": (str, float)}


def section_to_dict(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


# -- coercion -----------------------------------------------------------------------------------


def _coerce(key: str, hint: Any, value: Any, strict: bool) -> Any:
    """Turn a value into the field's type or raise ConfigError naming ``key``.

    ``strict`` (TOML and arguments): the value must have the type already (an int is a number).
    Otherwise (environment variables) text is parsed.
    """
    text = value.strip() if isinstance(value, str) and not strict else None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return text.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None:
            try:
                return int(text)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out = float(value)
        elif text is not None:
            try:
                out = float(text)
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
    if get_origin(hint) is tuple:
        if isinstance(value, str) and not strict:
            value = _parse_env_list(key, value)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = get_args(hint)[0]
        return tuple(_coerce(f"{key}[{i}]", inner, v, strict) for i, v in enumerate(value))
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover - programming error


def _coerce_pair_table(key: str, value: Any, kinds: tuple[type, type], strict: bool) -> tuple[tuple[Any, Any], ...]:
    if isinstance(value, str) and not strict:
        value = _parse_env_list(key, value)
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list of pairs, got {value!r}")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, list | tuple) or len(row) != 2:
            raise ConfigError(f"{key}[{i}]: expected a pair, got {row!r}")
        rows.append(tuple(_coerce(f"{key}[{i}][{j}]", kind, row[j], strict) for j, kind in enumerate(kinds)))
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


def coerce_field(section: str, name: str, value: Any, *, strict: bool) -> Any:
    key = f"{section}.{name}"
    if name in PAIR_TABLES:
        return _coerce_pair_table(key, value, PAIR_TABLES[name], strict)
    hints = get_type_hints(SECTIONS[section])
    return _coerce(key, hints[name], value, strict)


# -- building settings ------------------------------------------------------------------------------


def apply_flat(base: Settings, flat: Mapping[str, Any], *, source: str, strict: bool) -> Settings:
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        section = FIELD_SECTION.get(name)
        if section is None:
            raise ConfigError(f"{name}: unknown setting ({source})")
        grouped.setdefault(section, {})[name] = coerce_field(section, name, value, strict=strict)
    return replace_sections(base, grouped)


def replace_sections(base: Settings, grouped: Mapping[str, Mapping[str, Any]]) -> Settings:
    sections = {sec: replace(getattr(base, sec), **vals) for sec, vals in grouped.items()}
    return replace(base, **sections)


def from_mapping(data: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Settings from a parsed TOML document (sections as tables). Unknown keys and wrong types are errors."""
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
            grouped.setdefault(section, {})[name] = coerce_field(section, name, value, strict=True)
    return replace_sections(base, grouped)


__all__ = [
    "AlertSettings",
    "ConfigError",
    "EngineSettings",
    "FeeSettings",
    "PathSettings",
    "QmtSettings",
    "RuleSettings",
    "ServerSettings",
    "Settings",
    "apply_flat",
    "coerce_field",
    "from_mapping",
    "replace_sections",
    "section_to_dict",
]
