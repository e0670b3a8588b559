"""Start-up warnings about secrets that weaken a source (never the secret itself)."""

from __future__ import annotations

from leadrelay.core.app.config import parse_config
from leadrelay.core.ingest.settings import secret_warnings


def test_a_placeholder_and_a_shared_secret_are_warned_about_without_the_secret() -> None:
    config = parse_config(
        {
            "sources": {
                "a": {"provider": "gitleads", "secrets": ["changeme"]},
                "b": {"provider": "leadhub", "secrets": ["shared-7f3a9c"]},
                "c": {"provider": "leadshark", "secrets": ["shared-7f3a9c", "own-2b8d1e"]},
            }
        }
    )

    warnings = secret_warnings(config)

    assert [(w.message, w.sources) for w in warnings] == [
        ("source a uses a placeholder secret: generate a random one", ["a"]),
        ("sources b, c share a secret: each accepts requests signed for the other", ["b", "c"]),
    ]


def test_distinct_random_secrets_raise_no_warning() -> None:
    config = parse_config(
        {
            "sources": {
                "a": {"provider": "gitleads", "secrets": ["9c1e7d2a"]},
                "b": {"provider": "leadhub", "secrets": ["44b0f6e1"]},
            }
        }
    )
    assert secret_warnings(config) == []
