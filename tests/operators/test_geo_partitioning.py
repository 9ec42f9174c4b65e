"""Java's murmur2 partitioner and the country distance table."""

from __future__ import annotations

import pytest

from paystream.geo import CENTROIDS, distance_km
from paystream.partitioning import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # org.apache.kafka.common.utils.UtilsTest.testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_java(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # librdkafka rdmurmur2.c unittest_murmur2 (the unsigned view of Java's result)
        (b"kafka", 0xD067CF64),
        (b"giberish123456789", 0x8F552B0C),
        (b"1234", 0x9FC97B14),
        (b"234", 0xE7C009CA),
        (b"34", 0x873930DA),
        (b"4", 0x5A4B5CA1),
        (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424F1C),
        (b"", 0x106E08D9),
    ],
)
def test_murmur2_matches_librdkafka(key: bytes, expected: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == expected


def test_partition_is_the_positive_hash_modulo_partitions() -> None:
    assert partition_for(b"21", 12) == (-973932308 & 0x7FFFFFFF) % 12
    assert partition_for(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
    assert {partition_for(f"acct-{n}".encode(), 12) for n in range(500)} == set(range(12))


def test_the_table_covers_the_common_countries() -> None:
    eu = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
    others = "GB US CA MX BR AR JP CN IN AU NZ ZA NG EG AE SG TR RU UA KR TH".split()
    assert set(eu + others) <= set(CENTROIDS)
    assert len(CENTROIDS) >= 60


def test_distances_are_symmetric_whole_kilometres() -> None:
    assert distance_km("FR", "FR") == 0
    assert distance_km("FR", "DE") == distance_km("DE", "FR")
    paris_berlin = distance_km("FR", "DE")
    assert isinstance(paris_berlin, int) and 500 < paris_berlin < 1_200
    us_japan = distance_km("US", "JP")
    assert us_japan is not None and 9_000 < us_japan < 11_500
    assert distance_km("FR", "XX") is None and distance_km("XX", "FR") is None
