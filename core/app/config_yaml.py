"""Reading a config file's YAML: duplicate keys refused, parser errors as sentences.

PyYAML's safe loader keeps the last of two equal keys without a word, so two connectors
named `archive:` silently became one. `ConfigLoader` records every duplicate (with both
lines) and `read_yaml` reports them all together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node


@dataclass(frozen=True)
class YamlProblem:
    """One thing wrong with the YAML text; `key_path` is empty when it is not about a key."""

    line: int
    column: int
    problem: str
    key_path: str = ""


class YamlProblems(Exception):
    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.problem for p in problems))
        self.problems = problems


class ConfigLoader(yaml.SafeLoader):
    """The safe loader, noting duplicate mapping keys instead of keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[YamlProblem] = []

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _value in node.value:
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except (yaml.YAMLError, TypeError):
                    continue  # the base class reports unhashable or bad keys itself
                line = key_node.start_mark.line + 1
                if key in first_line and key_node.tag != "tag:yaml.org,2002:merge":
                    self.duplicates.append(
                        YamlProblem(
                            line,
                            key_node.start_mark.column + 1,
                            f"duplicate key {key!r} on lines {first_line[key]} and {line}"
                            " (the second would silently replace the first)",
                            str(key),
                        )
                    )
                else:
                    first_line.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


# PyYAML's own wording, for the common mistakes, in words a config author recognizes.
_PLAIN_WORDS = {
    "expected <block end>, but found": "the indentation does not line up with the lines above",
    "mapping values are not allowed here": "a ':' where a value was expected (quote the value"
    " if it contains ': ', or check the indentation)",
    "found character '\\t' that cannot start any token": "a tab character: indent with spaces",
    "could not find expected ':'": "a key without ':' after it",
    "found undefined alias": "an alias (*name) with no anchor (&name) before it",
    "while scanning a quoted scalar": "a quote that is never closed",
    "expected ',' or ']', but got": "a list in [ ] that is not closed or lacks a comma",
    "expected ',' or '}', but got": "a mapping in { } that is not closed or lacks a comma",
}


def _sentence(exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = str(getattr(exc, "problem", None) or "")
    context = str(getattr(exc, "context", None) or "")
    for jargon, words in _PLAIN_WORDS.items():
        if jargon in problem or jargon in context:
            return YamlProblem(line, column, f"not valid YAML: {words}")
    return YamlProblem(line, column, f"not valid YAML: {problem or 'cannot be read'}")


def read_yaml(text: str) -> Any:
    """The document in `text`; raises YamlProblems listing every problem found."""
    loader = ConfigLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise YamlProblems([_sentence(exc)]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise YamlProblems(loader.duplicates)
    return data
