"""Reading a git bundle's header (pure: no I/O).

A bundle is a header then a pack: ``# v2 git bundle`` (or ``# v3 git bundle`` followed by
``@capability`` lines), prerequisite lines ``-<oid> [comment]``, reference lines ``<oid>
<refname>``, an empty line, then the pack. The agent reads the header of every bundle a
sandbox hands over before anything else looks at it: exactly the one reference a snapshot
bundle carries, with the head the sandbox named, and prerequisites only where an
incremental bundle may have them. The header is read with a cap (:data:`MAX_HEADER_BYTES`).
"""

from __future__ import annotations

import re

import attrs

from amicable_agent.errors import SnapshotError

#: The one reference of a snapshot bundle (a private ref: never a branch anyone checks out).
SNAPSHOT_REF = "refs/amicable/snapshot"
#: The most header a bundle may have (one ref, a few prerequisites: far less).
MAX_HEADER_BYTES = 64 * 1024
_SIGNATURES = (b"# v2 git bundle\n", b"# v3 git bundle\n")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@attrs.frozen
class BundleHeader:
    """What a bundle says it holds.

    Attributes:
        version: 2 or 3.
        prerequisites: commits the receiving repository must already have.
        refs: reference name -> object id.
    """

    version: int
    prerequisites: frozenset[str]
    refs: dict[str, str]


def parse_header(head: bytes) -> BundleHeader:
    """Parse the start of a bundle (at least its header; at most :data:`MAX_HEADER_BYTES`
    are looked at).

    Raises:
        SnapshotError: ``invalid_bundle``: not a bundle, or a malformed header.
    """
    head = head[:MAX_HEADER_BYTES]
    signature = next((s for s in _SIGNATURES if head.startswith(s)), None)
    if signature is None:
        raise SnapshotError("invalid_bundle", "not a git bundle")
    end = head.find(b"\n\n", len(signature) - 1)
    if end < 0:
        raise SnapshotError("invalid_bundle", "the bundle header has no end")
    try:
        text = head[len(signature) : end + 1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise SnapshotError("invalid_bundle", "the bundle header is not ASCII") from exc
    prerequisites: set[str] = set()
    refs: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("@") and signature.startswith(b"# v3"):
            continue  # a capability (object-format, filter): checked by git itself
        if line.startswith("-"):
            oid = line[1:].split(" ", 1)[0]
            if not _OID.fullmatch(oid):
                raise SnapshotError("invalid_bundle", "a malformed prerequisite")
            prerequisites.add(oid)
            continue
        oid, _, name = line.partition(" ")
        if not _OID.fullmatch(oid) or not name or name in refs:
            raise SnapshotError("invalid_bundle", "a malformed reference line")
        refs[name] = oid
    return BundleHeader(2 if signature.startswith(b"# v2") else 3, frozenset(prerequisites), refs)


def check_snapshot_header(header: BundleHeader, *, base: str | None) -> tuple[str, str]:
    """A snapshot bundle carries one ref (``HEAD`` as a sandbox makes it, or
    :data:`SNAPSHOT_REF` as the agent's compaction does); a full one (``base`` None) has no
    prerequisites, an incremental one needs some. Returns the ref's name and its commit.

    Raises:
        SnapshotError: ``invalid_bundle`` with what is wrong.
    """
    if len(header.refs) != 1 or not set(header.refs) <= {"HEAD", SNAPSHOT_REF}:
        raise SnapshotError(
            "invalid_bundle", f"the bundle should carry only HEAD or {SNAPSHOT_REF}"
        )
    if base is None and header.prerequisites:
        raise SnapshotError("invalid_bundle", "a full bundle must not need other commits")
    if base is not None and not header.prerequisites:
        raise SnapshotError("invalid_bundle", "an incremental bundle without prerequisites")
    ((name, head),) = header.refs.items()
    return name, head
