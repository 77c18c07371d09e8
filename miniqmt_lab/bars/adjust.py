"""Adjusted prices (复权) for research: charts and signals, never for simulating trades.

Which prices to use for what
----------------------------
* **Raw prices with the actions applied** (``BarStore.query()``, the default): what the exchange printed.
  Backtests and the live engine always trade these; price limits, lots, fees and the ex-rights
  adjustment of holdings (rules, "Real market data") only make sense on them. The bars carry their
  corporate actions in ``bars.attrs["actions"]``, so ``run_backtest(bars)`` applies them.
* **Adjusted prices** (``BarStore.query(adjust="front" | "back")``): the same series with the jumps of
  ex-rights days taken out, for charts, returns, indicators and signals computed over long spans.
  Never trade on them: their levels are not prices anyone could deal at, so limits and fees are wrong,
  and the bars carry no actions (``attrs["actions"]`` is empty, ``attrs["adjust"]`` says which).

How
---
On each ex-date the factor is ``prev_close / ex_rights_price``: ``prev_close`` the stock's last traded
close before the ex-date, ``ex_rights_price`` the kernel's ``ex_rights_price_nb`` (the very price the
rules use as that day's base price). An action counts when the stock has a traded bar before it and a
stored bar on or after it. ``"back"`` (后复权) multiplies every bar by the product of the factors of the
ex-dates on or before it, so a stock's first stored bars keep their raw prices and adding newer data
never changes older adjusted prices. ``"front"`` (前复权) divides that by the product over all the
stock's counted actions, so its latest stored bars keep their raw prices; a newer ex-date moves every
earlier front-adjusted price, as at every data vendor. Both are computed over everything stored for
the stock, so a bar's adjusted price does not depend on the start or end of the query.

Open, high, low and close are scaled by the factor; volume is divided by it (a 10-for-4 bonus makes
every earlier share count as 1.4 shares), so ``price x volume`` and ``amount`` stay as traded. Prices
are not rounded to cents.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from miniqmt_lab.bars.validate import PRICE_COLUMNS, InvalidActionData

Adjust = Literal["front", "back"]
_DAY_SPAN = 1 << 20  # more days than from 1970 to any date the store accepts


def check_adjust(adjust: object) -> Adjust | None:
    if adjust not in (None, "front", "back"):
        raise ValueError(f"adjust must be None, 'front' or 'back', got {adjust!r}")
    return adjust  # type: ignore[return-value]


def adjustment_factors(inputs: pd.DataFrame) -> pd.DataFrame:
    """Per counted action: ``stock_code``, ``ex_date``, ``factor`` (previous close / ex-rights price).

    ``inputs`` holds the actions with ``prev_close`` (the last traded close before the ex-date, missing when
    there is none) and ``last_bar`` (the stock's last stored bar time).
    """
    from miniqmt_lab.rules import ex_rights_price_nb

    counted = inputs[inputs["prev_close"].notna() & (inputs["last_bar"] >= inputs["ex_date"])]
    factors = np.empty(len(counted))
    columns = ("prev_close", "cash_dividend", "bonus_ratio", "rights_ratio", "rights_price")
    values = zip(*(counted[c].to_numpy(dtype=np.float64) for c in columns), strict=True)
    for i, (prev, cash, bonus, rights, rights_price) in enumerate(values):
        reference = ex_rights_price_nb(prev, cash, bonus, rights, rights_price)
        if not reference > 0:
            row = counted.iloc[i]
            raise InvalidActionData(
                f"the action of {row['stock_code']} on {pd.Timestamp(row['ex_date']).date()} leaves no price:"
                f" ex-rights price {reference} from the previous close {prev} (cash_dividend {cash},"
                f" bonus_ratio {bonus}, rights {rights} at {rights_price}); amounts are per share, not per 10 shares"
            )
        factors[i] = prev / reference
    return pd.DataFrame({
        "stock_code": counted["stock_code"].to_numpy(dtype=object),
        "ex_date": counted["ex_date"].to_numpy(),
        "factor": factors,
    })


def adjust_bars(bars: pd.DataFrame, factors: pd.DataFrame, how: Adjust, time_col: str) -> pd.DataFrame:
    """``bars`` (``stock_code`` categorical) with prices scaled and volumes divided by each bar's factor."""
    categories = bars["stock_code"].cat.categories
    bar_code = bars["stock_code"].cat.codes.to_numpy(dtype=np.int64)
    bar_day = bars[time_col].to_numpy().astype("datetime64[D]").astype(np.int64)
    action_code = categories.get_indexer(factors["stock_code"]).astype(np.int64)
    known = action_code >= 0
    action_code = action_code[known]
    action_day = factors["ex_date"].to_numpy().astype("datetime64[D]").astype(np.int64)[known]
    ratio = factors["factor"].to_numpy(dtype=np.float64)[known]
    order = np.lexsort((action_day, action_code))
    action_code, action_day, ratio = action_code[order], action_day[order], ratio[order]
    cumulative = pd.Series(ratio).groupby(action_code).cumprod().to_numpy()

    factor = np.ones(len(bars))
    if len(action_code):
        keys = action_code * _DAY_SPAN + action_day
        before = np.searchsorted(keys, bar_code * _DAY_SPAN + bar_day, side="right") - 1
        own = before >= 0
        own[own] = action_code[before[own]] == bar_code[own]
        factor[own] = cumulative[before[own]]
        if how == "front":
            totals = np.ones(len(categories))
            last_of_code = np.r_[action_code[1:] != action_code[:-1], True]
            totals[action_code[last_of_code]] = cumulative[last_of_code]
            factor /= totals[bar_code]

    scaled = {col: bars[col].to_numpy(dtype=np.float64) * factor for col in PRICE_COLUMNS}
    scaled["volume"] = bars["volume"].to_numpy(dtype=np.float64) / factor
    return pd.DataFrame({col: scaled.get(col, bars[col]) for col in bars.columns}, copy=False)
