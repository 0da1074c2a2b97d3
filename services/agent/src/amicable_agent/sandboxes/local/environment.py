"""The environment a local sandbox gets: an allow-list, never the agent's environment.

Everything the model writes runs with this environment, and whatever it prints can reach
the model provider and the editor. So nothing is inherited by default: only names listed
here (locale, terminal, ``NODE_*`` tuning, names the operator adds with
``AMICABLE_SANDBOX_ENV_PASSTHROUGH``) are copied from the agent, and even those are dropped
when their name looks like a secret (``NODE_AUTH_TOKEN``, ``*_KEY``, ``*PASSWORD*`` …). The
sandbox's own settings (runtime port and token, preview port, workspace, HMR) are added by
:func:`sandbox_env`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Copied from the agent's environment when set (exact names).
ALLOWED_NAMES = frozenset({"LANG", "LANGUAGE", "TERM", "TZ", "COLORTERM", "NO_COLOR"})
#: Copied when a name starts with one of these (``LC_ALL``, ``NODE_OPTIONS`` …).
ALLOWED_PREFIXES = ("LC_", "NODE_")
#: A name that looks like it holds a secret is never copied, allow-listed or not.
SECRET_NAME = re.compile(
    r"(?i)(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|_KEY$|^KEY$|AUTH(?!ORS?(?![A-Z])))"
)
#: ``PATH`` inside an isolated sandbox (plus the directory of a ``node`` found elsewhere).
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests a secret value."""
    return bool(SECRET_NAME.search(name))


def inherited_env(env: Mapping[str, str], passthrough: Iterable[str] = ()) -> dict[str, str]:
    """The variables of ``env`` a sandbox may see: allow-listed names and ``passthrough``,
    minus anything whose name looks secret."""
    extra = set(passthrough)
    out = {}
    for name, value in env.items():
        allowed = name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES) or name in extra
        if allowed and not looks_secret(name):
            out[name] = value
    return out


def sandbox_env(
    agent_env: Mapping[str, str],
    settings: Mapping[str, str],
    *,
    path: str,
    home: str,
    passthrough: Iterable[str] = (),
) -> dict[str, str]:
    """A sandbox's complete environment.

    Args:
        agent_env: the agent's environment (only allow-listed names are taken).
        settings: the sandbox's own variables (runtime and preview settings); added last.
        path: ``PATH`` inside the sandbox.
        home: ``HOME`` inside the sandbox (its private home directory).
        passthrough: extra names the operator allows (``AMICABLE_SANDBOX_ENV_PASSTHROUGH``).
    """
    env = inherited_env(agent_env, passthrough)
    env.update(PATH=path, HOME=home, USER="sandbox", LOGNAME="sandbox")
    env.update(settings)
    return env
