"""``DuplicateIds``: exact on what it saw, bounded in memory, one warning."""

from __future__ import annotations

import logging

import pytest

from aiosagemaker.batch._inputs import DuplicateIds, Shard


def test_counts_every_repeat_and_names_each_id_once(caplog: pytest.LogCaptureFixture) -> None:
    duplicates = DuplicateIds()
    seen = [duplicates.add(i) for i in ["a", "b", "a", "c", "a", "b", "1", "1"]]
    assert seen == [False, False, True, False, True, True, False, True]
    assert duplicates.count == 4
    assert duplicates.examples == ["a", "b", "1"]
    with caplog.at_level(logging.WARNING, logger="aiosagemaker"):
        duplicates.warn()
        duplicates.warn()  # once only
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "4 input(s) reuse the id of an earlier input ('a', 'b', '1'): "
    )


def test_no_duplicates_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    duplicates = DuplicateIds()
    for i in range(100):
        duplicates.add(str(i))
    with caplog.at_level(logging.DEBUG, logger="aiosagemaker"):
        duplicates.warn()
    assert duplicates.count == 0 and caplog.records == []


def test_names_the_first_few_and_says_there_are_more(caplog: pytest.LogCaptureFixture) -> None:
    duplicates = DuplicateIds(examples=2)
    long_id = "x" * 500
    for i in [long_id, "b", "c", long_id, "b", "c"]:
        duplicates.add(i)
    assert duplicates.examples == [long_id, "b"]
    with caplog.at_level(logging.WARNING, logger="aiosagemaker"):
        duplicates.warn()
    message = caplog.records[0].getMessage()
    assert f"('{'x' * 61}...', 'b', ...)" in message and long_id not in message


@pytest.mark.parametrize("shard", [None, Shard(1, 4)])
def test_exact_across_growth_and_bounded_memory(shard: Shard | None) -> None:
    # One shard's ids share their shard hash modulo N: the table must not crowd them together.
    ids = [f"input-{i}" for i in range(60_000)]
    ids = [i for i in ids if shard is None or i in shard]
    duplicates = DuplicateIds()
    assert not any(duplicates.add(i) for i in ids)
    assert all(duplicates.add(i) for i in ids[::7])
    assert duplicates.count == len(ids[::7])
    # 8-byte slots, between 3/8 and 3/4 full: 10.7 to 21.3 bytes per distinct id.
    assert len(ids) * 32 / 3 <= duplicates.nbytes <= len(ids) * 64 / 3
