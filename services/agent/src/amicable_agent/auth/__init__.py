"""Identity: who is calling (``identity``), how they proved it (``cookies``, ``oidc``, API
tokens), what they may do (``access``), and from which hosts and origins (``origins``).
``config`` reads the settings; ``docs/auth.md`` describes the whole.

This ``__init__`` imports nothing, so the store can use :mod:`.identity`'s types without
loading the rest.
"""
