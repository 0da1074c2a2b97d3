"""``python -m amicable_templates [ids|json]``: the registry for scripts, the chart and CI."""

from __future__ import annotations

import json
import sys

from .registry import registry


def main(argv: list[str] | None = None) -> None:
    """Print the template ids (one a line) or, with ``json``, the public registry."""
    args = sys.argv[1:] if argv is None else argv
    reg = registry()
    if args[:1] == ["json"]:
        print(json.dumps([t.public() for t in reg.templates], indent=2))
    else:
        print("\n".join(reg.ids))


if __name__ == "__main__":
    main()
