"""Codes from a participant's authenticator app: checked here, with nothing sent and no provider.

Each code is good once: the time step it belongs to is marked used in the same statement that
accepts it, so two calls racing with one code cannot both get in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ivr.authenticator import AuthenticatorApps, SecretUnreadable, matching_step
from ivr.store import Store
from ivr.verification import CheckResult, ProviderError


class AppCodes:
    def __init__(
        self, store: Store, apps: AuthenticatorApps, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._apps = apps
        # Seconds since the epoch; tests set another clock instead of waiting for a step.
        self.clock = clock

    def can_check(self, sealed_secret: str | None) -> bool:
        """Return whether codes can be checked against this stored secret."""
        try:
            self._secret(sealed_secret)
        except ProviderError:
            return False
        return True

    def check(self, participant_id: int, sealed_secret: str | None, code: str) -> CheckResult:
        """Check six digits against the participant's app; raise ProviderError if unreadable."""
        step = matching_step(self._secret(sealed_secret), code, self.clock())
        if step is None:
            return CheckResult.WRONG
        if not self._store.accept_app_step(participant_id, step):
            return CheckResult.USED
        return CheckResult.APPROVED

    def _secret(self, sealed_secret: str | None) -> str:
        if sealed_secret is None:
            raise ProviderError("the participant has no authenticator app secret stored")
        try:
            return self._apps.open(sealed_secret)
        except SecretUnreadable as error:
            raise ProviderError(str(error)) from None
