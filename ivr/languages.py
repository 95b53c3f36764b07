"""The languages a room can speak: the source language and one catalogue per other language."""

from __future__ import annotations

DEFAULT_LANGUAGE = "en-US"
# Twilio's language code for each language a room may choose, with its name for the console.
LANGUAGES: dict[str, str] = {
    "en-US": "English (US)",
    "de-DE": "Deutsch",
    "es-ES": "Español",
    "fr-FR": "Français",
}
