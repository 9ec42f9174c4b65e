"""The auditor's geography is its own copy; it must still agree with the rule the engine applies."""

from __future__ import annotations

import itertools

from paystream import geo as engine_geo
from verify import geo


def test_the_auditor_and_the_engine_measure_every_pair_of_countries_alike() -> None:
    countries = sorted(geo.centroids())
    assert countries == sorted(engine_geo.CENTROIDS)
    for origin, destination in itertools.product(countries, countries):
        assert geo.distance_km(origin, destination) == engine_geo.distance_km(origin, destination), (
            origin, destination)


def test_an_unknown_country_has_no_distance() -> None:
    assert geo.distance_km("FR", "ZZ") is None and geo.distance_km("ZZ", "ZZ") is None
