"""The floor: the least a correct line can do, served and driven like the app as a baseline.

It checks X-Twilio-Signature (403 otherwise), makes exactly one provider call per webhook and
answers constant TwiML: /voice starts a Twilio Verify verification for the caller and asks for
six digits; /gather checks the digits with Verify and joins the conference (or asks again).
No database, no participant list, no lockouts, no call log - which is why it is a floor.

The provider calls go through the app's own client factory, `ivr.twilio_client.build_client`:
the same twilio library, TwilioHttpClient timeout and keep-alive session, and TWILIO_API_URL
redirect, so each call costs what one of the app's calls costs. Served by the Procfile's
gunicorn command with only the app string replaced by 'bench.floor:create_app()'.
"""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, abort, request
from twilio.base.exceptions import TwilioException
from twilio.request_validator import RequestValidator

from ivr.twilio_client import build_client

# Any VA... SID reaches the fake; a real Verify service would need its own.
DEFAULT_VERIFY_SID = "VA" + "f1" * 16
_XML = '<?xml version="1.0" encoding="UTF-8"?>'
GATHER = (
    f'{_XML}<Response><Gather action="/gather" method="POST" numDigits="6" timeout="10">'
    "<Say>Welcome. Please enter the 6 digit code sent to your device.</Say></Gather>"
    '<Redirect method="POST">/gather</Redirect></Response>'
).encode()
WRONG = (
    f'{_XML}<Response><Gather action="/gather" method="POST" numDigits="6" timeout="10">'
    "<Say>That code was incorrect. Please try again.</Say></Gather></Response>"
).encode()
JOIN = (
    f"{_XML}<Response><Say>That was correct. Joining conference.</Say>"
    "<Dial><Conference>main</Conference></Dial></Response>"
).encode()
FAULT = (
    f"{_XML}<Response><Say>Sorry, we can't check codes right now. Goodbye.</Say>"
    "<Hangup/></Response>"
).encode()
PROVIDER_FAULTS = (TwilioException, requests.RequestException)


def create_app() -> Flask:
    """Build the floor app from the same environment variables the line reads."""
    env = os.environ
    token = env["TWILIO_AUTH_TOKEN"]
    client = build_client(
        env["TWILIO_ACCOUNT_SID"],
        token,
        float(env.get("TWILIO_TIMEOUT_SECONDS") or 5),
        env.get("TWILIO_API_URL") or None,
    )
    verify = client.verify.v2.services(env.get("VERIFY_SERVICE_SID") or DEFAULT_VERIFY_SID)
    validator = RequestValidator(token)
    app = Flask(__name__)

    @app.before_request
    def require_twilio_signature() -> None:
        if request.path == "/healthz":
            return
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(request.url, request.form, signature):
            abort(403)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.post("/voice")
    def voice() -> Response:
        try:
            verify.verifications.create(to=request.form.get("From", ""), channel="sms")
        except PROVIDER_FAULTS:
            return _twiml(FAULT)
        return _twiml(GATHER)

    @app.post("/gather")
    def gather() -> Response:
        form = request.form
        try:
            check = verify.verification_checks.create(
                to=form.get("From", ""), code=form.get("Digits", "")
            )
        except PROVIDER_FAULTS:
            return _twiml(FAULT)
        return _twiml(JOIN if check.status == "approved" else WRONG)

    return app


def _twiml(body: bytes) -> Response:
    return Response(body, status=200, mimetype="text/xml")
