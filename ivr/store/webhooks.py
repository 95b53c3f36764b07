"""Webhook requests seen before: Twilio's retries get the first answer, and change nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from ivr.store.database import Database
from ivr.store.models import WebhookAnswer, utcnow

# Twilio retries within seconds: a day outlasts any retry and keeps the table small.
KEEP_ANSWERS = timedelta(days=1)
# Old answers are swept by about one claim in this many, so most claims are one statement.
SWEEP_EVERY = 200


@dataclass(frozen=True)
class SeenBefore:
    """A request whose token was claimed already: its answer, or None while it is being made."""

    answer: str | None


class WebhookStore(Database):
    """Claims of webhook requests by idempotency token, and the answers given to them."""

    def claim_webhook(self, token: str, path: str) -> SeenBefore | None:
        """Claim `token` for this request; return None if it is new, else what it got before.

        One insert that only one request (on any instance) can win; the others read the
        winner's answer.
        """
        now = utcnow()
        claim = (
            self._insert(WebhookAnswer)
            .values(token=token, path=path, answer=None, at=now)
            .on_conflict_do_nothing(index_elements=[WebhookAnswer.token])
            .returning(WebhookAnswer.token)
        )
        with self._writing() as connection:
            if random.randrange(SWEEP_EVERY) == 0:
                connection.execute(
                    delete(WebhookAnswer).where(WebhookAnswer.at < now - KEEP_ANSWERS)
                )
            if connection.execute(claim).first() is not None:
                return None
            answer = connection.scalar(
                select(WebhookAnswer.answer).where(WebhookAnswer.token == token)
            )
        return SeenBefore(answer)

    def answer_of(self, token: str) -> str | None:
        """Return the answer kept for `token`, if it has one yet."""
        with self.engine.connect() as connection:
            return connection.scalar(
                select(WebhookAnswer.answer).where(WebhookAnswer.token == token)
            )

    def keep_answer(self, token: str, answer: str) -> None:
        """Keep the answer given to the request that claimed `token`, for its retries."""
        with self._writing() as connection:
            connection.execute(
                update(WebhookAnswer).where(WebhookAnswer.token == token).values(answer=answer)
            )
