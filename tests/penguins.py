"""Tables for the tests: a penguins-like CSV made here (text categories, NA values, a target that the
measurements predict), and the real Palmer penguins table that the `palmerpenguins` package ships.

Nothing is downloaded: the real table is the package's own file (a dev dependency); where the
package is missing, `real_penguins()` skips saying why (under CI=true it fails: tests/pg.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
# per species: island weights (Biscoe, Dream, Torgersen), bill length, bill depth, flipper, mass (mean, sd)
SPECIES = {
    "Adelie": ((0.3, 0.35, 0.35), (38.8, 2.6), (18.3, 1.2), (190.0, 6.5), (3700.0, 450.0)),
    "Chinstrap": ((0.0, 1.0, 0.0), (48.8, 3.3), (18.4, 1.1), (196.0, 7.1), (3730.0, 380.0)),
    "Gentoo": ((1.0, 0.0, 0.0), (47.5, 3.1), (15.0, 1.0), (217.0, 6.5), (5080.0, 500.0)),
}
ISLANDS = ("Biscoe", "Dream", "Torgersen")


def penguin_rows(n: int = 240, seed: int = 0, na: bool = True) -> list[list[str]]:
    """Rows as a CSV holds them (text), the header first. With `na`: a few 'NA' and empty cells."""
    rng = np.random.default_rng(seed)
    rows = [list(COLUMNS)]
    names = list(SPECIES)
    for i in range(n):
        species = names[i % 3]
        islands, *stats = SPECIES[species]
        island = ISLANDS[rng.choice(3, p=islands)]
        bill, depth, flipper, mass = (rng.normal(m, s) for m, s in stats)
        row = [species, island, f"{bill:.1f}", f"{depth:.1f}", f"{flipper:.0f}", f"{mass:.0f}",
               rng.choice(["male", "female"]), str(2007 + i % 3)]
        if na and i % 17 == 5:
            row[6] = "NA"  # sex unknown: its own category
        if na and i % 29 == 7:
            row[2] = ""  # a missing measurement: the training median and an indicator
        if na and i % 31 == 11:
            row[5] = "NA"
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def write_penguins_like(path: Path, n: int = 240, seed: int = 0, na: bool = True) -> Path:
    return write_rows(path, penguin_rows(n, seed, na))


def real_penguins() -> Path:
    """The path of palmerpenguins' penguins.csv (344 rows, NA values), or a skip that says why."""
    from pg import require_module

    require_module("palmerpenguins", "the real penguins table comes from the palmerpenguins package "
                                     "(pip install 'tunectl[dev]')")
    import palmerpenguins

    path = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
    assert path.is_file(), path
    return path
