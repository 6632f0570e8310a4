#!/usr/bin/env python3
"""Writes tests/data/penguins_small.csv: a small table for the CSV training-data tests.

300 rows, three classes ("adelie", "chinstrap", "gentoo", as text), four numeric features
on very different scales (so standardization matters), 12 rows with a missing cell
(empty, "NA" or text) at fixed places. Deterministic: the same file on every run
(a linear congruential generator, not Python's random, whose streams may change).
    python3 tests/data/make_penguins_csv.py > tests/data/penguins_small.csv
"""
import sys

state = 12345


def uniform():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 11) / float(1 << 53)


def noise(scale):
    return (sum(uniform() for _ in range(6)) - 3.0) * scale


classes = {  # bill length mm, bill depth mm, flipper mm, body mass g
    "adelie": (38.8, 18.3, 190.0, 3700.0),
    "chinstrap": (48.8, 18.4, 196.0, 3730.0),
    "gentoo": (47.5, 15.0, 217.0, 5076.0),
}
scales = (2.5, 1.1, 6.5, 450.0)
names = sorted(classes)
out = sys.stdout
out.write("bill_length_mm,bill_depth_mm,species,flipper_length_mm,body_mass_g\n")
broken = {17: (0, ""), 41: (1, "NA"), 77: (2, "abc"), 90: (3, ""), 123: (0, "?"), 150: (1, ""),
          181: (3, "NA"), 202: (2, ""), 233: (0, "1.2.3"), 250: (3, ""), 271: (1, "x"), 299: (2, "")}
for i in range(300):
    species = names[i % 3]
    values = ["%.1f" % (m + noise(s)) for m, s in zip(classes[species], scales)]
    if i in broken:
        col, text = broken[i]
        values[col] = text
    out.write(",".join(values[:2] + [species] + values[2:]) + "\n")
