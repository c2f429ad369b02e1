"""docs/science.md: every citation of it names a section that exists, and it stays in
step with the options and constants the code defines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llama.config import ANALYSIS_OPTIONS
from llama.science import constants
from llama.science.odds import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
SCIENCE = ROOT / "docs" / "science.md"
# where users meet citations: the README, docstrings and messages of the package
CITING = [ROOT / "README.md", *sorted((ROOT / "llama").rglob("*.py"))]


def _plain(text: str) -> str:
    """Text without markup that a citation may or may not carry, spaces collapsed."""
    return " ".join(text.replace("`", "").split())


def _headings() -> set[str]:
    return {_plain(m) for m in re.findall(r"^#{1,4} (.+)$", SCIENCE.read_text(), re.M)}


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_no_citation_of_the_missing_spec():
    # SCIENCE.md is not in the repository: a reader cannot follow a citation of it
    cited = [str(p.relative_to(ROOT)) for p in CITING if "SCIENCE.md" in p.read_text()]
    assert cited == [], f"cite docs/science.md instead in {cited}"


def test_every_citation_names_an_existing_section():
    headings = _headings()
    found = 0
    for path in CITING:
        text = _plain(path.read_text())
        for m in re.finditer(r"docs/science\.md[,:]? ([\"'])(.+?)\1", text):
            found += 1
            assert m.group(2) in headings, f"{path.name}: no section {m.group(2)!r}"
        for m in re.finditer(r"docs/science\.md#([\w\-]+)", text):
            found += 1
            assert m.group(1) in {_anchor(h) for h in headings}, f"{path.name}: #{m.group(1)}"
    assert found >= 15  # README, odds, background, subthreshold, pvalue, handlers, ...


def test_table_of_contents_links_resolve():
    anchors = {_anchor(h) for h in _headings()}
    links = re.findall(r"\]\(#([\w\-]+)\)", SCIENCE.read_text())
    assert len(links) >= 12
    assert sorted(set(links) - anchors) == []


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_statistic_option_is_documented_with_all_its_values(name):
    variable = ANALYSIS_OPTIONS[name][0]
    rows = [line for line in SCIENCE.read_text().splitlines() if line.startswith(f"| `{variable}`")]
    assert len(rows) == 1, variable
    for value in OPTIONS[name]:
        assert f"`{value}`" in rows[0], (variable, value)


def test_every_analysis_variable_is_documented():
    text = SCIENCE.read_text()
    for variable, _, _ in ANALYSIS_OPTIONS.values():
        assert f"`{variable}`" in text, variable


@pytest.mark.parametrize(
    "name, shown",
    [
        ("K0", "400.8"),
        ("RHO_MIN", "5.59"),
        ("N0", "1.1"),
        ("BEAMING_FACTOR", "10"),
        ("NU_BACKGROUND_RATE_HZ", "6.4e-3 Hz"),
        ("E_GW_MIN", "1.87e-3"),
        ("E_GW_MAX", "18.7"),
        ("E_NU_MIN", "1e-6"),
        ("E_NU_MAX", "0.1"),
        ("NDOT_GPC3_YR", "1500"),
    ],
)
def test_constants_on_the_page_are_the_codes(name, shown):
    # the page shows each constant as written here; the value must be the code's
    assert float(shown.split()[0]) == getattr(constants, name)
    row = [line for line in SCIENCE.read_text().splitlines() if f"`{name}`" in line]
    assert row and shown in row[0], name


def test_derived_numbers_on_the_page():
    from llama.science.gw_null import horizon_volume_mpc3, r0_mpc

    text = SCIENCE.read_text()
    assert f"r0 = k0·√E⁺_gw / ρ_min ≈ {r0_mpc():.2f} Mpc" in text
    assert f"V0 = 4/3·π·r0³ ≈ {horizon_volume_mpc3():.3e} Mpc³".replace("e+0", "e") in text
    assert f"{constants.NDOT_MPC3_S:.3e} Mpc⁻³ s⁻¹".replace("e-", "e-") in text
    # the code unit: 1 kg Mpc² / s² in erg (1 Mpc = 3.0857e22 m; 1 J = 1e7 erg)
    assert f"≈ {(3.0857e22**2) * 1e7:.3g} erg".replace("e+", "e") in text
