"""Commands the shell would only split into words and run: exec those without the shell.

``sh -c 'ls -la src'`` costs two program starts: dash forks and execs ``ls`` rather than
replacing itself (bash execs the last simple command itself). For a command that is a plain
word list, exec'ing the program directly gives the same result: the same argv, the same
environment (dash's one change, ``PWD``, is made here too), the same exit status, output and
process group (only the order of the environment block differs: dash rebuilds it from a
hash table). Everything else still goes through the shell:

* any character outside ``[A-Za-z0-9_./,:+@%-]`` and blanks (quotes, ``$``, globs, ``~``,
  redirections, ``;``, ``&``, ``|``, ``#``, newlines, parentheses, braces, ``!``), and ``=``
  in the first word (an assignment); ``=`` in later words is literal;
* a first word that is a shell builtin or reserved word (of dash, bash or busybox ash: their
  behaviour differs from the program of the same name, or the program does not exist);
* a program not found on ``PATH`` (the shell then reports ``not found`` and exits 127), an
  empty or relative ``PATH`` entry, or an environment with ``IFS``/``OPTIND``/``PPID``
  (which the shell resets);
* a program that cannot be exec'd (e.g. a script without ``#!``, which the shell runs
  itself): the caller retries through the shell, before anything ran.
"""

from __future__ import annotations

import os
import re
import stat

_PLAIN = re.compile(r"[ \t]*[A-Za-z0-9_./,:+@%-]+(?:[ \t]+[A-Za-z0-9_./,:+@%=-]+)*[ \t]*")
#: Builtins and reserved words of dash, bash and busybox ash.
# fmt: off
SHELL_WORDS = frozenset((
    ".", ":", "[", "[[", "]]", "{", "}", "!", "alias", "bg", "bind", "break", "builtin",
    "caller", "case", "cd", "chdir", "command", "compgen", "complete", "compopt", "continue",
    "coproc", "declare", "dirs", "disown", "do", "done", "echo", "elif", "else", "enable",
    "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for", "function",
    "getopts", "hash", "help", "history", "if", "in", "jobs", "kill", "let", "local",
    "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly",
    "return", "select", "set", "shift", "shopt", "source", "suspend", "test", "then", "time",
    "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias", "unset",
    "until", "wait", "while",
))
# fmt: on
#: Variables the shell sets for itself (exported if they came in the environment).
_SHELL_RESETS = ("IFS", "OPTIND", "PPID")


def plain_argv(command: str, cwd: str, env: dict[str, str]) -> tuple[str, list[str]] | None:
    """``(program path, argv)`` when ``command`` can be exec'd without the shell, else None.

    ``env`` gets the ``PWD`` the shell would export (only when the answer is not None).
    """
    if not _PLAIN.fullmatch(command):
        return None
    argv = command.split()
    if argv[0] in SHELL_WORDS or any(name in env for name in _SHELL_RESETS):
        return None
    program = _find_program(argv[0], cwd, env.get("PATH"))
    if program is None:
        return None
    env["PWD"] = _shell_pwd(cwd, env.get("PWD"))
    return program, argv


def _find_program(name: str, cwd: str, path: str | None) -> str | None:
    if "/" in name:
        # exec'd as typed, after the chdir: a script's interpreter gets this path as $0
        return name if _is_executable(os.path.join(cwd, name)) else None
    if not path:
        return None
    for directory in path.split(":"):
        if not directory.startswith("/"):
            return None  # empty or relative: relative to the cwd, leave it to the shell
        candidate = f"{directory}/{name}"
        if _is_executable(candidate):
            return candidate
    return None


def _is_executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def _shell_pwd(cwd: str, inherited: str | None) -> str:
    """The ``PWD`` dash exports: the inherited one if it names ``cwd``, else ``getcwd()``."""
    if inherited and inherited.startswith("/"):
        try:
            a, b = os.stat(inherited), os.stat(cwd)
        except OSError:
            pass
        else:
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return inherited
    return os.path.realpath(cwd)
