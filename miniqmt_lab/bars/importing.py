"""Reading vendor files into the store's layouts: headers, units, codes from file names, skipped codes.

Bar files are recognised by their header:

* the store's own layout: ``stock_code, stock_name, date`` (``time`` for minute bars), ``open, high, low,
  close, volume`` (shares), ``amount`` (yuan); ``code``/``name`` are accepted for the first two;
* Chinese headers: ``日期``, ``股票代码``/``代码``, ``名称``, ``开盘价``/``开盘``, ``最高价``/``最高``,
  ``最低价``/``最低``, ``收盘价``/``收盘``, ``成交量``, ``成交额``. The unit of ``成交量`` is read from the
  header (``成交量(手)``, ``成交量(股)``), else from ``成交额`` (yuan per share must come out within the bar's
  prices), else it must be given as ``volume_unit=``;
* tushare's daily files: ``ts_code, trade_date, open, high, low, close, vol`` (lots of 100 shares),
  ``amount`` (thousand yuan); other columns (``pre_close``, ``pct_chg``...) are ignored.

After conversion, wherever a row has both, ``amount / (volume x close)`` must be near 1; a file whose
units disagree is refused rather than stored 100 times off. A file without a code column takes its
code from ``stock_code=`` or from its name (``600000.SH.csv``, ``sh600000.csv``, ``SZ#000001.txt``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from miniqmt_lab.bars.tables import validate_actions, validate_instruments
from miniqmt_lab.bars.validate import (
    InvalidBarData,
    OnInvalid,
    SkippedRows,
    normalize_codes,
    numeric_column,
    time_column,
    validate_bars,
)

VolumeUnit = Literal["shares", "lots"]
_UNIT_SCALE = {"股": 1.0, "shares": 1.0, "手": 100.0, "lots": 100.0,
               "元": 1.0, "千元": 1e3, "万元": 1e4, "亿元": 1e8}
_UNIT_IN_HEADER = re.compile(r"^(.*?)\s*[(（]\s*(.*?)\s*[)）]\s*$")
_FILE_CODE = re.compile(
    r"(?i)(?<![0-9a-z])(?:(sh|sz|bj)[#._-]?)?([0-9]{6})(?:[._-]?(sh|sz|bj|xshg|xshe))?(?![0-9a-z])"
)
_EXCHANGE_OF_SUFFIX = {"XSHG": "SH", "XSHE": "SZ"}
_BAR_FILE_SUFFIXES = (".csv", ".txt", ".parquet")

_BAR_ALIASES = {
    "stock_code": ("stock_code", "code", "ts_code", "股票代码", "代码", "证券代码"),
    "stock_name": ("stock_name", "name", "名称", "股票名称", "证券名称", "股票简称", "证券简称"),
    "date": ("date", "trade_date", "日期", "交易日期"),
    "time": ("time", "datetime", "trade_time", "时间", "交易时间"),
    "open": ("open", "开盘价", "开盘"),
    "high": ("high", "最高价", "最高"),
    "low": ("low", "最低价", "最低"),
    "close": ("close", "收盘价", "收盘"),
    "volume": ("volume", "vol", "成交量"),
    "amount": ("amount", "成交额", "成交金额"),
}
ACTION_ALIASES = {
    "stock_code": ("stock_code", "code", "ts_code", "股票代码", "代码", "证券代码"),
    "ex_date": ("ex_date", "除权除息日", "除权日"),
    "cash_dividend": ("cash_dividend", "cash_div_tax", "interest"),
    "bonus_ratio": ("bonus_ratio", "stk_div"),
    "rights_ratio": ("rights_ratio", "allotnum"),
    "rights_price": ("rights_price", "allotprice"),
}
INSTRUMENT_ALIASES = {
    "stock_code": ("stock_code", "code", "ts_code", "股票代码", "代码", "证券代码", "instrumentid"),
    "stock_name": ("stock_name", "name", "名称", "股票名称", "证券名称", "股票简称", "证券简称", "instrumentname"),
    "listing_date": ("listing_date", "list_date", "上市日期", "opendate"),
}


@dataclass(frozen=True)
class ImportReport:
    """What an import stored and what it left out.

    ``rows``: rows written (after duplicates within the input collapsed); ``skipped``: rows left out by
    ``on_invalid="skip"``, grouped by reason with example codes; ``files``: the files read.
    """

    rows: int
    skipped: tuple[SkippedRows, ...] = ()
    files: tuple[str, ...] = field(default=())

    @property
    def rows_skipped(self) -> int:
        return sum(s.rows for s in self.skipped)

    def __str__(self) -> str:
        lines = [f"stored {self.rows} row(s) from {len(self.files)} file(s)"]
        lines += [f"skipped {s.rows} row(s): {s.reason} (e.g. {', '.join(s.codes)})" for s in self.skipped]
        return "\n".join(lines)


def merge_skipped(groups: Iterable[SkippedRows]) -> tuple[SkippedRows, ...]:
    merged: dict[str, SkippedRows] = {}
    for g in groups:
        seen = merged.get(g.reason)
        if seen is None:
            merged[g.reason] = g
        else:
            codes = tuple(dict.fromkeys((*seen.codes, *g.codes)))[:5]
            merged[g.reason] = SkippedRows(g.reason, seen.rows + g.rows, codes)
    return tuple(merged.values())


# -- reading files --------------------------------------------------------------------------------------


def read_table(path: Path, *, encoding: str | None = None, text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV (UTF-8, else GB18030, the Chinese Windows default) or Parquet file as a frame.

    The columns named in ``text_columns`` (under any header spelling) are read as text, so that a code
    like 000001 keeps its zeros.
    """
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if path.suffix.lower() == ".parquet":
        with contextlib.closing(duckdb.connect(":memory:")) as con:
            try:
                return con.execute("SELECT * FROM read_parquet(?)", [source]).df()
            except duckdb.Error as exc:
                raise InvalidBarData(f"{source}: not a Parquet file the importer can read ({exc})") from None
    wanted = {_header_key(k)[0] for k in text_columns}
    for tried in [encoding] if encoding else ["utf-8-sig", "gb18030"]:
        try:
            sep = header_separator(path, tried)
            header = pd.read_csv(path, nrows=0, encoding=tried, sep=sep)
            as_text = {c: str for c in header.columns if _header_key(str(c))[0] in wanted}
            return pd.read_csv(path, dtype=as_text, encoding=tried, sep=sep)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise InvalidBarData(f"{source}: the file is empty") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise InvalidBarData(f"{source}: not a CSV file the importer can read ({exc})") from None
    raise InvalidBarData(f"{source}: neither UTF-8 nor GB18030 text: pass encoding=")


def header_separator(path: Path, encoding: str) -> str:
    """Comma, tab or semicolon, whichever the header line uses."""
    with path.open(encoding=encoding) as f:
        line = f.readline()
    return max((",", "\t", ";"), key=line.count)


def _header_key(name: str) -> tuple[str, str | None]:
    """(lower-case header without a unit, the unit in parentheses or None)."""
    text = str(name).strip().lstrip("\ufeff")
    unit = None
    if m := _UNIT_IN_HEADER.match(text):
        text, unit = m.group(1), m.group(2)
    return text.lower().replace(" ", ""), unit


def rename_columns(
    raw: pd.DataFrame, aliases: dict[str, tuple[str, ...]], source: str
) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """``raw`` with its recognised columns under their store names, unknown ones dropped; and the unit
    each kept header carried."""
    found: dict[str, str] = {}
    units: dict[str, str | None] = {}
    keys = {col: _header_key(str(col)) for col in raw.columns}
    for target, names in aliases.items():
        column = next((col for name in names for col, (key, _) in keys.items() if key == name.lower()), None)
        if column is not None:
            found[target] = column
            units[target] = keys[column][1]
    if not found:
        raise InvalidBarData(f"{source}: no column is recognised (header {list(raw.columns)})")
    frame = raw[list(found.values())].copy()
    frame.columns = list(found)
    return frame, units


# -- bars -----------------------------------------------------------------------------------------------


def code_from_file_name(path: Path) -> str:
    """The stock code in a per-stock file's name (``600000.SH.csv``, ``sh600000.csv``, ``SZ#000001.txt``)."""
    stem = path.name
    for suffix in _BAR_FILE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    found = {(m.group(1) or "", m.group(2), m.group(3) or "") for m in _FILE_CODE.finditer(stem)}
    if len(found) != 1:
        raise InvalidBarData(
            f"{path}: the file has no stock code column and its name does not say which stock it holds:"
            " pass stock_code=, or name the file like 600000.SH.csv"
        )
    prefix, digits, suffix = found.pop()
    exchange = (prefix or _EXCHANGE_OF_SUFFIX.get(suffix.upper(), suffix)).upper()
    return f"{digits}.{exchange}" if exchange else digits


def bars_from_table(
    raw: pd.DataFrame,
    *,
    freq: str,
    source: str,
    stock_code: str | None = None,
    volume_unit: VolumeUnit | None = None,
) -> pd.DataFrame:
    """A vendor frame in the store's long layout: columns renamed, units converted to shares and yuan,
    the code filled in for a per-stock file. Values are checked later by ``validate_bars``."""
    frame, units = rename_columns(raw, _BAR_ALIASES, source)
    t = time_column(freq)
    other = "date" if t == "time" else "time"
    if t not in frame.columns and other in frame.columns:
        frame = frame.rename(columns={other: t})
    tushare = any(_header_key(str(c))[0] in ("ts_code", "vol") for c in raw.columns)
    chinese = any(re.search(r"[\u4e00-\u9fff]", str(c)) for c in raw.columns)
    if "stock_code" not in frame.columns:
        if stock_code is None:
            raise InvalidBarData(f"{source}: no stock code column: pass stock_code=")
        frame.insert(0, "stock_code", stock_code)
    elif stock_code is not None:
        _check_same_code(frame, stock_code, source)
    if "volume" in frame.columns:
        scale = _volume_scale(frame, units, volume_unit=volume_unit, tushare=tushare, chinese=chinese, source=source)
        frame["volume"] = numeric_column(frame, "volume", source) * scale
    if "amount" in frame.columns:
        frame["amount"] = numeric_column(frame, "amount", source) * (1e3 if tushare else _amount_scale(units))
    _check_units(frame, source)
    return frame


def _amount_scale(units: dict[str, str | None]) -> float:
    return _UNIT_SCALE.get(units.get("amount") or "元", 1.0)


def _check_same_code(frame: pd.DataFrame, stock_code: str, source: str) -> None:
    from miniqmt_lab.market import normalize_code

    wanted = normalize_code(stock_code)
    codes, _, _ = normalize_codes(frame["stock_code"], source=source, on_invalid="skip")
    if any(c != wanted for c in pd.unique(codes)):
        raise InvalidBarData(f"{source}: stock_code={stock_code!r} but the file's code column holds other codes")


def _traded_ratio(frame: pd.DataFrame, amount_scale: float = 1.0) -> float | None:
    """Median of amount / (volume x close) over rows that have all three, or None."""
    if not {"volume", "amount", "close"} <= set(frame.columns):
        return None
    volume, amount, close = (pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
                             for c in ("volume", "amount", "close"))
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = (volume > 0) & (amount > 0) & (close > 0)
        if not usable.any():
            return None
        return float(np.median(amount[usable] * amount_scale / (volume[usable] * close[usable])))


def _volume_scale(
    frame: pd.DataFrame,
    units: dict[str, str | None],
    *,
    volume_unit: VolumeUnit | None,
    tushare: bool,
    chinese: bool,
    source: str,
) -> float:
    if volume_unit is not None:
        if volume_unit not in ("shares", "lots"):
            raise ValueError(f"volume_unit must be 'shares' or 'lots', got {volume_unit!r}")
        return _UNIT_SCALE[volume_unit]
    if tushare:
        return 100.0
    declared = units.get("volume")
    if declared in _UNIT_SCALE:
        return _UNIT_SCALE[declared]
    if not chinese:
        return 1.0
    ratio = _traded_ratio(frame, _amount_scale(units))
    if ratio is not None and 0.5 <= ratio <= 2.0:
        return 1.0
    if ratio is not None and 50.0 <= ratio <= 200.0:
        return 100.0
    raise InvalidBarData(
        f"{source}: cannot tell whether 成交量 counts shares or lots (手)"
        + ("" if ratio is None else f" (成交额 / (成交量 x 收盘) is {ratio:.3g})")
        + ": pass volume_unit='shares' or volume_unit='lots'"
    )


def _check_units(frame: pd.DataFrame, source: str) -> None:
    ratio = _traded_ratio(frame)
    if ratio is not None and not 0.5 <= ratio <= 2.0:
        guess = " (volume looks like lots of 100 shares: pass volume_unit='lots')" if 50 <= ratio <= 200 else ""
        raise InvalidBarData(
            f"{source}: amount and volume disagree: amount / (volume x close) is {ratio:.3g} where a traded"
            f" row gives about 1 (volume in shares, amount in yuan){guess}"
        )


def screen_codes(
    frame: pd.DataFrame, *, source: str, on_invalid: OnInvalid
) -> tuple[pd.DataFrame, list[SkippedRows]]:
    """``frame`` without the rows whose code is refused (``on_invalid="skip"``), or the first refusal raised."""
    _, keep, skipped = normalize_codes(frame["stock_code"], source=source, on_invalid=on_invalid)
    return (frame if keep.all() else frame[keep]), skipped


def bar_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files of a bulk import: files as given, folders by their CSV, TXT and Parquet files (sorted)."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _BAR_FILE_SUFFIXES)
        else:
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no bar files (.csv, .txt, .parquet) in {[str(p) for p in items]}")
    return files


def load_bar_file(
    path: Path,
    *,
    freq: str,
    stock_code: str | None = None,
    date_format: str | None = None,
    volume_unit: VolumeUnit | None = None,
    encoding: str | None = None,
    on_invalid: OnInvalid = "raise",
) -> tuple[pd.DataFrame, list[SkippedRows]]:
    """The validated bars of one file and the rows it skipped; every refusal names the file."""
    source = str(path)
    text = (*_BAR_ALIASES["stock_code"], *_BAR_ALIASES["date"], *_BAR_ALIASES["time"])
    raw = read_table(path, encoding=encoding, text_columns=text)
    if stock_code is None and not _has_any(raw, _BAR_ALIASES["stock_code"]):
        stock_code = code_from_file_name(path)
    frame = bars_from_table(raw, freq=freq, source=source, stock_code=stock_code, volume_unit=volume_unit)
    frame, skipped = screen_codes(frame, source=source, on_invalid=on_invalid)
    return validate_bars(frame, freq, source=source, date_format=date_format), skipped


def load_action_file(
    path: Path, *, date_format: str | None = None, encoding: str | None = None, on_invalid: OnInvalid = "raise"
) -> tuple[pd.DataFrame, list[SkippedRows]]:
    """The validated corporate actions of one file: the store's columns, tushare's ``dividend`` table
    (``ts_code, ex_date, cash_div_tax, stk_div``; only rows whose ``div_proc`` is 实施, carried out) or
    xtdata's ``get_divid_factors`` fields (``interest``, ``stockBonus`` + ``stockGift``, ``allotNum``,
    ``allotPrice``) next to ``stock_code`` and ``ex_date``."""
    source = str(path)
    raw = read_table(path, encoding=encoding, text_columns=(*ACTION_ALIASES["stock_code"], *ACTION_ALIASES["ex_date"]))
    keys = {_header_key(str(c))[0]: c for c in raw.columns}
    if "div_proc" in keys:
        raw = raw[raw[keys["div_proc"]].astype(str).str.strip().eq("实施")]
    frame, _ = rename_columns(raw, ACTION_ALIASES, source)
    gifts = [keys[k] for k in ("stockbonus", "stockgift") if k in keys]
    if gifts and "bonus_ratio" not in frame.columns:
        frame["bonus_ratio"] = sum(pd.to_numeric(raw[c], errors="coerce").fillna(0.0) for c in gifts)
    if "stock_code" in frame.columns:
        frame, skipped = screen_codes(frame, source=source, on_invalid=on_invalid)
    else:
        skipped = []
    return validate_actions(frame, source=source, date_format=date_format), skipped


def load_instrument_file(
    path: Path, *, date_format: str | None = None, encoding: str | None = None, on_invalid: OnInvalid = "raise"
) -> tuple[pd.DataFrame, list[SkippedRows]]:
    """The validated instruments of one file: the store's columns, tushare's ``stock_basic`` (``ts_code,
    name, list_date``), xtdata's ``InstrumentID, InstrumentName, OpenDate`` or Chinese headers (代码,
    名称, 上市日期)."""
    source = str(path)
    raw = read_table(path, encoding=encoding, text_columns=INSTRUMENT_ALIASES["stock_code"])
    frame, _ = rename_columns(raw, INSTRUMENT_ALIASES, source)
    if "stock_code" in frame.columns:
        frame, skipped = screen_codes(frame, source=source, on_invalid=on_invalid)
    else:
        skipped = []
    return validate_instruments(frame, source=source, date_format=date_format), skipped


def _has_any(raw: pd.DataFrame, names: Iterable[str]) -> bool:
    keys = {_header_key(str(c))[0] for c in raw.columns}
    return any(n.lower() in keys for n in names)
