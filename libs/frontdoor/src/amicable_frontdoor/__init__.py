"""The front door of Amicable's services: an ASGI app served on hypercorn's trio connection
handling, behind an optional raw lane, one fault-isolated task per connection and a bounded
shutdown (see :func:`serve` and the README).
"""

from __future__ import annotations

from ._serve import Lane, serve

__all__ = ["Lane", "serve"]
