"""The admin console: sign-in with a one-time code, then rooms, participants, calls and live
conferences under /admin.
"""

from __future__ import annotations

import logging
import os
from functools import partial

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ivr.admin import auth, console
from ivr.settings import STARTUP_WARNED, startup_warnings
from ivr.voice import bp as webhooks

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the console's blueprints and its sign-in rate limits."""
    if not os.environ.get(STARTUP_WARNED):
        # The line runs without these parts; say so once, where the operator starting it looks.
        for warning in startup_warnings(app.config):
            log.warning(warning)
    app.register_blueprint(auth.bp)
    app.register_blueprint(console.bp)

    # One limiter per app: Flask-Limiter keeps its storage on the extension object. With
    # REDIS_URL every instance counts in the same place; if Redis fails, counting goes on in
    # memory rather than locking admins out or letting attempts through uncounted.
    limiter = Limiter(
        get_remote_address,
        storage_uri=app.config["REDIS_URL"] or "memory://",
        key_prefix="ivr-admin",
        strategy="moving-window",
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        # A Redis that stops answering must not hold a sign-in request for long.
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1}
        if app.config["REDIS_URL"]
        else {},
    )
    limiter.init_app(app)
    _not_on_webhooks(app, limiter)

    app.extensions["ivr_sign_in_limiter"] = limiter
    auth.apply_rate_limits(limiter, app)


def _not_on_webhooks(app: Flask, limiter: Limiter) -> None:
    """Keep Flask-Limiter's request hooks off Twilio's webhooks, which carry no limits.

    Flask-Limiter hooks every request of the app, before, after and at teardown; on the busiest
    path that was about 30 us of each webhook's CPU for nothing. Its hooks are found by whom
    they are bound to; any it may add in a later version still run everywhere.
    """

    def limiters(hook) -> bool:
        if isinstance(hook, partial):
            return bool(hook.args) and hook.args[0] is limiter
        return getattr(hook, "__self__", None) is limiter

    def before(hook):
        return lambda: None if request.blueprint == webhooks.name else hook()

    def after(hook):
        return lambda response: response if request.blueprint == webhooks.name else hook(response)

    def teardown(hook):
        return lambda error=None: None if request.blueprint == webhooks.name else hook(error)

    for hooks, skipping in (
        (app.before_request_funcs, before),
        (app.after_request_funcs, after),
        (app.teardown_request_funcs, teardown),
    ):
        hooks[None] = [skipping(hook) if limiters(hook) else hook for hook in hooks.get(None, [])]
