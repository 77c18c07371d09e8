"""The engine as a local service: an HTTP API and a web page beside the engine's threads, panels that
attach from any notebook (:class:`EngineClient`), and alerts for unattended running.

``miniqmt-lab serve --config PATH`` or ``miniqmt-lab serve --demo`` runs it. Importing this package
imports neither FastAPI nor uvicorn nor apprise: the app (:mod:`~miniqmt_lab.service.app`), the
server (:mod:`~miniqmt_lab.service.server`) and the alerts (:mod:`~miniqmt_lab.service.alerts`)
import them when used.
"""

from miniqmt_lab.service.client import EngineClient
from miniqmt_lab.service.errors import ConfirmationRequired, ServiceError, Unauthorized

__all__ = ["ConfirmationRequired", "EngineClient", "ServiceError", "Unauthorized"]
