"""Authenticator apps (RFC 6238 TOTP): secrets, their encryption at rest, and checking a code.

A participant's secret is encrypted with Fernet under a key derived from SECRET_KEY, so a copy
of the database alone gives no codes. Changing SECRET_KEY therefore ends every enrolment: the
line can no longer read the secrets, and those callers hear the apology until they enrol again.
"""

from __future__ import annotations

import base64
import time

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

STEP_SECONDS = 30
DIGITS = 6
# Codes from one step before or after now are accepted too: phone clocks drift.
SKEW_STEPS = 1
ISSUER = "Conference line"


class SecretUnreadable(Exception):
    """A stored secret does not decrypt: SECRET_KEY changed since the participant enrolled."""


class AuthenticatorApps:
    """Make, seal, open and check authenticator app secrets under one SECRET_KEY."""

    def __init__(self, secret_key: str) -> None:
        # A key of its own, so the ciphertext says nothing about other uses of SECRET_KEY.
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"ivr authenticator secrets"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    @staticmethod
    def new_secret() -> str:
        """Return a new random base32 secret (160 bits, as RFC 4226 recommends)."""
        return pyotp.random_base32(32)

    def seal(self, secret: str) -> str:
        """Return `secret` encrypted, for the database."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """Return the secret `sealed` holds; raise SecretUnreadable under another SECRET_KEY."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, ValueError):
            raise SecretUnreadable(
                "an authenticator app secret does not decrypt: was SECRET_KEY changed?"
            ) from None


def setup_uri(secret: str, account: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from a QR code."""
    return _totp(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """Return `uri` as an inline SVG QR code, drawn on the server: no script, no image host."""
    return segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff")


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """Return the time step whose code is `code`, within the skew allowed, or None.

    The caller decides whether that step is new; a step accepted once is never accepted again.
    """
    totp = _totp(secret)
    now = time.time() if now is None else now
    current = int(now // STEP_SECONDS)
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        # TOTP.verify compares in constant time, one step at a time.
        if totp.verify(code, for_time=step * STEP_SECONDS, valid_window=0):
            return step
    return None


def current_code(secret: str, now: float | None = None) -> str:
    """Return the code the app shows now (the dev phones show it in local mode)."""
    return _totp(secret).at(time.time() if now is None else now)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
