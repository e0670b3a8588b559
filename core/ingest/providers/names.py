"""Split the single `name` some providers send into first and last name.

Decisions (names are messy; these rules aim to be unsurprising, not clever):

- `full_name` is always the name as sent, with only leading/trailing whitespace removed.
- One word ("Cher", "jdoe") is a first name only; `last_name` stays None. A CRM that
  requires a last name fills it from its own documented fallback.
- Several words: the last word is the last name and the words before it the first name,
  except that particles directly before the last word ("van der", "de la", "von", "al",
  ...; matched case-insensitively) belong to the last name: "Ludwig van Beethoven" is
  Ludwig / van Beethoven. The first word is never taken as a particle, so "Van Morrison"
  stays Van / Morrison.
- Generational or degree suffixes ("Jr.", "III", "PhD") stay with the last name; a
  leading title ("Dr.", "Prof") followed by a name is not part of the first name.
- Words without a letter (emoji, flags, symbols, digits) are not name parts: "José
  Müller 🚀" is José / Müller, and "🚀" alone has no first or last name.
- "Doe, Jane" (exactly one comma, not before a suffix) is last-name-first.
- Names written in scripts that do not separate or order names the Western way (Han,
  Kana, Hangul, Thai, ...) are not split at all: only `full_name` is set.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Lower-cased; matched case-insensitively against whole words.
NAME_PARTICLES = frozenset(
    {
        "al", "ap", "bin", "binti", "bint", "da", "dal", "das", "de", "degli", "dei", "del",
        "della", "der", "des", "di", "do", "dos", "du", "el", "het", "la", "las", "le",
        "les", "lo", "los", "mac", "op", "san", "santa", "st", "st.", "ten", "ter", "van",
        "vande", "vanden", "vander", "von", "zu", "zum", "zur",
    }
)  # fmt: skip
NAME_SUFFIXES = frozenset(
    {"jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "v", "phd", "ph.d.", "md", "m.d.", "esq."}
)
NAME_TITLES = frozenset(
    {"dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "mx", "mx.", "prof", "prof."}
)
# Unicode character-name prefixes of scripts whose names are not "given family" words.
_UNSPLIT_SCRIPTS = (
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "THAI",
    "LAO",
    "KHMER",
    "MYANMAR",
    "TIBETAN",
    "YI ",
    "BOPOMOFO",
    "IDEOGRAPHIC",
)


@dataclass(frozen=True)
class NameParts:
    first_name: str | None
    last_name: str | None
    full_name: str | None


def _is_unsplit_script(text: str) -> bool:
    for char in text:
        if char.isalpha() and unicodedata.name(char, "").startswith(_UNSPLIT_SCRIPTS):
            return True
    return False


def _name_words(text: str) -> list[str]:
    """The words of `text` that can be name parts: those with at least one letter."""
    return [word for word in text.split() if any(char.isalpha() for char in word)]


def _split_words(words: list[str]) -> tuple[str | None, str | None]:
    if len(words) > 1 and words[0].lower() in NAME_TITLES:
        words = words[1:]
    if not words:
        return None, None
    if len(words) == 1:
        return words[0], None
    last_start = len(words) - 1
    # A trailing suffix is kept with the surname before it.
    if words[last_start].lower() in NAME_SUFFIXES and last_start >= 2:
        last_start -= 1
    while last_start > 1 and words[last_start - 1].lower() in NAME_PARTICLES:
        last_start -= 1
    return " ".join(words[:last_start]), " ".join(words[last_start:])


def split_name(name: str | None) -> NameParts:
    """Split one display name into first/last; see the module docstring for the rules."""
    if name is None:
        return NameParts(None, None, None)
    full_name = name.strip()
    if not full_name:
        return NameParts(None, None, None)
    if _is_unsplit_script(full_name):
        return NameParts(None, None, full_name)
    if full_name.count(",") == 1:
        before, after = (_name_words(part) for part in full_name.split(","))
        is_suffix = bool(after) and all(w.lower() in NAME_SUFFIXES for w in after)
        if before and after and not is_suffix:
            return NameParts(" ".join(after), " ".join(before), full_name)
        full_words = [*before, *after]
    else:
        full_words = _name_words(full_name)
    first_name, last_name = _split_words(full_words)
    return NameParts(first_name, last_name, full_name)


def combine_names(
    full_name: str | None, first_name: str | None, last_name: str | None
) -> NameParts:
    """Names from a provider that may send `name`, `first_name` and/or `last_name`.

    Parts the provider sent win over parts split from the full name. When only the first
    name is sent and the full name starts with it, the rest of the full name is the last
    name ("John" + "John van Dam" -> "van Dam"). Without a full name, it is composed from
    the parts that were sent.
    """
    split = split_name(full_name)
    if first_name is None and last_name is None:
        return split
    full = split.full_name or " ".join(part for part in (first_name, last_name) if part)
    if last_name is None and first_name is not None and split.full_name is not None:
        prefix = first_name + " "
        if split.full_name.startswith(prefix) and split.full_name[len(prefix) :].strip():
            last_name = split.full_name[len(prefix) :].strip()
        else:
            last_name = split.last_name
    return NameParts(first_name or split.first_name, last_name, full or None)
