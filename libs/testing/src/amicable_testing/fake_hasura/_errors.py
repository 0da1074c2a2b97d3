"""The two ways the fake Hasura says no: its REST error body and a GraphQL error."""

from __future__ import annotations


class GraphqlError(Exception):
    """An error answered as ``{"errors": [{"message", "extensions": {"code", "path"}}]}``."""

    def __init__(self, code: str, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.code = code
        self.path = path


class HasuraError(Exception):
    """An error of ``/v2/query`` or ``/v1/metadata``: ``status`` and ``{code, error, path}``."""

    def __init__(self, status: int, code: str, error: str, path: str = "$") -> None:
        super().__init__(error)
        self.status = status
        self.body = {"code": code, "error": error, "path": path}
