"""/healthz for load balancers: 200 only when this instance can serve a call."""

from __future__ import annotations

import logging

from flask import Blueprint

from ivr.services import services
from ivr.store.database import DatabaseDown, SchemaMissing

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.route("/healthz", methods=["GET", "POST", "HEAD"])
def healthz():
    """Answer 200 if a real table can be read, 503 if the database or its schema is missing."""
    try:
        services().store.check_health()
    except DatabaseDown as error:
        log.error("health check: database unreachable: %s", error)
        return _plain("database unreachable\n", 503)
    except SchemaMissing as error:
        log.error("health check: schema missing (run flask --app ivr init-db): %s", error)
        return _plain("database schema missing\n", 503)
    return _plain("ok\n", 200)


def _plain(text: str, status: int):
    return text, status, {"Content-Type": "text/plain", "Cache-Control": "no-store"}
