"""Request and reply bodies of the API (pydantic): unknown fields are refused, so a typo is a 422
naming the field rather than a setting silently ignored."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model, model_validator

from miniqmt_lab.config import RuleSettings
from miniqmt_lab.schema import Side, TradingState


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Confirmable(Body):
    confirm: StrictBool = Field(False, description="required true on a LIVE engine for calls that can trade")


class AutoTrading(Confirmable):
    on: StrictBool


class TradingStateChange(Confirmable):
    state: TradingState
    reason: str = Field("", max_length=500)


class OrderPlacement(Confirmable):
    side: Side
    stock_code: str = Field(min_length=1, max_length=32, examples=["600000.SH"])
    volume: int | None = Field(None, gt=0, description="shares; a buy may give amount instead")
    amount: float | None = Field(None, gt=0, description="buy: yuan to spend, rounded down to whole lots")
    price: float | None = Field(None, gt=0, description="limit price; none: the last price the feed sent")

    @model_validator(mode="after")
    def _sized(self) -> OrderPlacement:
        if self.side is Side.SELL and self.amount is not None:
            raise ValueError("amount: a sell gives a volume (shares), not an amount")
        if self.volume is None and self.amount is None:
            either = " or an amount (yuan)" if self.side is Side.BUY else ""
            raise ValueError(f"volume: give a volume (shares){either}")
        if self.volume is not None and self.amount is not None:
            raise ValueError("amount: give a volume or an amount, not both")
        return self


def _optional_rules() -> dict[str, Any]:
    return {name: (hint | None, None) for name, hint in typing.get_type_hints(RuleSettings).items()}


RulesChange = create_model("RulesChange", __base__=Confirmable, **_optional_rules())
"""Any fields of ``[rules]`` (``RuleSettings``), by their names in the config file."""


class Done(BaseModel):
    ok: bool = True
    version: int
    running: bool


class OrderPlaced(Done):
    order_id: str


class VersionReply(BaseModel):
    version: int
    running: bool
    mode: Literal["paper", "live"]
    epoch: str


class RecordsReply(BaseModel):
    version: int
    epoch: str
    rows: list[dict[str, Any]]
    next: int = Field(description="pass as ?since= on the next poll")
    last: int = Field(description="the last seq read; pass as ?since= at once when more is true")
    more: bool


class RulesReply(BaseModel):
    rules: dict[str, Any]
    pending: dict[str, Any] | None = Field(description="rules saved and applied at the next start")
    config_file: str | None


class ErrorReply(BaseModel):
    error: str
    message: str


__all__ = [
    "AutoTrading",
    "Confirmable",
    "Done",
    "ErrorReply",
    "OrderPlaced",
    "OrderPlacement",
    "RecordsReply",
    "RulesChange",
    "RulesReply",
    "TradingStateChange",
    "VersionReply",
]
