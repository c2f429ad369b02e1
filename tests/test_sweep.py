"""llama.batch.sweep: params files everywhere, product order, reproducible random draws."""

from __future__ import annotations

import itertools
import json
import tracemalloc

import pytest

from llama import storage
from llama.batch.sweep import (
    ParamsError,
    count,
    make_seed,
    parse_params,
    parse_values,
    product_vectors,
    random_vectors,
)


def test_json_and_newline_files(tmp_path):
    (tmp_path / "g.json").write_text('["S1", "S2", 3, 0.5, true, null]')
    (tmp_path / "n.txt").write_text("# neutrino lists\n\na.json\n  b.json  \r\n#c.json\n")
    params = parse_params([f"graceid={tmp_path / 'g.json'}", f"nu={tmp_path / 'n.txt'}"])
    assert params == {
        "graceid": ["S1", "S2", "3", "0.5", "true", "null"],
        "nu": ["a.json", "b.json"],
    }
    assert list(params) == ["graceid", "nu"]


def test_params_from_http(http_server):
    base_url, directory = http_server
    (directory / "ids.txt").write_text("S1\nS2\n")
    assert parse_params([f"graceid={base_url}/ids.txt"]) == {"graceid": ["S1", "S2"]}


def test_params_from_s3(s3, tmp_path):
    src = tmp_path / "nu.json"
    src.write_text(json.dumps(["a", "b"]))
    storage.put(src, f"s3://{s3}/data/nu.json")
    assert parse_params([f"nu=s3://{s3}/data/nu.json"]) == {"nu": ["a", "b"]}


@pytest.mark.parametrize(
    "content, reason",
    [
        ("", "empty"),
        ("# only a comment\n\n", "empty"),
        ("[]", "empty"),
        ('{"a": 1}', "must be a list of values, not a dict"),
        ("[1, [2]]", "flat list"),
        ('[1, {"a": 2}]', "flat list"),
        ("[1, 2", "invalid JSON"),
    ],
)
def test_bad_files_name_spec_and_reason(tmp_path, content, reason):
    p = tmp_path / "v.txt"
    p.write_text(content)
    spec = f"x={p}"
    with pytest.raises(ParamsError) as info:
        parse_params([spec])
    msg = str(info.value)
    assert spec in msg and reason in msg


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("graceid", "no '='"),
        ("1abc=f.txt", "not a valid name"),
        ("a.b=f.txt", "not a valid name"),
        ("x=", "no path"),
    ],
)
def test_bad_specs(spec, reason):
    with pytest.raises(ParamsError, match=reason):
        parse_params([spec])


def test_unreadable_and_duplicate(tmp_path):
    with pytest.raises(ParamsError, match=r"x=.*missing.txt.*not found"):
        parse_params([f"x={tmp_path / 'missing.txt'}"])
    (tmp_path / "a").write_text("1")
    with pytest.raises(ParamsError, match="more than once"):
        parse_params([f"x={tmp_path / 'a'}", f"x={tmp_path / 'a'}"])


def test_parse_values_keeps_json_strings():
    assert parse_values('["a b", "0"]') == ["a b", "0"]


def test_product_order_and_count():
    params = {"a": ["1", "2"], "b": ["x", "y", "z"]}
    vectors = list(product_vectors(params))
    assert vectors == [{"a": a, "b": b} for a in "12" for b in "xyz"]
    assert count(params, None) == 6
    assert list(product_vectors({})) == [{}]
    assert count({}, None) == 1


def test_random_reproducible_and_uniform():
    params = {"a": ["1", "2", "3"], "b": ["x", "y"]}
    first = list(random_vectors(params, 2000, seed=7))
    assert first == list(random_vectors(params, 2000, seed=7))
    assert first != list(random_vectors(params, 2000, seed=8))
    assert len(first) == 2000
    assert all(set(v) == {"a", "b"} for v in first)
    # every value shows up, roughly uniformly
    a_counts = {k: sum(v["a"] == k for v in first) for k in "123"}
    assert all(550 < c < 780 for c in a_counts.values()), a_counts
    # prefixes agree whatever n is
    assert list(random_vectors(params, 5, seed=7)) == first[:5]
    assert count(params, 2000) == 2000 and count(params, 0) == 0
    assert list(random_vectors(params, 0, seed=1)) == []


def test_random_endless_is_lazy_and_bounded():
    params = {"a": [str(i) for i in range(10)]}
    gen = random_vectors(params, -1, seed=3)
    assert count(params, -1) is None
    head = list(itertools.islice(gen, 10))
    assert head == list(random_vectors(params, 10, seed=3))
    tracemalloc.start()
    try:
        for _ in itertools.islice(gen, 20000):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_random_refuses_empty_list():
    with pytest.raises(ValueError, match="no values"):
        next(random_vectors({"a": []}, 1, seed=0))


def test_make_seed_fresh():
    assert make_seed() != make_seed()
