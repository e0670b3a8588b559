"""Config files read strictly and reported whole: duplicate keys refused with both lines,
every problem in one run, YAML parser jargon turned into a sentence with line and column."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from leadrelay.core.app.config import ConfigError, ConfigErrors, load_config
from leadrelay.core.logs import PlainFormatter, fields
from tests.process import run_connectors

ROOT = Path(__file__).resolve().parents[2]

TWO_ARCHIVES = """\
sources:
  gl: {provider: gitleads, secrets: ["a-long-enough-secret-value"]}
connectors:
  archive:
    type: csv
    path: one.csv
  archive:
    type: csv
    path: two.csv
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicate_key_is_an_error_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, TWO_ARCHIVES), env={})

    message = str(caught.value)
    assert "duplicate key 'archive'" in message
    assert "lines 4 and 7" in message


def test_every_duplicate_is_reported_at_once(tmp_path: Path) -> None:
    text = TWO_ARCHIVES.replace("    path: two.csv\n", "    path: two.csv\n    path: three.csv\n")

    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, text), env={})

    assert {e.problem for e in caught.value.errors} == {
        "line 7, column 3: duplicate key 'archive' on lines 4 and 7"
        " (the second would silently replace the first)",
        "line 10, column 5: duplicate key 'path' on lines 9 and 10"
        " (the second would silently replace the first)",
    }


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
base: &base {type: csv, events: [lead.created]}
connectors:
  archive:
    <<: *base
    path: one.csv
"""
    with pytest.raises(ConfigError) as caught:  # `base` is not a config key, nothing else
        load_config(write(tmp_path, text), env={})
    assert "duplicate" not in str(caught.value)
    assert "base" in str(caught.value)


def test_all_config_errors_are_reported_in_one_run(tmp_path: Path) -> None:
    text = """\
store: sqlite:///x.db
sources:
  gl: {provider: gitlead, secrets: ["${UNSET_ONE}"]}
connectors:
  crm: {type: hubspot}
  archive: {type: csv, path: x.csv, on_dead: nobody}
retention: forever
"""
    result = run_connectors(["validate", "--config", str(write(tmp_path, text))], env={})

    assert result.returncode == 1
    for words in (
        "sources.gl.secrets[0]: environment variable UNSET_ONE is not set",
        "sources.gl.provider: Value error, unknown provider 'gitlead'",
        "connectors.crm.access_token: required key is missing",
        "retention",
    ):
        assert words in result.stderr, words
    assert "problems:" in result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sources:\n  gl:\n    provider: gitleads\n   secrets: []\n", "indentation"),
        ("store: a: b\n", "a ':' where a value was expected"),
        ("sources:\n\tgl: {}\n", "a tab character"),
        ('store: "sqlite:///x.db\n', "a quote that is never closed"),
    ],
    ids=["indentation", "colon", "tab", "quote"],
)
def test_yaml_jargon_becomes_a_sentence_with_line_and_column(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})

    message = str(caught.value)
    assert words in message
    assert "line " in message
    assert ", column " in message
    assert "<block end>" not in message


def test_plain_log_lines_carry_the_structured_fields() -> None:
    record = logging.LogRecord(
        "leadrelay.worker", logging.INFO, "", 0, "delivery %s", ("dead",), None
    )
    record.__dict__.update(
        fields(event_id="evt_1", connector="crm", error="400 Bad Request: bad email")
    )

    line = PlainFormatter().format(record)

    assert line.endswith(
        'delivery dead event_id=evt_1 connector=crm error="400 Bad Request: bad email"'
    )


def test_the_package_metadata_installs_without_deprecation_warnings() -> None:
    # setuptools warns on a license table and on data files in undeclared folders.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    assert "setuptools>=77" in project["build-system"]["requires"]
    packages = set(project["tool"]["setuptools"]["packages"])
    mapped = project["tool"]["setuptools"]["package-dir"]
    data = project["tool"]["setuptools"]["package-data"]
    # Every folder holding files ships as a declared package, with its data files listed.
    for prefix, folder in mapped.items():
        for directory in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if not directory.is_dir() or directory.name == "__pycache__":
                continue
            files = [f for f in directory.iterdir() if f.is_file() and f.suffix != ".pyc"]
            if not files:
                continue
            relative = directory.relative_to(ROOT / folder).parts
            package = ".".join([prefix, *relative])
            assert package in packages, package
            for data_file in files:
                if data_file.suffix != ".py":
                    patterns = data.get(package, [])
                    assert any(data_file.match(p) for p in patterns), (package, data_file.name)
