"""The auditor's own geography: country centroids and great-circle distances.

A copy of the table and of the formula docs/RULES.md gives for the impossible-travel rule
(haversine between the centroids of ISO 3166 alpha-2 countries, Earth radius 6,371 km, rounded
to whole kilometres), kept apart from the engine's on purpose: an engine bug in either cannot
hide from the auditor by being shared with it.

>>> distance_km("FR", "FR"), distance_km("DE", "XX")
(0, None)
>>> 800 < distance_km("FR", "DE") < 900
True
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources
from math import asin, cos, radians, sin, sqrt
from typing import Final

RADIUS_KM: Final = 6371.0


def centroids() -> dict[str, tuple[float, float]]:
    """country → (latitude, longitude) in degrees, from `verify/data/country_centroids.csv`."""
    with (resources.files("verify") / "data" / "country_centroids.csv").open(encoding="utf-8") as table:
        return {row["country"]: (float(row["lat"]), float(row["lon"])) for row in csv.DictReader(table)}


_CENTROIDS: Final = centroids()


@lru_cache(maxsize=4096)
def distance_km(origin: str, destination: str) -> int | None:
    """Kilometres between two countries' centroids; None if either country is unknown."""
    if origin not in _CENTROIDS or destination not in _CENTROIDS:
        return None
    (lat_a, lon_a), (lat_b, lon_b) = _CENTROIDS[origin], _CENTROIDS[destination]
    phi_a, phi_b = radians(lat_a), radians(lat_b)
    half_chord = sin((phi_b - phi_a) / 2) ** 2 + cos(phi_a) * cos(phi_b) * sin(radians(lon_b - lon_a) / 2) ** 2
    return round(2 * RADIUS_KM * asin(sqrt(half_chord)))
