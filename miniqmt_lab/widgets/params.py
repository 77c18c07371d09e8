"""Sliders for the rule parameters, bound two-way to a state object's ``params`` dict.

``params`` holds flat ``RuleSettings`` field names (``stop_loss_ratio``, ``grid_levels``...), the
form the backtest's ``params=`` and ``config.update_file`` take. The form holds no values of its
own: it writes each slider move into ``state.params`` and re-reads ``state.params`` on change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import traitlets

from miniqmt_lab.config import RuleSettings, Settings
from miniqmt_lab.widgets._binding import Guard


@dataclass(frozen=True)
class ParamSpec:
    name: str
    label: str
    low: float
    high: float
    step: float
    fmt: str
    sweep: tuple[float, ...]  # default values offered for a sweep axis


SCALAR_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("stop_loss_ratio", "stop loss", -0.30, -0.01, 0.005, ".3f", (-0.05, -0.075, -0.10, -0.125)),
    ParamSpec("initial_take_profit_ratio", "first TP at", 0.01, 0.50, 0.005, ".3f", (0.04, 0.06, 0.08, 0.10)),
    ParamSpec("initial_take_profit_fraction", "first TP sells", 0.05, 1.0, 0.05, ".2f", (0.4, 0.6, 0.8, 1.0)),
    ParamSpec("position_unit", "position unit ¥", 1_000, 200_000, 1_000, ",.0f", (10_000, 20_000, 30_000)),
    ParamSpec("max_position_value", "max position ¥", 1_000, 1_000_000, 5_000, ",.0f", (30_000, 50_000, 80_000)),
)
SWEEPABLE = {spec.name: spec for spec in SCALAR_PARAMS}
GRID_LEVEL_RANGE = (0.50, 0.99, 0.01)


def rule_values(rules: RuleSettings) -> dict[str, Any]:
    """The flat parameters the form edits, read from settings."""
    return {
        **{spec.name: float(getattr(rules, spec.name)) for spec in SCALAR_PARAMS},
        "grid_enabled": bool(rules.grid_enabled),
        "grid_levels": tuple(float(x) for x in rules.grid_levels),
        "price_limits": bool(rules.price_limits),
    }


def validated_rules(base: Settings, params: dict[str, Any]) -> RuleSettings:
    """``base`` with ``params`` applied; raises ``ConfigError`` naming the bad key."""
    return base.with_values(**params).rules


class RuleParamsForm(w.VBox):
    """One slider per rule parameter (one per grid level), two checkboxes, bound to ``state.params``."""

    def __init__(self, state: traitlets.HasTraits) -> None:
        self.state = state
        self._guard = Guard()
        self.sliders: dict[str, w.FloatSlider] = {}
        for spec in SCALAR_PARAMS:
            slider = w.FloatSlider(
                min=spec.low, max=spec.high, step=spec.step, description=spec.label, readout_format=spec.fmt,
                continuous_update=False, style={"description_width": "110px"}, layout=w.Layout(width="420px"),
            )
            slider.add_class(f"mq-param-{spec.name}")
            slider.observe(self._slider_moved(spec.name), names="value")
            self.sliders[spec.name] = slider
        low, high, step = GRID_LEVEL_RANGE
        self.grid_sliders = [
            w.FloatSlider(
                min=low, max=high, step=step, description=f"grid level {i + 1}", readout_format=".2f",
                continuous_update=False, style={"description_width": "110px"}, layout=w.Layout(width="420px"),
            )
            for i in range(len(state.params.get("grid_levels", ())))
        ]
        for slider in self.grid_sliders:
            slider.observe(self._grid_moved, names="value")
        self.grid_enabled = w.Checkbox(description="grid buys")
        self.price_limits = w.Checkbox(description="price limits")
        self.grid_enabled.observe(self._flag_moved("grid_enabled"), names="value")
        self.price_limits.observe(self._flag_moved("price_limits"), names="value")
        self._show(state.params)
        state.observe(self._params_changed, names="params")
        super().__init__(
            [*self.sliders.values(), *self.grid_sliders, w.HBox([self.grid_enabled, self.price_limits])]
        )
        self.add_class("mq-rule-params")

    # view → model
    def _set(self, name: str, value: Any) -> None:
        if self._guard:
            return
        self.state.params = {**self.state.params, name: value}

    def _slider_moved(self, name: str) -> Any:
        return lambda change: self._set(name, float(change["new"]))

    def _flag_moved(self, name: str) -> Any:
        return lambda change: self._set(name, bool(change["new"]))

    def _grid_moved(self, change: dict[str, Any]) -> None:
        self._set("grid_levels", tuple(round(s.value, 4) for s in self.grid_sliders))

    # model → view
    def _params_changed(self, change: dict[str, Any]) -> None:
        self._show(change["new"])

    def _show(self, params: dict[str, Any]) -> None:
        with self._guard:
            for name, slider in self.sliders.items():
                if name in params:
                    # a config value beyond the slider's range widens it instead of being clipped
                    slider.min = min(slider.min, params[name])
                    slider.max = max(slider.max, params[name])
                    slider.value = params[name]
            for slider, level in zip(self.grid_sliders, params.get("grid_levels", ()), strict=False):
                slider.value = level
            self.grid_enabled.value = bool(params.get("grid_enabled", True))
            self.price_limits.value = bool(params.get("price_limits", True))

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            self.state.unobserve(self._params_changed, names="params")
        super().close()
