"""The safe template formatter: the one place that fills ``{name}`` fields.

Batch paths (``--get``, ``--put``, ``--errdump``, ``--eventdir``) and ``--format``
files are Python format strings whose fields come from the current parameter
vector first, then from the environment. Only plain names are allowed: attribute
or index access (``{x.__class__}``, ``{x[0]}``), conversions (``{x!r}``) and
positional fields (``{}``, ``{0}``) are refused, because ``str.format`` on
untrusted templates can reach object internals. A format spec is allowed when it
is a plain standard spec (``{i:03d}``, ``{x:>8}``) without nested fields.

Values are checked as they are inserted, because a value is data from a params
file or the environment while the template is the user's choice of place. In a
path or URL (``mode="name"``, the default) each inserted value must be one plain
name: no ``/`` or ``\\``, not ``.`` or ``..``, not empty, not starting with ``~``
(which local paths expand to a home directory), no NUL or other control character;
otherwise ``--put 'dst/{v}'`` with ``v = ../../x`` would write outside
``dst/``. ``mode="path"`` (``--allow-path-values``) lets values span directories
but still refuses control characters; ``mode="text"`` (the contents of
``--format`` files, which are not paths) inserts anything.

The environment never fills a field with a credential, in any mode: ``AWS_*``,
names containing SECRET, TOKEN, PASSWORD, KEY or CREDENTIAL, LLAMA's service URLs
and webhooks, anything from the llama config file, and any URL carrying a query
string or ``user:password@`` (`llama.config.credential_reason`). Otherwise a
``--format`` file holding ``{AWS_SECRET_ACCESS_KEY}`` would copy the key into the
event and into every upload of it. A params file may still give such a name: its
values are the user's own data.

Examples
--------
>>> render("s3://llama/sim/{graceid}/skymap_info.json", {"graceid": "S190425z"})
's3://llama/sim/S190425z/skymap_info.json'
>>> fields("{a}-{b:03d}-{a}")
['a', 'b']
>>> render("{run:04d}", {"run": "7"})
'0007'
>>> render("dst/{v}", {"v": "../x"}, environ={})
Traceback (most recent call last):
...
llama.batch.template.UnsafeValueError: parameter v: value '../x' contains a path separator '/'; ...
"""

from __future__ import annotations

import os
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "MODES",
    "CredentialFieldError",
    "TemplateError",
    "UnsafeValueError",
    "check_values",
    "fields",
    "render",
]

#: What an inserted value may be: one plain name (paths and URLs, the default), a
#: path spanning directories (``--allow-path-values``), or any text (``--format``).
MODES = ("name", "path", "text")

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


class UnsafeValueError(TemplateError):
    """A value would change which directory a path or URL points into."""


class CredentialFieldError(TemplateError):
    """A field would be filled with a credential from the environment."""


def _shown(value: str, limit: int = 80) -> str:
    # a hostile value may be megabytes long: the message shows its start only
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...' ({len(value)} characters)"


def _value_problem(piece: str, mode: str) -> str | None:
    """Why `piece` may not be inserted in `mode`, or None when it may."""
    if mode == "text":
        return None
    for char in piece:
        # NUL truncates paths in C libraries and a newline forges log lines: never allowed
        if unicodedata.category(char) == "Cc":
            return f"contains the control character {char!r}"
    if mode == "path":
        return None
    if not piece:
        return "is empty"
    for sep in ("/", "\\"):
        if sep in piece:
            return f"contains a path separator {sep!r}"
    if piece == ".":
        return "names the current directory"
    if piece == "..":
        return "names the parent directory"
    if piece.startswith("~"):
        return "starts with '~', which a local path reads as a home directory"
    if "%" in piece:
        # a URL's server decodes %2e%2e and %2f back into '..' and '/'
        from urllib.parse import unquote

        decoded = unquote(piece)
        if decoded != piece:
            problem = _value_problem(decoded, mode)
            if problem is not None:
                return f"decodes as a URL to {_shown(decoded)}, which {problem}"
    return None


def _insert(template: str, name: str, spec: str, value: str, mode: str, origin: str | None) -> str:
    """Format one value for one field and check what will actually be inserted."""
    piece = _format_value(template, name, value, spec)
    problem = _value_problem(piece, mode)
    if problem is None:
        return piece
    where = origin or f"parameter {name}"
    inserted = f" (inserted as {_shown(piece)})" if piece != value else ""
    if problem.startswith("contains the control"):
        rule = "values inserted into paths and URLs may not contain control characters"
        fix = "remove it from the value"
    else:
        rule = (
            "a value inserted into a path or URL must be one plain name: no '/' or '\\', "
            "not '.' or '..', not empty, not starting with '~', no control characters"
        )
        fix = (
            "correct the value, or give --allow-path-values if values are meant to name "
            "subdirectories"
        )
    raise UnsafeValueError(
        f"{where}: value {_shown(value)}{inserted} {problem}; {rule} (template {template!r}): {fix}"
    )


def _from_environ(template: str, name: str, environ: Mapping[str, str]) -> str:
    """The environment's value for field `name`, refused when it is a credential."""
    from llama.config import credential_reason

    value = str(environ[name])
    reason = credential_reason(name, value)
    if reason is None:
        return value
    # a --format file is a whole file: name it by its field only, not by its text
    where = f" of template {template!r}" if len(template) <= 80 else ""
    raise CredentialFieldError(
        f"field {{{name}}}{where} would copy the environment variable {name}, a credential "
        f"({reason}); the environment never fills templates with credentials, so that they "
        f"cannot end up in files or uploads: remove the field, or give the value in a "
        f"params file ({name}=FILE) if it really belongs there"
    )


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
    *,
    mode: str = "name",
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
    mode : {"name", "path", "text"}
        What an inserted value may be (see the module docstring): one plain name
        (the default, for paths and URLs), a path (``--allow-path-values``), or any
        text (the contents of ``--format`` files). Environment values obey it too.

    Returns
    -------
    str

    Raises
    ------
    UnsafeValueError
        A value breaks the rule of `mode`; the message names the field, the value
        and the fix.
    CredentialFieldError
        A field would be filled from an environment variable that is a credential
        (see the module docstring); the message names the field and why.
    TemplateError
        A field has no value (the message names it, the template, and the parameter
        names available), or the template is malformed or unsafe.

    Examples
    --------
    >>> render("{AWS_SECRET_ACCESS_KEY}", {}, environ={"AWS_SECRET_ACCESS_KEY": "k"})
    Traceback (most recent call last):
    ...
    llama.batch.template.CredentialFieldError: field {AWS_SECRET_ACCESS_KEY} of template '{AWS_SECRET_ACCESS_KEY}' would copy the environment variable AWS_SECRET_ACCESS_KEY, a credential (AWS_* variables give access to S3); ...
    >>> render("{user}/{graceid}", {"graceid": "S1"}, environ={"user": "ann"})
    'ann/S1'
    >>> render("{graceid}/{run}", {"graceid": "S1"}, environ={})
    Traceback (most recent call last):
    ...
    llama.batch.template.TemplateError: template '{graceid}/{run}' uses field {run}, which is neither a parameter (available: graceid) nor an environment variable
    >>> render("runs/{sub}/x", {"sub": "a/b"}, environ={}, mode="path")
    'runs/a/b/x'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    out: list[str] = []
    for literal, name, spec, conversion in _parse(template):
        out.append(literal)
        if name is None:
            continue
        _check_field(template, name, spec, conversion)
        if name in values:
            value, origin = values[name], None
        elif environ is not None and name in environ:
            value = _from_environ(template, name, environ)
            origin = f"environment variable {name}"
        else:
            available = ", ".join(sorted(values)) or "none"
            raise TemplateError(
                f"template {template!r} uses field {{{name}}}, which is neither a parameter "
                f"(available: {available}) nor an environment variable"
            )
        out.append(_insert(template, name, spec or "", str(value), mode, origin))
    return "".join(out)


def check_values(
    templates: Iterable[str],
    params: Mapping[str, Sequence[str]],
    environ: Mapping[str, str] | None = os.environ,
    *,
    mode: str = "name",
    origin: Callable[[str, int], str] | None = None,
) -> None:
    """Refuse, before any event runs, every value that `render` would refuse.

    Every value of every params list that a template uses is tried, so a Cartesian
    sweep (whose vectors draw only on these values) and random draws from the same
    lists are both checked in full; a field that no list provides is tried with
    its environment value.

    Parameters
    ----------
    templates : iterable of str
        The path and URL templates of the run.
    params : mapping of str to sequence of str
        The possible values of each name.
    environ : mapping, optional
        Fallback for names not in `params`, as in `render`.
    mode : {"name", "path", "text"}
        As in `render`.
    origin : callable, optional
        ``origin(name, i)`` says where value ``i`` of ``name`` came from (e.g.
        ``"graceid=ids.txt line 3"``); the error message starts with it.

    Raises
    ------
    UnsafeValueError
        The first value that breaks the rule, with its origin.
    CredentialFieldError
        A field would be filled with a credential from the environment.
    TemplateError
        A template is malformed or unsafe.

    Examples
    --------
    >>> check_values(["dst/{v}"], {"v": ["ok", "a/../../x"]}, environ={},
    ...              origin=lambda name, i: f"{name}=list.txt line {i + 1}")
    Traceback (most recent call last):
    ...
    llama.batch.template.UnsafeValueError: v=list.txt line 2: value 'a/../../x' contains a path separator '/'; ...
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    for template in templates:
        for _, name, spec, conversion in _parse(template):
            if name is None:
                continue
            _check_field(template, name, spec, conversion)
            if name in params:
                for i, value in enumerate(params[name]):
                    where = (
                        origin(name, i) if origin is not None else f"parameter {name} value {i + 1}"
                    )
                    _insert(template, name, spec or "", str(value), mode, where)
            elif environ is not None and name in environ:
                value = _from_environ(template, name, environ)
                where = f"environment variable {name}"
                _insert(template, name, spec or "", value, mode, where)
