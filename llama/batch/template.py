"""The safe template formatter: the one place that fills ``{name}`` fields.

Batch paths (``--get``, ``--put``, ``--errdump``, ``--eventdir``) and ``--format``
files are Python format strings whose fields come from the current parameter
vector first, then from the environment. Only plain names are allowed: attribute
or index access (``{x.__class__}``, ``{x[0]}``), conversions (``{x!r}``) and
positional fields (``{}``, ``{0}``) are refused, because ``str.format`` on
untrusted templates can reach object internals. A format spec is allowed when it
is a plain standard spec (``{i:03d}``, ``{x:>8}``) without nested fields.

Examples
--------
>>> render("s3://llama/sim/{graceid}/skymap_info.json", {"graceid": "S190425z"})
's3://llama/sim/S190425z/skymap_info.json'
>>> fields("{a}-{b:03d}-{a}")
['a', 'b']
>>> render("{run:04d}", {"run": "7"})
'0007'
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping

__all__ = ["TemplateError", "fields", "render"]

# the standard format-spec mini-language, one group per part
_SPEC = re.compile(
    r"^(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?(?P<z>z)?(?P<alt>#)?(?P<zero>0)?"
    r"(?P<width>\d+)?(?P<grouping>[_,])?(?:\.(?P<precision>\d+))?(?P<type>[bcdeEfFgGnosxX%])?$",
    re.S,
)
# widths beyond this are a mistake or an attempt to exhaust memory
_MAX_WIDTH = 256
_INT_TYPES = set("bcdoxXn")
_FLOAT_TYPES = set("eEfFgG%")


class TemplateError(ValueError):
    """A template is malformed, unsafe, or uses a field with no value."""


def _parse(template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"malformed template {template!r}: {exc}; write literal braces as {{{{ and }}}}"
        ) from None


def _check_field(template: str, name: str, spec: str | None, conversion: str | None) -> None:
    """Refuse anything but a plain identifier with an optional simple spec."""
    only = "only plain names such as {graceid} are allowed"
    if name == "" or name.isdigit():
        raise TemplateError(f"positional field {{{name}}} in template {template!r}: {only}")
    if not name.isidentifier():
        raise TemplateError(
            f"field {{{name}}} in template {template!r} uses attribute or index access: {only}"
        )
    if conversion is not None:
        raise TemplateError(
            f"field {{{name}!{conversion}}} in template {template!r} uses a conversion: {only}"
        )
    if spec:
        m = _SPEC.match(spec)
        if "{" in spec or "}" in spec or m is None:
            raise TemplateError(
                f"field {{{name}:{spec}}} in template {template!r} has an unsupported format "
                "spec: use a plain spec like {i:03d} or {x:>8}, without nested fields"
            )
        for part in ("width", "precision"):
            if m.group(part) and int(m.group(part)) > _MAX_WIDTH:
                raise TemplateError(
                    f"field {{{name}:{spec}}} in template {template!r}: {part} above {_MAX_WIDTH}"
                )


def fields(template: str) -> list[str]:
    """Names of the fields of `template`, in order of first use, without repeats.

    Raises
    ------
    TemplateError
        The template is malformed or uses anything but plain names.

    Examples
    --------
    >>> fields("{graceid}/{neutrino_filename}/{graceid}.json")
    ['graceid', 'neutrino_filename']
    >>> fields("no fields, {{literal}} braces")
    []
    >>> fields("{x.__class__}")
    Traceback (most recent call last):
    ...
    llama.batch.template.TemplateError: field {x.__class__} in template '{x.__class__}' uses attribute or index access: only plain names such as {graceid} are allowed
    """
    names: list[str] = []
    for _, name, spec, conversion in _parse(template):
        if name is None:
            continue
        _check_field(template, name, spec, conversion)
        if name not in names:
            names.append(name)
    return names


def _format_value(template: str, name: str, value: str, spec: str) -> str:
    """Apply a format spec; numeric specs convert the string value first."""
    if not spec:
        return value
    kind = spec[-1]
    try:
        if kind in _INT_TYPES:
            return format(int(value), spec)
        if kind in _FLOAT_TYPES:
            return format(float(value), spec)
        return format(value, spec)
    except ValueError as exc:
        raise TemplateError(
            f"cannot format {name}={value!r} with {{{name}:{spec}}} in template {template!r}: {exc}"
        ) from None


def render(
    template: str,
    values: Mapping[str, str],
    environ: Mapping[str, str] | None = os.environ,
) -> str:
    """Fill the fields of `template` from `values`, then from `environ`.

    Parameters
    ----------
    template : str
        A format string with plain-name fields, e.g. ``"{graceid}/skymap.fits"``.
    values : mapping of str to str
        The parameter vector; it wins over the environment.
    environ : mapping, optional
        Fallback for names not in `values`; ``os.environ`` by default, None for none.

    Returns
    -------
    str

    Raises
    ------
    TemplateError
        A field has no value (the message names it, the template, and the parameter
        names available), or the template is malformed or unsafe.

    Examples
    --------
    >>> render("{user}/{graceid}", {"graceid": "S1"}, environ={"user": "ann"})
    'ann/S1'
    >>> render("{graceid}/{run}", {"graceid": "S1"}, environ={})
    Traceback (most recent call last):
    ...
    llama.batch.template.TemplateError: template '{graceid}/{run}' uses field {run}, which is neither a parameter (available: graceid) nor an environment variable
    """
    out: list[str] = []
    for literal, name, spec, conversion in _parse(template):
        out.append(literal)
        if name is None:
            continue
        _check_field(template, name, spec, conversion)
        if name in values:
            value = values[name]
        elif environ is not None and name in environ:
            value = environ[name]
        else:
            available = ", ".join(sorted(values)) or "none"
            raise TemplateError(
                f"template {template!r} uses field {{{name}}}, which is neither a parameter "
                f"(available: {available}) nor an environment variable"
            )
        out.append(_format_value(template, name, str(value), spec or ""))
    return "".join(out)
