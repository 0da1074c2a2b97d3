"""The error tree drawn in ``amicable_preview_router/errors.py`` is complete and true."""

from __future__ import annotations

from amicable_preview_router.errors import RouterError
from amicable_testing.errors_tree import tree_problems

#: Exceptions that do not derive from RouterError, and why.
EXEMPT = {
    "amicable_preview_router.forwarding._NoResponse": (
        "private to forwarding.py: the upstream closed before answering; it is turned into "
        "a 502 or a retry there and never leaves the module"
    ),
}


def test_every_router_exception_is_drawn_under_its_real_base() -> None:
    assert tree_problems("amicable_preview_router", RouterError, EXEMPT) == []
