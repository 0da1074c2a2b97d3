"""Typed values from environment variables: one function per kind, over a plain mapping.

Every function takes the environment as a ``Mapping[str, str]`` (``os.environ`` is read by
a service's ``__main__``, never here) and the variable's name. Shared rules: values are
stripped; unset or blank means "use the default"; an unusable value raises
:class:`SettingsError` whose message names the variable and the value (never a secret's).

Example::

    from amicable_settings import errors_as, integer, secret, seconds

    with errors_as(ConfigError):  # the service's own SettingsError subclass
        port = integer(env, "MY_PORT", 8080, minimum=0, maximum=65535)
        timeout_s = seconds(env, "MY_TIMEOUT_S", 5.0, positive=True)
        token = secret(env, "MY_TOKEN")  # MY_TOKEN, or the file named by MY_TOKEN_FILE
"""

from ._readers import (
    FALSE_WORDS,
    TRUE_WORDS,
    boolean,
    choice,
    comma_list,
    integer,
    json_value,
    number,
    seconds,
    secret,
    string,
)
from .errors import SettingsError, errors_as

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "SettingsError",
    "boolean",
    "choice",
    "comma_list",
    "errors_as",
    "integer",
    "json_value",
    "number",
    "seconds",
    "secret",
    "string",
]
