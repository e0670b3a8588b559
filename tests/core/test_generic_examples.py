"""The two "Your own provider" examples in README pass `connectors validate` and
`connectors test`, which signs each payload file as its source's scheme requires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadrelay.core.app.cli import main
from tests.cli import CliRunner, example_runner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "generic_sources"
# (config, source, payload file, the lead's key, its provider)
CASES = [
    ("forms.yaml", "forms", "forms.form_response.json", "email:ada@example.com", "hmac"),
    (
        "signups.yaml",
        "signups",
        "signups.user.created.json",
        "email:grace@example.com",
        "standard-webhooks",
    ),
]


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return example_runner(tmp_path)


@pytest.mark.parametrize(("config", "source", "payload", "lead_key", "provider"), CASES)
def test_the_example_validates_and_its_payload_runs_the_whole_chain(
    runner: CliRunner, config: str, source: str, payload: str, lead_key: str, provider: str
) -> None:
    config_path = str(EXAMPLES / config)
    # validate checks the store too, and read-only commands never create one.
    migrated = runner.invoke(main, ["migrate", "--config", config_path])
    assert migrated.exit_code == 0, migrated.output
    validated = runner.invoke(main, ["validate", "--config", config_path])
    assert validated.exit_code == 0, validated.output
    assert "OK (1 source, 1 connector)" in validated.output

    args = ["test", "--config", config_path, "--source", source, "--json"]
    result = runner.invoke(main, [*args, "--payload", str(EXAMPLES / payload)])
    assert result.exit_code == 0, result.output
    [sample] = json.loads(result.stdout)
    assert (sample["status"], sample["ok"], sample["provider"]) == ("accepted", True, provider)
    assert sample["type"] == "lead.created"
    assert sample["lead"]["key"] == lead_key
    [archive] = sample["connectors"]
    assert (archive["connector"], archive["outcome"]) == ("archive", "would send")


def test_a_payload_edited_after_signing_fails_verification(
    runner: CliRunner, tmp_path: Path
) -> None:
    # A captured request is verified as received: the Standard Webhooks headers of another
    # body do not verify this one.
    captured = tmp_path / "captured.json"
    captured.write_text(
        json.dumps(
            {
                "headers": {
                    "webhook-id": "msg_1",
                    "webhook-timestamp": "1777627812",
                    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                },
                "body": (EXAMPLES / "signups.user.created.json").read_text(encoding="utf-8"),
            }
        )
    )
    config = str(EXAMPLES / "signups.yaml")
    result = runner.invoke(
        main, ["test", "--config", config, "--source", "signups", "--payload", str(captured)]
    )
    assert result.exit_code == 1
    assert "invalid_signature" in result.output


def test_a_generic_source_without_a_payload_file_is_told_to_give_one(runner: CliRunner) -> None:
    config = str(EXAMPLES / "forms.yaml")
    result = runner.invoke(main, ["test", "--config", config, "--source", "forms"])
    assert result.exit_code == 2
    assert "pass --payload FILE" in result.output
