"""The OTP-protected conference line: a Flask app that answers Twilio voice webhooks."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from ivr import logs
from ivr.settings import DEFAULTS, SettingsError, read_sources, validate

# gunicorn's "App failed to load" status: it stops instead of restarting workers forever.
EXIT_BAD_SETTINGS = 4


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from `config`, or from config.py, .env and the environment if None."""
    raw = {**DEFAULTS, **config} if config is not None else read_sources(Path.cwd(), os.environ)
    app = Flask(__name__, instance_path=_instance_path(raw.get("INSTANCE_PATH")))
    app.session_interface = CookieSessions()
    try:
        settings = validate(raw, Path(app.instance_path))
    except SettingsError as error:
        sys.stderr.write(f"ivr: configuration error: {error}\n")
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    app.config.update(settings)
    app.config.update(_web_settings(settings))
    # LOG_STREAM: where tests read the lines that would go to stderr.
    logs.configure(settings["LOG_LEVEL"], settings["LOG_FORMAT"], settings.get("LOG_STREAM"))

    from flask_wtf.csrf import CSRFProtect

    from ivr import admin, cli, enrolment, health, metrics, voice
    from ivr.schema import SchemaError
    from ivr.services import build_services, seed_participants

    app.extensions["ivr"] = ivr = build_services(settings)
    if settings["LOCAL_MODE"]:
        # Local mode runs without init-db: the schema and the example callers appear on first use.
        try:
            ivr.store.upgrade_schema()
        except SchemaError as error:
            sys.stderr.write(f"ivr: database error: {error}\n")
            raise SystemExit(EXIT_BAD_SETTINGS) from None
        seed_participants(ivr.store, settings)

    app.register_blueprint(voice.bp)
    app.register_blueprint(health.bp)
    csrf = CSRFProtect()
    # Twilio cannot send a CSRF token: its webhooks are signed instead. Health checks change
    # nothing.
    csrf.exempt(voice.bp)
    csrf.exempt(health.bp)
    if settings["LOCAL_MODE"]:
        from ivr import devphone_views

        app.register_blueprint(devphone_views.bp)
        # The dev phone's endpoints take JSON only, which a cross-site form cannot send.
        csrf.exempt(devphone_views.bp)
    csrf.init_app(app)
    admin.init_app(app)
    enrolment.init_app(app, app.extensions["ivr_sign_in_limiter"])
    metrics.init_app(app, ivr.metrics)
    cli.register(app)
    if settings["PROXY_HOPS"]:
        # Behind a TLS proxy: take the client address, scheme and host from the proxies we
        # trust, so rate limits see callers rather than the proxy and request.url is Twilio's.
        hops = settings["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without a signing serializer built for a request that
    brings no session cookie - every Twilio webhook: for them, an empty new session, as Flask's
    own `open_session` returns after building one (a few microseconds on every webhook). A
    request without a Cookie header at all is not even parsed for one."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (
            "HTTP_COOKIE" not in request.environ
            or not request.cookies.get(self.get_cookie_name(app))
        ):
            return self.session_class()
        return super().open_session(app, request)


def _web_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return Flask's cookie, session and upload settings for the admin console."""
    return {
        # Local mode serves plain http://127.0.0.1, where a Secure cookie would never come back.
        "SESSION_COOKIE_SECURE": settings.get("SESSION_COOKIE_SECURE", not settings["LOCAL_MODE"]),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=settings["ADMIN_SESSION_HOURS"]),
        # A token lives as long as the session it belongs to, which expires on its own.
        "WTF_CSRF_TIME_LIMIT": None,
        # Participant CSV uploads are the largest requests.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
    }


def _instance_path(configured: str | None) -> str | None:
    return str(Path(configured).resolve()) if configured else None
