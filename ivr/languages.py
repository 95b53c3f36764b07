"""The languages a room can speak: the source language and one catalogue per other language.

A language is a folder in ivr/translations (`de_DE/LC_MESSAGES/messages.po`, as `pybabel init`
makes it); its Twilio code is the folder's name with a hyphen ("de-DE").
"""

from __future__ import annotations

from pathlib import Path

from babel import Locale

# The language the prompts are written in (the catalogues' msgids).
DEFAULT_LANGUAGE = "en-US"
TRANSLATIONS = Path(__file__).parent / "translations"
CATALOGUE = "LC_MESSAGES/messages.po"

# One Twilio <Say> voice per language: Amazon Polly's neural voices, which Twilio offers as
# "Polly.<Name>-Neural". A language missing here speaks in Twilio's default voice for it.
VOICES: dict[str, str] = {
    "en-US": "Polly.Joanna-Neural",
    "de-DE": "Polly.Vicki-Neural",
    "es-ES": "Polly.Lucia-Neural",
    "fr-FR": "Polly.Lea-Neural",
}


def _catalogue_languages(folder: Path) -> list[str]:
    """Return the Twilio code of every language with a catalogue in `folder`."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.replace("_", "-") for entry in folder.iterdir() if (entry / CATALOGUE).is_file()
    )


def language_name(code: str) -> str:
    """Return a language's name in itself, for the console ("Deutsch")."""
    name = Locale.parse(code, sep="-").language_name or code
    return name[:1].upper() + name[1:]


def _discover() -> dict[str, str]:
    languages = {DEFAULT_LANGUAGE: "English (US)"}
    for code in _catalogue_languages(TRANSLATIONS):
        name = language_name(code)
        if name in languages.values():
            # A second variant of one language (en-GB beside en-US): name the country too.
            name = Locale.parse(code, sep="-").get_display_name() or code
        languages.setdefault(code, name)
    return languages


# Twilio's language code for each language a room may choose, with its name for the console.
LANGUAGES: dict[str, str] = _discover()


def voice_for(language: str) -> str | None:
    """Return the <Say> voice for `language`, or None for Twilio's default."""
    return VOICES.get(language)


def verify_locale(language: str) -> str:
    """Return Twilio Verify's `locale` for a room language: its language subtag ("de").

    Verify's tags are mostly bare languages ("en" is American English); the few regional ones
    it knows are kept whole.
    """
    if language in VERIFY_REGIONAL:
        return language
    return language.split("-")[0]


# Verify's locales that name a region (Verify answers 404 to a locale it does not know).
VERIFY_REGIONAL = frozenset({"en-GB", "pt-BR", "zh-CN", "zh-HK"})
