"""A test double of xtquant (the miniQMT SDK): an in-process client with the real names, return
codes, callback order and the real SDK's awkward behaviours (``shared/spec/xtquant.md``), so the
QMT adapters run and are tested without Windows or a broker.

Nothing here is used by live trading: pass a :class:`FakeQmt` as ``modules`` to ``QmtBroker`` /
``QmtFeed`` in tests and demos.
"""

from miniqmt_lab.xtquant_double.client import FakeQmt
from miniqmt_lab.xtquant_double.market import FakeMarket
from miniqmt_lab.xtquant_double.xtdata import CLIENT_DOWN_MESSAGE, FakeXtData
from miniqmt_lab.xtquant_double.xttrader import FakeXtQuantTrader
from miniqmt_lab.xtquant_double.xttype import XtConstant, XtQuantTraderCallback

__all__ = [
    "CLIENT_DOWN_MESSAGE",
    "FakeMarket",
    "FakeQmt",
    "FakeXtData",
    "FakeXtQuantTrader",
    "XtConstant",
    "XtQuantTraderCallback",
]
