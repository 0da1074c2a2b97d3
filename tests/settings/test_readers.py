"""``amicable_settings``: each reader's accepted values, defaults, and error messages."""

from __future__ import annotations

import math
from pathlib import Path

import amicable_settings
import pytest
from amicable_settings import (
    SettingsError,
    boolean,
    choice,
    comma_list,
    errors_as,
    integer,
    json_value,
    number,
    seconds,
    secret,
    string,
)


def test_exports_exactly_the_public_names() -> None:
    assert amicable_settings.__all__ == [
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
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("blank", [{}, {"X": ""}, {"X": "   "}])
def test_unset_or_blank_means_the_default(blank: dict[str, str]) -> None:
    assert string(blank, "X", "d") == "d"
    assert string(blank, "X", None) is None
    assert boolean(blank, "X", True) is True
    assert integer(blank, "X", 7) == 7
    assert number(blank, "X", 1.5) == 1.5
    assert seconds(blank, "X", 30.0) == 30.0
    assert choice(blank, "X", "a", ("a", "b")) == "a"
    assert comma_list(blank, "X", ("d",)) == ("d",)
    assert json_value(blank, "X", None) is None
    assert secret(blank, "X") is None


def test_string_is_stripped() -> None:
    assert string({"X": "  value \n"}, "X", "d") == "value"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), ("YES", True), (" on ", True)],
        *[("0", False), ("False", False), ("no", False), ("OFF", False)],
    ],
)
def test_boolean_words(raw: str, expected: bool) -> None:
    assert boolean({"FLAG": raw}, "FLAG", not expected) is expected


def test_boolean_refuses_anything_else_naming_variable_and_value() -> None:
    with pytest.raises(SettingsError, match=r"^FLAG must be a boolean .*got 'maybe'$") as info:
        boolean({"FLAG": "maybe"}, "FLAG", False)
    assert info.value.name == "FLAG"


def test_integer_parses_and_checks_bounds() -> None:
    assert integer({"N": " 42 "}, "N", 0) == 42
    assert integer({"N": "-3"}, "N", 0) == -3
    assert integer({"N": "0"}, "N", 5, minimum=0, maximum=0) == 0
    with pytest.raises(SettingsError, match=r"^N must be an integer, got 'two'$"):
        integer({"N": "two"}, "N", 0)
    with pytest.raises(SettingsError, match=r"^N must be an integer, got '2.5'$"):
        integer({"N": "2.5"}, "N", 0)
    with pytest.raises(SettingsError, match=r"^N must be at least 1, got '0'$"):
        integer({"N": "0"}, "N", 5, minimum=1)
    with pytest.raises(SettingsError, match=r"^PORT must be at most 65535, got '70000'$"):
        integer({"PORT": "70000"}, "PORT", 0, maximum=65535)


def test_number_parses_refuses_nan_and_checks_bounds() -> None:
    assert number({"F": "2.5"}, "F", 0.0) == 2.5
    assert number({"F": "1e3"}, "F", 0.0) == 1000.0
    assert math.isinf(number({"F": "inf"}, "F", 0.0))
    for bad in ("fast", "nan", "NaN"):
        with pytest.raises(SettingsError, match=rf"^F must be a number, got '{bad}'$"):
            number({"F": bad}, "F", 0.0)
    with pytest.raises(SettingsError, match=r"at least 0\.5"):
        number({"F": "0.1"}, "F", 1.0, minimum=0.5)
    with pytest.raises(SettingsError, match="at most 2"):
        number({"F": "3"}, "F", 1.0, maximum=2)


def test_seconds_are_never_negative_and_positive_on_request() -> None:
    assert seconds({"T_S": "0"}, "T_S", 5.0) == 0.0
    assert seconds({"T_S": "0.25"}, "T_S", 5.0, positive=True) == 0.25
    with pytest.raises(SettingsError, match=r"^T_S must be a number of seconds, got 'soon'$"):
        seconds({"T_S": "soon"}, "T_S", 5.0)
    with pytest.raises(SettingsError, match=r"^T_S must be at least 0, got '-1'$"):
        seconds({"T_S": "-1"}, "T_S", 5.0)
    with pytest.raises(SettingsError, match=r"^T_S must be positive, got '0'$"):
        seconds({"T_S": "0"}, "T_S", 5.0, positive=True)
    with pytest.raises(SettingsError, match="at most 60"):
        seconds({"T_S": "61"}, "T_S", 5.0, maximum=60)


def test_choice_is_case_insensitive_and_names_the_options() -> None:
    assert choice({"MODE": "Kubernetes"}, "MODE", "local", ("local", "kubernetes")) == (
        "kubernetes"
    )
    with pytest.raises(SettingsError, match=r"^MODE must be local or kubernetes, got 'docker'$"):
        choice({"MODE": "docker"}, "MODE", "local", ("local", "kubernetes"))
    with pytest.raises(SettingsError, match=r"^V must be private, internal or public, got 'x'$"):
        choice({"V": "x"}, "V", "internal", ("private", "internal", "public"))


def test_comma_list_strips_and_drops_empty_items() -> None:
    assert comma_list({"L": " a, b ,,c "}, "L", ()) == ("a", "b", "c")
    assert comma_list({"L": ","}, "L", ("default",)) == ()


def test_json_value_decodes_and_names_the_variable_on_error() -> None:
    assert json_value({"J": '{"a": [1]}'}, "J", None) == {"a": [1]}
    with pytest.raises(SettingsError, match=r"^J is not valid JSON \(.*\), got '\{nope'$"):
        json_value({"J": "{nope"}, "J", None)


def test_long_bad_values_are_cut_in_messages() -> None:
    with pytest.raises(SettingsError) as info:
        integer({"N": "x" * 500}, "N", 0)
    assert len(str(info.value)) < 150
    assert str(info.value).endswith("…")


def test_secret_from_the_variable_or_the_file(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("from-file\n")
    assert secret({"TOKEN": " direct "}, "TOKEN") == "direct"
    assert secret({"TOKEN_FILE": str(file)}, "TOKEN") == "from-file"
    # The variable wins over the file; a blank variable falls back to it.
    assert secret({"TOKEN": "direct", "TOKEN_FILE": str(file)}, "TOKEN") == "direct"
    assert secret({"TOKEN": " ", "TOKEN_FILE": str(file)}, "TOKEN") == "from-file"
    file.write_text("  \n")
    assert secret({"TOKEN_FILE": str(file)}, "TOKEN") is None


def test_secret_reader_can_be_injected() -> None:
    read: list[str] = []

    def fake_read(path: str) -> str:
        read.append(path)
        return "s3cret\n"

    assert secret({"K_FILE": "/run/k"}, "K", read_file=fake_read) == "s3cret"
    assert read == ["/run/k"]


def test_unreadable_secret_file_names_the_file_variable_never_the_secret(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SettingsError) as info:
        secret({"TOKEN_FILE": str(missing)}, "TOKEN")
    assert str(info.value) == f"TOKEN_FILE: cannot read {missing}: No such file or directory"
    assert info.value.name == "TOKEN_FILE"
    binary = tmp_path / "binary"
    binary.write_bytes(b"hunter2\xff\xfe")
    with pytest.raises(SettingsError) as info:
        secret({"TOKEN_FILE": str(binary)}, "TOKEN")
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


class _ServiceConfigError(SettingsError):
    pass


def test_errors_as_translates_once_and_chains() -> None:
    with (
        pytest.raises(_ServiceConfigError, match=r"^N must be an integer") as info,
        errors_as(_ServiceConfigError),
    ):
        integer({"N": "x"}, "N", 0)
    assert info.value.name == "N"
    assert type(info.value.__cause__) is SettingsError
    already = _ServiceConfigError("mine")
    with pytest.raises(_ServiceConfigError) as passed, errors_as(_ServiceConfigError):
        raise already
    assert passed.value is already
    # Anything else is not the library's business.
    with pytest.raises(KeyError), errors_as(_ServiceConfigError):
        raise KeyError("x")
