"""Check a package's ``errors.py`` tree drawing against the exceptions it really defines.

CONVENTIONS: one root exception per package, and the module docstring of its ``errors.py``
draws the tree. Drawings go stale silently; :func:`tree_problems` imports every module of a
package, collects every exception class defined there and compares:

* every public class is drawn, under the parent that really is one of its bases;
* every drawn name exists (no stale entries), and no two classes share a name;
* every class derives from the root, unless exempted with a reason (private helpers such
  as an SDK exception subclass that must stay one).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["defined_exceptions", "drawn_tree", "tree_problems"]

#: ``│   ├── Name   text`` -> the prefix and the name.
_NODE = re.compile(r"^(?P<prefix>(?:[│ ]   )*)(?:├── |└── )(?P<name>\w+)")


def defined_exceptions(package: str) -> dict[str, type[BaseException]]:
    """``module.QualName`` -> class, for every exception class defined in ``package``."""
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        modules.append(importlib.import_module(info.name))
    found: dict[str, type[BaseException]] = {}
    for module in modules:
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def drawn_tree(docstring: str) -> dict[str, str | None]:
    """Name -> parent name of every node drawn after ``Exception tree::`` (root -> None)."""
    _, marker, drawing = docstring.partition("Exception tree::")
    if not marker:
        raise ValueError("no 'Exception tree::' drawing in the docstring")
    tree: dict[str, str | None] = {}
    path: list[str] = []  # the current node's ancestors, root first
    indent = -1  # of the root line; a line indented less ends the drawing
    for line in drawing.splitlines():
        depth_of_text = len(line) - len(line.lstrip())
        if indent < 0:
            if line.strip():
                indent = depth_of_text
                path = [line.split()[0]]
                tree[path[0]] = None
            continue
        if line.strip() and depth_of_text < indent:
            break
        node = _NODE.match(line[indent:])
        if node is None:
            continue  # a blank line, or the continuation of a node's description
        depth = len(node["prefix"]) // 4 + 1
        name = node["name"]
        if name in tree:
            raise ValueError(f"{name} is drawn twice")
        if depth > len(path):
            raise ValueError(f"{name} is drawn deeper than its parent")
        del path[depth:]
        tree[name] = path[depth - 1]
        path.append(name)
    return tree


def tree_problems(package: str, root: type[BaseException], exempt: Mapping[str, str]) -> list[str]:
    """Everything wrong between ``package``'s classes and its ``errors.py`` drawing.

    Args:
        package: the package (``amicable_agent``).
        root: its root exception; ``<package>.errors`` draws the tree.
        exempt: ``module.QualName`` -> why the class does not derive from ``root``.

    Returns:
        One sentence per problem; empty when the drawing is complete and true.
    """
    errors_module = importlib.import_module(f"{package}.errors")
    tree = drawn_tree(errors_module.__doc__ or "")
    classes = defined_exceptions(package)
    problems: list[str] = []
    by_name: dict[str, str] = {}
    for key, cls in sorted(classes.items()):
        name = cls.__name__
        if name in by_name:
            problems.append(f"{key} and {by_name[name]} share a name; the drawing cannot tell")
        by_name[name] = key
        derives = issubclass(cls, root)
        if key in exempt:
            if derives:
                problems.append(f"{key} derives from {root.__name__}: drop its exemption")
            elif not exempt[key].strip():
                problems.append(f"{key} is exempted without a reason")
        elif not derives:
            problems.append(
                f"{key} does not derive from {root.__name__} (fix its bases, or exempt it "
                "with a reason)"
            )
        if name.startswith("_"):
            continue  # private: never leaves its module, not part of the drawing
        if name not in tree:
            problems.append(f"{key} is missing from the tree in {errors_module.__name__}")
            continue
        parent = tree[name]
        if parent is None:
            if cls is not root:
                problems.append(f"{key} is drawn as the root, but the root is {root.__name__}")
        elif parent not in {base.__name__ for base in cls.__bases__}:
            bases = ", ".join(base.__name__ for base in cls.__bases__)
            problems.append(f"{key} is drawn under {parent}, but its bases are {bases}")
    for name in tree:
        if name not in by_name:
            problems.append(f"{name} is drawn but no such exception is defined in {package}")
    problems.extend(
        f"{key} is exempted but not defined" for key in sorted(set(exempt) - set(classes))
    )
    return problems
