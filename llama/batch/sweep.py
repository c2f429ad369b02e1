"""Parameter sweeps: params files -> parameter vectors.

A params spec is ``name=PATH`` (bash-assignment style), where PATH (local, HTTP(S)
or S3, read through `llama.storage`) holds the possible values of ``name``: a JSON
list, or one value per line (blank lines and ``#`` comments skipped). A parameter
vector is a dict ``name -> str``; the batch runner makes one event per vector,
either over the full Cartesian product or over reproducible random draws.

Examples
--------
>>> params = {"graceid": ["S1", "S2"], "nu": ["a.json", "b.json"]}
>>> [v["graceid"] + "/" + v["nu"] for v in product_vectors(params)]
['S1/a.json', 'S1/b.json', 'S2/a.json', 'S2/b.json']
>>> count(params, None), count(params, 10), count(params, -1)
(4, 10, None)
>>> list(random_vectors(params, 2, seed=1)) == list(random_vectors(params, 2, seed=1))
True
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence

from llama import storage

__all__ = [
    "Params",
    "ParamsError",
    "count",
    "make_seed",
    "parse_params",
    "parse_values",
    "product_vectors",
    "random_vectors",
]

# random draws are made in fixed-size blocks: memory stays bounded for endless
# runs, and the first k vectors do not depend on how many were asked for
_BLOCK = 1024


class ParamsError(ValueError):
    """A params spec or params file is unusable; the message names the spec."""


class Params(dict):
    """``{name: [values...]}`` that remembers where each value was read.

    A plain dict to every caller; `origin` gives the place of one value for error
    messages (``graceid=ids.txt line 3``), so a bad value can be found and fixed.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.places: dict[str, tuple[str, list[int]]] = {}

    def origin(self, name: str, index: int) -> str:
        """Where value `index` of `name` came from: ``SPEC line N``.

        Examples
        --------
        >>> p = Params(g=["S1", "S2"])
        >>> p.places["g"] = ("g=ids.txt", [1, 3])
        >>> p.origin("g", 1), p.origin("x", 0)
        ('g=ids.txt line 3', 'parameter x value 1')
        """
        if name not in self.places:
            return f"parameter {name} value {index + 1}"
        spec, lines = self.places[name]
        return f"{spec} line {lines[index]}"


def parse_values(text: str) -> list[str]:
    """Values from the text of a params file: a flat JSON list or one per line.

    JSON is recognised by a leading ``[`` (or ``{``, which is then an error);
    JSON strings are kept as they are, other scalars as their JSON text
    (``1``, ``0.5``, ``true``, ``null``). In a list of lines, a line written as a
    JSON string (``"S1"``) is that string; an HTML or XML page is refused.

    Raises
    ------
    ValueError
        Invalid JSON, JSON that is not a flat list, or no values at all.

    Examples
    --------
    >>> parse_values('["S1", 2, 0.5, true]')
    ['S1', '2', '0.5', 'true']
    >>> parse_values("# GraceIDs\\nS1\\n\\n  S2  \\n")
    ['S1', 'S2']
    >>> parse_values('"S1"\\n"S 2"\\n')  # lines written as JSON strings lose their quotes
    ['S1', 'S 2']
    """
    return [value for value, _ in _located_values(text)]


_MARKUP = ("doctype", "html", "?xml", "head", "body", "xml")


def _unquoted(value: str) -> str:
    """A line written as a JSON string (``"S1"``) is that string, without its quotes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _located_values(text: str) -> list[tuple[str, int]]:
    """`parse_values`, each value with the line it starts on (counting from 1)."""
    start = len(text) - len(text.lstrip())
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc})") from None
        if not isinstance(data, list):
            raise ValueError(f"JSON must be a list of values, not a {type(data).__name__}")
        located = []
        # the list is valid JSON: walk it again item by item only to learn their lines
        decoder, pos = json.JSONDecoder(), start + 1
        for i, item in enumerate(data):
            if isinstance(item, (list, dict)):
                raise ValueError(f"JSON must be a flat list; item {i} is a {type(item).__name__}")
            while text[pos] in " \t\r\n,":
                pos += 1
            located.append((item if isinstance(item, str) else json.dumps(item), _line(text, pos)))
            _, pos = decoder.raw_decode(text, pos)
    elif stripped[:1] == "<" and stripped[:200].lower().lstrip("<!").startswith(_MARKUP):
        # a login or error page served in place of the list would become its values
        raise ValueError(
            "this is an HTML/XML page, not a list of values: check the path or URL "
            "(a login or error page?)"
        )
    else:
        located = []
        for number, line in enumerate(text.splitlines(), start=1):
            value = line.strip()
            if value and not value.startswith("#"):
                located.append((_unquoted(value), number))
    if not located:
        raise ValueError("the list of values is empty")
    return located


def parse_params(specs: Sequence[str]) -> Params:
    """Read ``name=PATH`` specs into ``{name: [values...]}``, in the order given.

    Parameters
    ----------
    specs : sequence of str
        E.g. ``["graceid=data/graceids.txt", "nu=s3://llama/data/nu.json"]``.

    Returns
    -------
    Params
        A dict of str to list of str, which also knows the line of every value.

    Raises
    ------
    ParamsError
        A spec without ``=``, a name that is not a plain identifier (templates use
        it as ``{name}``), a repeated name, an unreadable file, an empty list, or
        JSON that is not a flat list. The message names the spec and the reason.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ids.json")
    >>> with open(p, "w") as f:
    ...     _ = f.write('["S190425z", "S200105ae"]')
    >>> parse_params([f"graceid={p}"])
    {'graceid': ['S190425z', 'S200105ae']}
    """
    params = Params()
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        shown = storage.redact(spec)
        if not sep:
            raise ParamsError(f"params spec {shown!r} has no '=': write NAME=PATH")
        if not name.isidentifier():
            raise ParamsError(
                f"params spec {shown!r}: {name!r} is not a valid name (letters, digits and "
                "underscores, not starting with a digit)"
            )
        if name in params:
            raise ParamsError(f"params spec {shown!r}: {name!r} is given more than once")
        if not path:
            raise ParamsError(f"params spec {shown!r} has no path after '='")
        try:
            text = storage.read_text(path)
        except storage.StorageError as exc:
            raise ParamsError(f"params spec {shown!r}: {exc}") from None
        try:
            located = _located_values(text)
        except ValueError as exc:
            raise ParamsError(f"params spec {shown!r}: {exc}") from None
        params[name] = [value for value, _ in located]
        params.places[name] = (f"{name}={storage.redact(path)}", [n for _, n in located])
    return params


def product_vectors(params: Mapping[str, Sequence[str]]) -> Iterator[dict[str, str]]:
    """Every combination of values, the last name varying fastest.

    No params give one empty vector (a single event driven by the environment).

    Examples
    --------
    >>> list(product_vectors({"a": ["1", "2"], "b": ["x"]}))
    [{'a': '1', 'b': 'x'}, {'a': '2', 'b': 'x'}]
    """
    names = list(params)
    for combo in itertools.product(*(params[n] for n in names)):
        yield dict(zip(names, combo, strict=True))


def random_vectors(
    params: Mapping[str, Sequence[str]], n: int, seed: int
) -> Iterator[dict[str, str]]:
    """`n` random vectors, each variable drawn independently and uniformly.

    Parameters
    ----------
    params : mapping of str to sequence of str
        Possible values per name.
    n : int
        Number of vectors; negative for an endless generator (bounded memory).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same vectors,
        and the first k vectors are the same whatever `n` is.

    Examples
    --------
    >>> gen = random_vectors({"a": ["1", "2", "3"]}, -1, seed=42)
    >>> len([next(gen) for _ in range(5)])
    5
    """
    import numpy as np

    names = list(params)
    for name in names:
        if len(params[name]) == 0:
            raise ValueError(f"parameter {name!r} has no values to draw from")
    rng = np.random.default_rng(seed)
    remaining = n
    while remaining != 0:
        # always draw whole blocks, in the same order, so prefixes agree across n
        block = {name: rng.integers(0, len(params[name]), size=_BLOCK) for name in names}
        take = _BLOCK if remaining < 0 else min(_BLOCK, remaining)
        for i in range(take):
            yield {name: params[name][int(block[name][i])] for name in names}
        if remaining > 0:
            remaining -= take


def count(params: Mapping[str, Sequence[str]], random_n: int | None) -> int | None:
    """How many vectors a run makes: None when endless.

    Parameters
    ----------
    params : mapping
        Possible values per name.
    random_n : int or None
        ``--random N`` (None: the Cartesian product).

    Examples
    --------
    >>> count({"a": ["1", "2"], "b": ["x", "y", "z"]}, None)
    6
    """
    if random_n is None:
        return math.prod(len(v) for v in params.values())
    return None if random_n < 0 else random_n


def make_seed() -> int:
    """A fresh random seed (63 bits, so it prints and parses as a plain integer).

    Examples
    --------
    >>> 0 <= make_seed() < 2**63
    True
    """
    return secrets.randbits(63)
