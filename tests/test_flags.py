"""Flags and presets (PIPELINE.md)."""

import pytest

from llama.flags import DEFAULT_FLAGS, PRESETS, FlagError, parse_flag_args


def test_presets_match_the_spec_table():
    # name: ROLE ONLINE VETOED UPLOAD ICECUBE_UPLOAD BLINDED_NEUTRINOS MANUAL
    table = """DEFAULT test true false false false false false
    TRIGGERED_INTERNAL observation true false true false false false
    TRIGGERED_PUBLIC observation true false true true false false
    TRIGGERED_TEST test true false false false true false
    RERUN observation true false false false false false
    MANUAL observation true false true true false true"""
    cols = ["ROLE", "ONLINE", "VETOED", "UPLOAD", "ICECUBE_UPLOAD", "BLINDED_NEUTRINOS", "MANUAL"]
    for line in table.splitlines():
        name, *values = line.split()
        assert dict(PRESETS[name]) == dict(zip(cols, values, strict=True))
    assert DEFAULT_FLAGS == PRESETS["DEFAULT"]


def test_pairs_override_a_preset():
    flags = parse_flag_args(["TRIGGERED_PUBLIC", "ICECUBE_UPLOAD=false"])
    assert flags["UPLOAD"] == "true" and flags["ICECUBE_UPLOAD"] == "false"


@pytest.mark.parametrize(
    "args, message",
    [
        (["NOPE"], "neither a flag preset"),
        (["COLOR=red"], "unknown flag 'COLOR'"),
        (["ROLE=production"], "choose one of: test, observation"),
    ],
)
def test_bad_flags_name_the_choices(args, message):
    with pytest.raises(FlagError, match=message):
        parse_flag_args(args)
