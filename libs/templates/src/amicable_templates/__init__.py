"""Amicable's project templates: one folder per stack under ``stacks/``, one registry.

The public surface is the registry (:mod:`.registry`): :func:`registry`, :func:`get_template`,
:class:`Template`, :data:`DEFAULT_TEMPLATE`.
"""

from .registry import (
    BRIDGE_SOURCE,
    DEFAULT_TEMPLATE,
    QA_ORDER,
    STACKS_DIR,
    Registry,
    Template,
    TemplateError,
    get_template,
    parse_manifest,
    read_registry,
    registry,
)

__all__ = [
    "BRIDGE_SOURCE",
    "DEFAULT_TEMPLATE",
    "QA_ORDER",
    "STACKS_DIR",
    "Registry",
    "Template",
    "TemplateError",
    "get_template",
    "parse_manifest",
    "read_registry",
    "registry",
]
