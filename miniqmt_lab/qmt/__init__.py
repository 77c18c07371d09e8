"""miniQMT (xtquant) adapters: the live broker and feed, their loader, and the in-process fake client.

Importing this package never imports xtquant: the real package is loaded only when a
``QmtBroker`` connects or a ``QmtFeed`` is first used without a ``modules`` double.
"""

from miniqmt_lab.qmt.broker import QmtBroker
from miniqmt_lab.qmt.fake import FakeMarket, FakeQmt
from miniqmt_lab.qmt.feed import Instrument, QmtFeed

__all__ = ["FakeMarket", "FakeQmt", "Instrument", "QmtBroker", "QmtFeed"]
