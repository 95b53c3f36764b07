"""The admin console: sign-in with a one-time code, then rooms, participants, calls and live
conferences under /admin.
"""

from __future__ import annotations

import logging
import os
from functools import partial

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ivr.admin import auth, console
from ivr.settings import STARTUP_WARNED, startup_warnings

log = logging.getLogger(__name__)
# The blueprints with rate-limited views: the console's sign-in, and the enrolment page.
LIMITED_BLUEPRINTS = ("admin_auth", "enrolment")


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
    _only_where_limited(app, limiter)

    app.extensions["ivr_sign_in_limiter"] = limiter
    auth.apply_rate_limits(limiter, app)


def _only_where_limited(app: Flask, limiter: Limiter) -> None:
    """Run Flask-Limiter's request hooks only for the blueprints it limits views of.

    Flask-Limiter hooks every request of the app, before, after and at teardown. The line
    limits the console's sign-in steps and the enrolment page, and nothing else
    (`auth.apply_rate_limits`, `enrolment.init_app`): on Twilio's webhooks, the busiest path,
    three hooks ran for nothing (about 30 us of each webhook's CPU even when they returned at
    once). Its hooks, found by whom they are bound to, move in their order to the front of
    those blueprints' own. A limited view's wrapper checks its limits itself, so a limit set
    on a view elsewhere would still hold.
    """

    def limiters(hook) -> bool:
        if isinstance(hook, partial):
            return bool(hook.args) and hook.args[0] is limiter
        return getattr(hook, "__self__", None) is limiter

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        theirs = [hook for hook in hooks.get(None, []) if limiters(hook)]
        hooks[None] = [hook for hook in hooks.get(None, []) if not limiters(hook)]
        for blueprint in LIMITED_BLUEPRINTS:
            hooks.setdefault(blueprint, [])[:0] = theirs
