"""Event flags and flag presets.

Flags set the overall behaviour of an event and state intentions: whether LLAMA may
talk to partner services (``ONLINE``), whether products are uploaded (``UPLOAD``,
``ICECUBE_UPLOAD``), and so on. They live in each event directory as ``FLAGS.json``
with string values.

Examples
--------
>>> from llama.flags import parse_flag_args, PRESETS
>>> parse_flag_args(["TRIGGERED_TEST"])["BLINDED_NEUTRINOS"]
'true'
>>> parse_flag_args(["ONLINE=false"])["ONLINE"]
'false'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "ALLOWED_VALUES",
    "DEFAULT_FLAGS",
    "PRESETS",
    "FlagError",
    "FlagPreset",
    "parse_flag_args",
    "validate_flags",
]

_BOOL = ("true", "false")

#: Allowed values of every flag.
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "VETOED": _BOOL,
    "ROLE": ("test", "observation"),
    "UPLOAD": _BOOL,
    "ICECUBE_UPLOAD": _BOOL,
    "ONLINE": _BOOL,
    "MANUAL": _BOOL,
    "BLINDED_NEUTRINOS": _BOOL,
}


class FlagError(ValueError):
    """A flag name, value or preset that does not exist."""


class FlagPreset(dict):
    """A complete set of flags (name -> string value)."""

    def __repr__(self) -> str:
        return f"FlagPreset({dict.__repr__(self)})"

    def is_true(self, name: str) -> bool:
        """Whether boolean flag ``name`` is ``"true"``."""
        return self[name] == "true"


def _preset(role, online, vetoed, upload, icecube_upload, blinded, manual) -> FlagPreset:
    return FlagPreset(
        VETOED=vetoed,
        ROLE=role,
        UPLOAD=upload,
        ICECUBE_UPLOAD=icecube_upload,
        ONLINE=online,
        MANUAL=manual,
        BLINDED_NEUTRINOS=blinded,
    )


_T, _F = "true", "false"
#: The flag presets (PIPELINE.md): name -> flags.
PRESETS: dict[str, FlagPreset] = {
    "DEFAULT": _preset("test", _T, _F, _F, _F, _F, _F),
    "TRIGGERED_INTERNAL": _preset("observation", _T, _F, _T, _F, _F, _F),
    "TRIGGERED_PUBLIC": _preset("observation", _T, _F, _T, _T, _F, _F),
    "TRIGGERED_TEST": _preset("test", _T, _F, _F, _F, _T, _F),
    "RERUN": _preset("observation", _T, _F, _F, _F, _F, _F),
    "MANUAL": _preset("observation", _T, _F, _T, _T, _F, _T),
}
#: Flags of a new event when nothing else is said.
DEFAULT_FLAGS: FlagPreset = PRESETS["DEFAULT"]


def validate_flags(flags: Mapping[str, str]) -> FlagPreset:
    """Check names and values; return a complete `FlagPreset` (defaults filled in).

    Raises
    ------
    FlagError
        Naming the bad flag or value and listing the valid choices.
    """
    result = FlagPreset(DEFAULT_FLAGS)
    for name, value in flags.items():
        if name not in ALLOWED_VALUES:
            raise FlagError(f"unknown flag {name!r}; valid flags are: {', '.join(ALLOWED_VALUES)}")
        value = str(value).lower() if name != "ROLE" else str(value)
        if value not in ALLOWED_VALUES[name]:
            raise FlagError(
                f"invalid value {value!r} for flag {name}; choose one of: "
                f"{', '.join(ALLOWED_VALUES[name])}"
            )
        result[name] = value
    return result


def parse_flag_args(args: Iterable[str], base: Mapping[str, str] | None = None) -> FlagPreset:
    """Parse ``--flags`` arguments: at most one preset name, then ``NAME=value`` pairs.

    Parameters
    ----------
    args
        E.g. ``["TRIGGERED_TEST"]``, ``["ONLINE=false", "ROLE=test"]`` or both kinds
        (the preset first, pairs overriding it).
    base
        Flags to start from (an existing event's); `DEFAULT_FLAGS` when omitted.
    """
    flags = dict(base or DEFAULT_FLAGS)
    for arg in args:
        if "=" in arg:
            name, _, value = arg.partition("=")
            flags[name.strip()] = value.strip()
        elif arg in PRESETS:
            flags.update(PRESETS[arg])
        else:
            raise FlagError(
                f"{arg!r} is neither a flag preset nor a NAME=value pair; presets are: "
                f"{', '.join(PRESETS)} (print them with --flag-presets)"
            )
    return validate_flags(flags)
