"""``web_fetch``'s transport: GET with redirects followed by hand, each hop pinned by the
guard, the body read up to a byte cap, everything within one deadline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from .errors import FetchFailed
from .guard import SystemResolver, parse_fetch_url, pin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import WebConfig
    from .guard import IPNetwork, Resolver

_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.8,*/*;q=0.5"


@attrs.frozen
class Fetched:
    """A fetched response: the body (at most the byte cap) and where it came from."""

    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    truncated: bool = False
    charset: str | None = None


async def fetch(
    raw_url: str,
    config: WebConfig,
    *,
    resolver: Resolver | None = None,
    allow: Sequence[IPNetwork] = (),
) -> Fetched:
    """GET ``raw_url``; redirects (at most ``config.max_redirects``) are checked like it.

    Raises:
        FetchRefused: the URL or a redirect target is not allowed (see :mod:`.guard`).
        FetchFailed: connection, TLS or HTTP failure, a timeout, too many redirects.

    Cancellation: the connection is closed.
    """
    resolver = resolver or SystemResolver()
    url = parse_fetch_url(raw_url)
    # No proxy from the environment (it would resolve names itself), no connection reuse
    # (a pooled connection is keyed by address, and the checked address differs per name).
    async with httpx.AsyncClient(
        trust_env=False, follow_redirects=False, timeout=config.fetch_timeout_s,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:  # fmt: skip
        try:
            with trio.fail_after(config.fetch_timeout_s):
                for _hop in range(config.max_redirects + 1):
                    pinned = await pin(url, resolver, allow)
                    request = client.build_request(
                        "GET", pinned.connect_url,
                        headers={"Host": pinned.host_header, "User-Agent": config.user_agent,
                                 "Accept": _ACCEPT},
                        extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
                    )  # fmt: skip
                    response = await client.send(request, stream=True)
                    try:
                        location = response.headers.get("location")
                        if response.is_redirect and location:
                            url = parse_fetch_url(str(url.join(location)))
                            continue
                        body, truncated = await _read_capped(response, config.fetch_max_bytes)
                    finally:
                        await response.aclose()
                    return Fetched(
                        raw_url, str(url), response.status_code,
                        response.headers.get("content-type", ""), body, truncated,
                        response.charset_encoding,
                    )  # fmt: skip
        except trio.TooSlowError:
            raise FetchFailed(f"no answer within {config.fetch_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{url.host}: {type(exc).__name__}: {exc}"[:300]) from exc
    raise FetchFailed(f"more than {config.max_redirects} redirects")


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    truncated = False
    try:
        async for chunk in response.aiter_bytes():
            if truncated:
                continue
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                # Closing the connection ends the stream with an error that runs through
                # httpx's nested generators (breaking out would leave them to the GC).
                truncated = True
                await response.aclose()
    except (httpx.StreamClosed, httpx.ReadError, httpx.RemoteProtocolError):
        if not truncated:
            raise
    return b"".join(chunks)[:limit], truncated
