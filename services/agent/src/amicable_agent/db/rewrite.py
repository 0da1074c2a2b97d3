"""Rewrite a browser's GraphQL query so logical table names hit the app's schema.

Hasura names root fields of a table outside ``public`` ``<schema>_<table>``; generated apps
query ``todos``. Only root fields are rewritten (``todos`` -> ``app_<h>_todos``,
``insert_todos`` -> ``insert_app_<h>_todos``), in operations and in fragments on a root type
(``query_root`` …), and the original name stays as the alias so response keys are unchanged.
Fields already prefixed and ``__typename``/``__schema`` are left alone. Text that does not
parse is returned unchanged (Hasura reports the error). Rewriting is a convenience, not a
security boundary: the JWT role only has permissions on the app's own tables.
"""

from __future__ import annotations

from typing import Any, cast

from graphql import GraphQLError
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    InlineFragmentNode,
    NameNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    print_ast,
)

_MUTATION_VERBS = ("insert_", "update_", "delete_")
_ROOT_TYPES = {
    "query_root": "query",
    "mutation_root": "mutation",
    "subscription_root": "subscription",
}
#: Bound on parser work for one request (the body size is bounded by the proxy too).
MAX_TOKENS = 20_000


def _replace(node: Node, **changes: Any) -> Any:
    values = {key: getattr(node, key) for key in node.keys}
    values.update(changes)
    return type(node)(**values)


def root_field_name(name: str, kind: str, schema: str) -> str:
    """The schema-qualified name of root field ``name`` of a ``kind`` operation."""
    prefix = schema + "_"
    if name.startswith("__") or name.startswith(prefix):
        return name
    if kind == "mutation":
        for verb in _MUTATION_VERBS:
            if name.startswith(verb):
                rest = name[len(verb) :]
                return name if rest.startswith(prefix) else verb + prefix + rest
    return prefix + name


def _rewrite_set(selection_set: SelectionSetNode, kind: str, schema: str) -> SelectionSetNode:
    out: list[Any] = []
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            new_name = root_field_name(sel.name.value, kind, schema)
            if new_name != sel.name.value:
                alias = sel.alias or NameNode(value=sel.name.value)
                sel = _replace(sel, name=NameNode(value=new_name), alias=alias)
        elif isinstance(sel, InlineFragmentNode):
            sel = _replace(sel, selection_set=_rewrite_set(sel.selection_set, kind, schema))
        out.append(sel)
    return cast("SelectionSetNode", _replace(selection_set, selections=tuple(out)))


def rewrite_query_for_schema(query: str, schema: str) -> str:
    """``query`` with its root fields pointed at ``schema`` (unchanged if it won't parse)."""
    try:
        doc = parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except (GraphQLError, RecursionError):
        return query
    definitions: list[Any] = []
    for definition in doc.definitions:
        if isinstance(definition, OperationDefinitionNode):
            kind = definition.operation.value
            definition = _replace(
                definition, selection_set=_rewrite_set(definition.selection_set, kind, schema)
            )
        elif isinstance(definition, FragmentDefinitionNode):
            kind_for = _ROOT_TYPES.get(definition.type_condition.name.value)
            if kind_for is not None:
                definition = _replace(
                    definition,
                    selection_set=_rewrite_set(definition.selection_set, kind_for, schema),
                )
        definitions.append(definition)
    return print_ast(cast("DocumentNode", _replace(doc, definitions=tuple(definitions))))
