"""Slack: one Block Kit message per lead event (see `connector`)."""
