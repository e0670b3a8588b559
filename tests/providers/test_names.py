"""Splitting one display name into first and last name."""

from __future__ import annotations

import pytest

from leadrelay.core.ingest.providers.names import NameParts, combine_names, split_name


@pytest.mark.parametrize(
    ("name", "first", "last", "full"),
    [
        ("Jane Doe", "Jane", "Doe", "Jane Doe"),
        ("  Jane   Doe \n", "Jane", "Doe", "Jane   Doe"),
        ("Cher", "Cher", None, "Cher"),
        ("Mary Ann Smith", "Mary Ann", "Smith", "Mary Ann Smith"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven", "Ludwig van Beethoven"),
        ("Vincent van der Berg", "Vincent", "van der Berg", "Vincent van der Berg"),
        ("Juan de la Cruz", "Juan", "de la Cruz", "Juan de la Cruz"),
        ("Ursula von der Leyen", "Ursula", "von der Leyen", "Ursula von der Leyen"),
        ("Jean-Claude Van Damme", "Jean-Claude", "Van Damme", "Jean-Claude Van Damme"),
        ("Van Morrison", "Van", "Morrison", "Van Morrison"),
        ("Martin Luther King Jr.", "Martin Luther", "King Jr.", "Martin Luther King Jr."),
        ("Doe, Jane", "Jane", "Doe", "Doe, Jane"),
        ("Jane Doe, PhD", "Jane", "Doe PhD", "Jane Doe, PhD"),
        ("José María Núñez", "José María", "Núñez", "José María Núñez"),
        ("Иван Петров", "Иван", "Петров", "Иван Петров"),
        ("王小明", None, None, "王小明"),
        ("山田 太郎", None, None, "山田 太郎"),
        ("김민준", None, None, "김민준"),
        ("สมชาย ใจดี", None, None, "สมชาย ใจดี"),
        # Words without a letter (emoji, flags, symbols) are not name parts; full_name
        # stays as sent.
        ("Jane 🚀 Doe", "Jane", "Doe", "Jane 🚀 Doe"),
        ("José Müller 🚀", "José", "Müller", "José Müller 🚀"),
        ("Ana de la Cruz 🇲🇽", "Ana", "de la Cruz", "Ana de la Cruz 🇲🇽"),
        ("🚀", None, None, "🚀"),
        ("🚀 ✨ 123", None, None, "🚀 ✨ 123"),
        ("Jane ★", "Jane", None, "Jane ★"),
        ("O'Brien, Conan", "Conan", "O'Brien", "O'Brien, Conan"),
        ("Doe, Jane 🚀", "Jane", "Doe", "Doe, Jane 🚀"),
        ("🚀, Jane", "Jane", None, "🚀, Jane"),
        ("李小龙", None, None, "李小龙"),
        # A leading title is not a first name; a trailing degree stays with the last name.
        ("Dr. Jane Smith, PhD", "Jane", "Smith PhD", "Dr. Jane Smith, PhD"),
        ("Prof Ada Lovelace", "Ada", "Lovelace", "Prof Ada Lovelace"),
        ("Dr.", "Dr.", None, "Dr."),
    ],
)
def test_split_name(name: str, first: str | None, last: str | None, full: str) -> None:
    assert split_name(name) == NameParts(first, last, full)


@pytest.mark.parametrize("name", [None, "", "   ", "\t\n"])
def test_empty_names_are_unknown(name: str | None) -> None:
    assert split_name(name) == NameParts(None, None, None)


def test_very_long_name_is_kept_whole() -> None:
    name = "A" * 50_000 + " " + "B" * 50_000
    parts = split_name(name)
    assert parts.full_name == name
    assert parts.first_name == "A" * 50_000
    assert parts.last_name == "B" * 50_000


@pytest.mark.parametrize(
    ("full", "first", "last", "expected"),
    [
        ("John Doe", "John", None, NameParts("John", "Doe", "John Doe")),
        ("John van Dam", "John", None, NameParts("John", "van Dam", "John van Dam")),
        ("Mary Ann Smith", "Mary Ann", None, NameParts("Mary Ann", "Smith", "Mary Ann Smith")),
        ("Johnny Doe", "John", None, NameParts("John", "Doe", "Johnny Doe")),
        (None, "Jane", "Smith", NameParts("Jane", "Smith", "Jane Smith")),
        (None, None, "Smith", NameParts(None, "Smith", "Smith")),
        ("Jane Smith", "J.", "Smith-Jones", NameParts("J.", "Smith-Jones", "Jane Smith")),
        ("王小明", "小明", "王", NameParts("小明", "王", "王小明")),
        (None, None, None, NameParts(None, None, None)),
    ],
)
def test_combine_names_prefers_what_was_sent(
    full: str | None, first: str | None, last: str | None, expected: NameParts
) -> None:
    assert combine_names(full, first, last) == expected
