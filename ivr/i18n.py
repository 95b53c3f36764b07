"""The prompts' message catalogues: the .po files in ivr/translations, read once at start-up.

The .po files are loaded as they are (Babel reads them and builds the gettext tables in memory),
so a new language needs no compile step and no .mo file in the repository.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from ivr.languages import CATALOGUE, DEFAULT_LANGUAGE, LANGUAGES, TRANSLATIONS


def N_(message: str) -> str:
    """Mark `message` for the catalogues; it is translated where it is spoken."""
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a message with a plural form for the catalogues; spoken with ngettext."""
    return singular, plural


def load_catalogue(path: Path) -> Translations:
    """Read one .po file into gettext tables (fuzzy entries stay untranslated, as msgfmt does)."""
    with path.open("rb") as po:
        catalog = read_po(po)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def _load_all() -> dict[str, NullTranslations]:
    loaded: dict[str, NullTranslations] = {DEFAULT_LANGUAGE: NullTranslations()}
    for language in LANGUAGES:
        if language != DEFAULT_LANGUAGE:
            folder = language.replace("-", "_")
            loaded[language] = load_catalogue(TRANSLATIONS / folder / CATALOGUE)
    return loaded


CATALOGUES: dict[str, NullTranslations] = _load_all()


def translations(language: str) -> NullTranslations:
    """Return the gettext tables for `language`; a language without a catalogue speaks English."""
    return CATALOGUES.get(language) or CATALOGUES[DEFAULT_LANGUAGE]


def gettext(language: str, message: str) -> str:
    return translations(language).gettext(message)
