"""miniQMT (xtquant) adapters: the live broker and feed, and the loader of xtquant.

Importing this package never imports xtquant: the real package is imported when a ``QmtBroker`` or
``QmtFeed`` is built without a ``modules`` double. The test double lives in
:mod:`miniqmt_lab.xtquant_double`.
"""

from miniqmt_lab.qmt.broker import QmtBroker
from miniqmt_lab.qmt.feed import Instrument, QmtFeed

__all__ = ["Instrument", "QmtBroker", "QmtFeed"]
