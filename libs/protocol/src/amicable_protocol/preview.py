"""Preview resolver answer (agent ``/internal/preview/resolve`` -> preview router).

``GET <AMICABLE_PREVIEW_RESOLVER_URL>?host=<full host>`` with header
``X-Amicable-Preview-Token`` answers ``200`` with :class:`PreviewResolution` or ``404`` when the
host names no known preview.
"""

from __future__ import annotations

import attrs

from ._converter import register_omit_none

#: Request header carrying the shared resolver token.
PREVIEW_TOKEN_HEADER = "X-Amicable-Preview-Token"


@attrs.frozen
class PreviewResolution:
    """Where a preview host's traffic goes.

    Attributes:
        sandbox_id: the sandbox serving this preview (a DNS label).
        upstream: ``http://host:port`` of its dev server; ``None`` means "build it from the
            router's ``AMICABLE_PREVIEW_UPSTREAM_TEMPLATE``".
    """

    sandbox_id: str
    upstream: str | None = None


register_omit_none(PreviewResolution)
