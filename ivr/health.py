"""/healthz for load balancers: 200 when the app can reach its database."""

from __future__ import annotations

import logging

from flask import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from ivr.services import services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.route("/healthz", methods=["GET", "POST", "HEAD"])
def healthz():
    try:
        services().store.ping()
    except SQLAlchemyError as error:
        log.error("health check: database unreachable: %s", type(error).__name__)
        return "database unreachable\n", 503, {"Content-Type": "text/plain"}
    return "ok\n", 200, {"Content-Type": "text/plain"}
