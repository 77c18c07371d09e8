"""Settings: defaults, TOML and environment loading, round trip, and every bad value named by key."""

from __future__ import annotations

import pytest

from miniqmt_lab import config
from miniqmt_lab.config import ConfigError, Settings
from miniqmt_lab.errors import MiniQmtError


def test_defaults_are_safe_for_real_money():
    s = Settings()
    assert s.engine.simulation is True
    assert s.engine.auto_trading is False
    assert s.engine.thread_monitor is True
    assert (s.engine.monitor_interval, s.engine.call_timeout, s.engine.position_query_interval) == (3.0, 3.0, 10.0)
    assert (s.engine.sqlite_sync_interval, s.engine.thread_check_interval, s.engine.restart_cooldown) == (
        15.0,
        60.0,
        60.0,
    )
    assert s.rules.stop_loss_ratio == -0.075
    assert (s.rules.initial_take_profit_ratio, s.rules.initial_take_profit_fraction) == (0.06, 0.6)
    assert s.rules.dynamic_take_profit[0] == (0.05, 0.96) and s.rules.dynamic_take_profit[-1] == (0.50, 0.80)
    assert s.rules.grid_levels == (0.93, 0.86)
    assert (s.rules.position_unit, s.rules.max_position_value) == (20000.0, 50000.0)
    assert s.database_path.name == "paper.sqlite"


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().engine.auto_trading = True  # type: ignore[misc]


def test_toml_round_trip(tmp_path):
    s = Settings().with_values(stop_loss_ratio=-0.05, grid_levels=(0.95, 0.9, 0.85), stock_pool=("600000.SH",))
    path = config.save(s, tmp_path / "cfg" / "miniqmt.toml")
    assert config.load(path, environ={}) == s


def test_environment_overrides_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[rules]\nstop_loss_ratio = -0.05\n", encoding="utf-8")
    env = {
        "MINIQMT_STOP_LOSS_RATIO": "-0.04",
        "MINIQMT_AUTO_TRADING": "true",
        "MINIQMT_GRID_LEVELS": "[0.9]",
        "MINIQMT_DYNAMIC_TAKE_PROFIT": "[[0.1, 0.9], [0.2, 0.85]]",
        "PATH": "/usr/bin",
    }
    s = config.load(path, environ=env)
    assert s.rules.stop_loss_ratio == -0.04
    assert s.engine.auto_trading is True
    assert s.rules.grid_levels == (0.9,)
    assert s.rules.dynamic_take_profit == ((0.1, 0.9), (0.2, 0.85))


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nmonitor_interval = 1.5\n", encoding="utf-8")
    assert config.load(environ={"MINIQMT_CONFIG": str(path)}).engine.monitor_interval == 1.5


def test_live_mode_needs_account_and_userdata_path():
    with pytest.raises(ConfigError, match=r"qmt\.account_id: is required when simulation = false"):
        Settings().with_values(simulation=False)
    live = Settings().with_values(simulation=False, account_id="1234567890", qmt_userdata_path=r"D:\QMT\userdata_mini")
    assert live.database_path.name == "live.sqlite"


def test_update_file_creates_and_changes(tmp_path):
    path = tmp_path / "c.toml"
    config.update_file(path, stop_loss_ratio=-0.06)
    config.update_file(path, grid_enabled=False)
    s = config.load(path, environ={})
    assert s.rules.stop_loss_ratio == -0.06 and s.rules.grid_enabled is False


BAD_FILES = [
    ("[rules]\nstop_loss_ratio = 0.0\n", r"rules\.stop_loss_ratio: must be between -1 and 0"),
    ("[rules]\nstop_loss_ratio = 0.05\n", r"rules\.stop_loss_ratio"),
    ("[rules]\nstop_loss_ratio = 'x'\n", r"rules\.stop_loss_ratio: expected a number"),
    ("[rules]\ninitial_take_profit_fraction = 1.5\n", r"rules\.initial_take_profit_fraction: must be in \(0, 1\]"),
    ("[rules]\ninitial_take_profit_fraction = 0\n", r"rules\.initial_take_profit_fraction"),
    ("[rules]\ninitial_take_profit_ratio = -0.1\n", r"rules\.initial_take_profit_ratio: must be > 0"),
    (
        "[rules]\ndynamic_take_profit = [[0.1, 0.9], [0.05, 0.95]]\n",
        r"rules\.dynamic_take_profit\[1\]\[0\]: min_high_ratio must be strictly ascending",
    ),
    ("[rules]\ndynamic_take_profit = [[0.1, 1.2]]\n", r"rules\.dynamic_take_profit\[0\]\[1\]: keep_ratio"),
    ("[rules]\ndynamic_take_profit = [[0.1]]\n", r"rules\.dynamic_take_profit\[0\]: expected a pair"),
    ("[rules]\ngrid_levels = [0.86, 0.93]\n", r"rules\.grid_levels\[1\]: levels must be strictly descending"),
    ("[rules]\ngrid_levels = [1.1]\n", r"rules\.grid_levels\[0\]: must be in \(0, 1\)"),
    ("[rules]\ngrid_enabled = 'maybe'\n", r"rules\.grid_enabled: expected true or false"),
    ("[rules]\nposition_unit = -1\n", r"rules\.position_unit: must be > 0"),
    ("[rules]\nmax_position_value = 100\n", r"rules\.max_position_value: must be >= position_unit"),
    ("[rules]\nstop_los_ratio = -0.1\n", r"rules\.stop_los_ratio: unknown setting"),
    ("[rulez]\nstop_loss_ratio = -0.1\n", r"rulez: unknown section"),
    ("rules = 3\n", r"rules: expected a table"),
    ("[engine]\nmonitor_interval = 0\n", r"engine\.monitor_interval: must be > 0 and <= 86400 seconds"),
    ("[engine]\nsimulation_balance = -5\n", r"engine\.simulation_balance: must be > 0"),
    ("[engine]\nstock_pool = ['600000.SH', '999999.SH']\n", r"engine\.stock_pool\[1\]: invalid stock code"),
    ("[engine]\nentry = 'rsi'\n", r"engine\.entry: must be 'macd' or 'none'"),
    ("[fees]\ncommission_rate = 0.5\n", r"fees\.commission_rate: must be in \[0, 0\.01\)"),
    ("[paths]\nlog_retention_days = 0\n", r"paths\.log_retention_days: must be >= 1"),
    ("[paths]\nlog_retention_days = 1.5\n", r"paths\.log_retention_days: expected an integer"),
    ("[paths]\njournal_retention_days = 0\n", r"paths\.journal_retention_days: must be >= 1"),
    ("[paths]\njournal_compact_days = 0\n", r"paths\.journal_compact_days: must be >= 1"),
    ('[engine]\nholidays = ["2027-02-30"]\n', r'engine\.holidays\[0\]: expected a date as a string such as "2027'),
    ("[engine]\nholidays = [2027-02-08]\n", r"engine\.holidays\[0\]: expected a string"),
    ("[qmt]\naccount_type = 'FUTURE'\n", r"qmt\.account_type: must be 'STOCK' or 'CREDIT'"),
    ("[engine]\nsimulation = false\n", r"qmt\.account_id: is required"),
    ("[rules\nstop_loss_ratio = -0.1\n", r"not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_config_file_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        config.load(path, environ={})
    assert isinstance(info.value, MiniQmtError)
    assert "\n" not in str(info.value).strip() or "TOML" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MINIQMT_STOP_LOSS": "-0.1"}, r"MINIQMT_STOP_LOSS: unknown setting"),
        ({"MINIQMT_AUTO_TRADING": "perhaps"}, r"engine\.auto_trading: expected true or false"),
        ({"MINIQMT_MONITOR_INTERVAL": "nan"}, r"engine\.monitor_interval: must be a finite number"),
        ({"MINIQMT_GRID_LEVELS": "[0.9, "}, r"rules\.grid_levels: expected a TOML array"),
        ({"MINIQMT_SESSION_ID": "abc"}, r"qmt\.session_id: expected an integer"),
    ],
)
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        config.load(environ=env)


def test_with_values_rejects_unknown_names():
    with pytest.raises(ConfigError, match="nonsense: unknown setting"):
        Settings().with_values(nonsense=1)


# -- sections validate themselves; TOML types are strict --------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: config.RuleSettings(stop_loss_ratio=0.5), r"rules\.stop_loss_ratio: must be between -1 and 0"),
        (lambda: config.EngineSettings(call_timeout=1e308), r"engine\.call_timeout: must be > 0 and <= 600"),
        (lambda: config.EngineSettings(monitor_interval=float("inf")), r"engine\.monitor_interval"),
        (lambda: config.FeeSettings(stamp_duty_schedule=(("2023-08-28", 0.0005), ("2023-01-01", 0.001))),
         r"fees\.stamp_duty_schedule\[1\]\[0\]: dates must be strictly ascending"),
        (lambda: config.ServerSettings(server_port=70000), r"server\.server_port"),
        (lambda: config.AlertSettings(alert_events=("lunch",)), r"alerts\.alert_events\[0\]"),
    ],
)
def test_every_section_validates_on_construction(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[engine]\nauto_trading = 'yes'\n", r"engine\.auto_trading: expected true or false"),
        ("[rules]\nstop_loss_ratio = '-0.05'\n", r"rules\.stop_loss_ratio: expected a number"),
        ("[engine]\ncall_timeout = 1e308\n", r"engine\.call_timeout: must be > 0 and <= 600"),
        ("[fees]\nstamp_duty_schedule = [['2023-13-01', 0.001]]\n", r"expected a date like"),
    ],
)
def test_toml_values_of_the_wrong_type_fail(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        config.load(path, environ={})


def test_environment_text_is_still_parsed():
    s = config.load(environ={"MINIQMT_AUTO_TRADING": "yes", "MINIQMT_STOP_LOSS_RATIO": "-0.05"})
    assert s.engine.auto_trading is True and s.rules.stop_loss_ratio == -0.05


# -- encodings --------------------------------------------------------------------------------------------


def test_utf8_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + "# 配置\n[rules]\nstop_loss_ratio = -0.05\n".encode())
    assert config.load(path, environ={}).rules.stop_loss_ratio == -0.05


def test_a_gbk_file_is_one_line_naming_the_encoding(tmp_path):
    path = tmp_path / "gbk.toml"
    path.write_bytes("# 止损设置\n[rules]\nstop_loss_ratio = -0.05\n".encode("gbk"))
    with pytest.raises(ConfigError, match=r"gbk\.toml: not UTF-8 \(it looks like GBK.*save it as UTF-8") as info:
        config.load(path, environ={})
    assert "\n" not in str(info.value)


def test_a_binary_file_is_refused(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\x00\x01\x02config")
    with pytest.raises(ConfigError, match=r"binary\.toml: not a text file"):
        config.load(path, environ={})


# -- saving keeps the user's file; relative folders follow the file --------------------------------------------


def test_saving_edits_the_file_in_place_keeping_comments(tmp_path):
    path = tmp_path / "config.toml"
    original = (
        "# my settings\n\n[rules]\n# cut losses early\nstop_loss_ratio = -0.05  # tighter than default\n"
        "grid_enabled = true\n\n[engine]\nauto_trading = false  # never on at start\n"
    )
    path.write_text(original, encoding="utf-8")
    config.update_file(path, stop_loss_ratio=-0.06, initial_take_profit_ratio=0.08)
    text = path.read_text(encoding="utf-8")
    for comment in ("# my settings", "# cut losses early", "# tighter than default", "# never on at start"):
        assert comment in text
    assert "stop_loss_ratio = -0.06" in text and "initial_take_profit_ratio = 0.08" in text
    loaded = config.load(path, environ={})
    assert (loaded.rules.stop_loss_ratio, loaded.rules.initial_take_profit_ratio) == (-0.06, 0.08)
    with pytest.raises(ConfigError, match=r"rules\.stop_loss_ratio"):
        config.update_file(path, stop_loss_ratio=0.5)
    assert path.read_text(encoding="utf-8") == text  # a refused change leaves the file as it was


def test_relative_folders_are_taken_from_the_config_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "qmt"
    folder.mkdir()
    path = folder / "config.toml"
    path.write_text("[paths]\ndata_dir = 'data'\nlog_dir = 'logs'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # Jupyter started from another folder
    s = config.load(path, environ={})
    assert s.database_path == folder / "data" / "paper.sqlite"
    assert s.log_path == folder / "logs"
