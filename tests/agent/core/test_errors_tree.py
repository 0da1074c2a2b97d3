"""The error tree drawn in ``amicable_agent/errors.py`` is complete and true (CONVENTIONS:
one root exception, its module docstring draws the tree)."""

from __future__ import annotations

import pytest
from amicable_agent.errors import AgentError
from amicable_testing.errors_tree import drawn_tree, tree_problems

#: Exceptions that do not derive from AgentError, and why.
EXEMPT = {
    "amicable_agent.loop.anthropic_api._DroppedStream": (
        "private to loop/anthropic_api.py: must be an anthropic.APIConnectionError so that a "
        "dropped SSE stream is retried exactly like the SDK's own connection errors"
    ),
    "amicable_agent.lean_http._BodyTooLarge": (
        "raised inside the lean transport under httpx2's own exception tree (the SDK and the "
        "runtime client translate httpx2 errors at their edge); never leaves as itself"
    ),
}


def test_every_agent_exception_is_drawn_under_its_real_base() -> None:
    assert tree_problems("amicable_agent", AgentError, EXEMPT) == []


def test_the_checker_notices_what_it_should() -> None:
    tree = drawn_tree(
        """Errors.

        Exception tree::

            Root
            ├── A                first
            │   │                more text
            │   └── B            child of A
            └── C
                └── D

        Other text.
        """
    )
    assert tree == {"Root": None, "A": "Root", "B": "A", "C": "Root", "D": "C"}
    with pytest.raises(ValueError, match="no 'Exception tree::'"):
        drawn_tree("no drawing")
    problems = tree_problems("amicable_agent", AgentError, {})
    assert any("_DroppedStream does not derive from AgentError" in p for p in problems)
    problems = tree_problems("amicable_agent", AgentError, {**EXEMPT, "x.Gone": "why"})
    assert problems == ["x.Gone is exempted but not defined"]
