"""Great-circle distances between countries, for the impossible-travel rule.

Each country is one point, its centroid, from `paystream/data/country_centroids.csv`
(ISO 3166 alpha-2, latitude, longitude), loaded once as package data.

>>> distance_km("FR", "FR")
0
>>> distance_km("DE", "XX") is None
True
"""

from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from importlib import resources
from typing import Final

EARTH_RADIUS_KM: Final = 6371.0


def _load_centroids() -> dict[str, tuple[float, float]]:
    """Read the centroid table: country → (latitude, longitude) in radians."""
    text = (resources.files("paystream") / "data" / "country_centroids.csv").read_text("utf-8")
    return {
        row["country"]: (math.radians(float(row["lat"])), math.radians(float(row["lon"])))
        for row in csv.DictReader(io.StringIO(text))
    }


CENTROIDS: Final = _load_centroids()


@lru_cache(maxsize=8192)
def distance_km(a: str, b: str) -> int | None:
    """Haversine distance between the centroids of countries `a` and `b`, rounded to whole km.

    `None` when either country is not in the table (the rule then cannot judge the trip).
    """
    first = CENTROIDS.get(a)
    second = CENTROIDS.get(b)
    if first is None or second is None:
        return None
    lat1, lon1 = first
    lat2, lon2 = second
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return round(2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h)))
