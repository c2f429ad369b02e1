"""llama.batch.template: plain-name fields only, parameters before the environment."""

from __future__ import annotations

import pytest

from llama.batch.template import TemplateError, UnsafeValueError, check_values, fields, render


def test_fields_in_order_without_repeats():
    assert fields("s3://llama/{graceid}/{nu}/{graceid}.json") == ["graceid", "nu"]
    assert fields("plain") == []
    assert fields("{{not a field}}") == []


def test_render_parameters_win_over_environment():
    env = {"graceid": "FROM_ENV", "USER": "ann"}
    assert render("/home/{USER}/{graceid}", {"graceid": "S1"}, environ=env) == "/home/ann/S1"


@pytest.mark.parametrize(
    "value, problem",
    [
        ("a/../x", "contains a path separator '/'"),
        ("a\\b", "contains a path separator '\\\\'"),
        ("..", "names the parent directory"),
        (".", "names the current directory"),
        ("", "is empty"),
        ("~root", "starts with '~'"),
        ("a\x00b", "contains the control character '\\x00'"),
        ("a\x1bb", "contains the control character '\\x1b'"),
        # a URL's server decodes these back into '..' and '/'
        ("%2e%2e", "decodes as a URL to '..', which names the parent directory"),
        ("a%2Fb", "decodes as a URL to 'a/b', which contains a path separator '/'"),
        ("%252e%252e", "decodes as a URL to '%2e%2e', which decodes as a URL to '..'"),
    ],
)
def test_values_in_paths_must_be_plain_names(value, problem):
    with pytest.raises(UnsafeValueError) as info:
        render("dst/{v}", {"v": value}, environ={})
    assert str(info.value).startswith(f"parameter v: value {value!r} {problem}")
    assert "--allow-path-values" in str(info.value) or "control" in problem


def test_harmless_percent_signs_pass():
    assert render("dst/{v}", {"v": "50%"}, environ={}) == "dst/50%"
    assert render("dst/{v}", {"v": "S1%20a"}, environ={}) == "dst/S1%20a"


def test_environment_values_obey_the_same_rule():
    with pytest.raises(UnsafeValueError, match="^environment variable HOME: value '/home/ann'"):
        render("{HOME}/{graceid}", {"graceid": "S1"}, environ={"HOME": "/home/ann"})


def test_the_inserted_text_is_what_is_checked():
    # a precision can cut a harmless value down to ".."
    with pytest.raises(UnsafeValueError, match=r"value '\.\.x' \(inserted as '\.\.'\)"):
        render("dst/{v:.2}", {"v": "..x"}, environ={})
    assert render("dst/{v:.1}", {"v": "a/b"}, environ={}) == "dst/a"


def test_path_and_text_modes():
    assert render("ev/{v}", {"v": "a/../b"}, environ={}, mode="path") == "ev/a/../b"
    with pytest.raises(UnsafeValueError, match="control character"):
        render("ev/{v}", {"v": "a\nb"}, environ={}, mode="path")
    assert render("{v}", {"v": "../\x00\n"}, environ={}, mode="text") == "../\x00\n"
    with pytest.raises(ValueError, match="mode must be one of"):
        render("{v}", {"v": "x"}, environ={}, mode="nope")


def test_check_values_names_the_origin_and_skips_unused_names():
    params = {"g": ["S1", "x/y"], "unused": [".."]}
    check_values(["ev/{g:.1}"], params, environ={})  # "x/y" cut to "x": fine
    with pytest.raises(UnsafeValueError, match="^g=ids.txt line 7: value 'x/y'"):
        check_values(["ev/{g}"], params, environ={}, origin=lambda n, i: f"{n}=ids.txt line 7")
    with pytest.raises(UnsafeValueError, match="^environment variable E: value ''"):
        check_values(["ev/{E}"], params, environ={"E": ""})


def test_render_uses_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("LLAMA_TEST_BUCKET", "bkt")
    assert render("s3://{LLAMA_TEST_BUCKET}/{g}", {"g": "S1"}) == "s3://bkt/S1"


def test_environ_none_means_parameters_only(monkeypatch):
    monkeypatch.setenv("LLAMA_TEST_X", "x")
    with pytest.raises(TemplateError):
        render("{LLAMA_TEST_X}", {}, environ=None)


def test_missing_field_message_lists_names_not_env_values(monkeypatch):
    monkeypatch.setenv("SECRET_THING", "hunter2")
    with pytest.raises(TemplateError) as info:
        render("sim/{graceid}/{run}", {"graceid": "S1", "neutrino_filename": "n.json"})
    msg = str(info.value)
    assert "{run}" in msg and "'sim/{graceid}/{run}'" in msg
    assert "available: graceid, neutrino_filename" in msg
    assert "environment variable" in msg
    assert "hunter2" not in msg and "SECRET_THING" not in msg


@pytest.mark.parametrize(
    "template, why",
    [
        ("{x.__class__}", "attribute or index"),
        ("{x.__class__.__mro__}", "attribute or index"),
        ("{x[0]}", "attribute or index"),
        ("{x!r}", "conversion"),
        ("{x!s}", "conversion"),
        ("{}", "positional"),
        ("{0}", "positional"),
        ("{x:{y}}", "format spec"),
        ("{x:%Y}", "format spec"),
        ("{x:>100000000}", "width above"),
        ("{x", "malformed"),
        ("x}", "malformed"),
    ],
)
def test_unsafe_or_malformed_templates_refused(template, why):
    with pytest.raises(TemplateError, match=why) as info:
        render(template, {"x": "1", "y": "2"}, environ={})
    assert "only plain names" in str(info.value) or why in (
        "format spec",
        "width above",
        "malformed",
    )
    with pytest.raises(TemplateError):
        fields(template)


def test_safe_format_specs():
    v = {"i": "7", "f": "0.5", "s": "ab"}
    assert render("{i:03d}", v, environ={}) == "007"
    assert render("{f:.2f}", v, environ={}) == "0.50"
    assert render("{s:>4}|{s:_<4}", v, environ={}) == "  ab|ab__"
    with pytest.raises(TemplateError, match=r"cannot format s='ab'"):
        render("{s:03d}", v, environ={})


def test_values_are_not_reinterpreted():
    # a value containing braces is inserted literally, never parsed again
    assert render("{a}", {"a": "{b.__class__}"}, environ={}) == "{b.__class__}"
    assert render("{{a}}={a}", {"a": "1"}, environ={}) == "{a}=1"
