"""The batch job's inputs beyond plain JSON Lines: gzip JSON Lines, Parquet, and S3 objects (one,
or every object under a prefix) read from the local stack's S3, with their fingerprints."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiosagemaker import S3Uri
from aiosagemaker.batch._input_parquet import ParquetColumns
from aiosagemaker.batch._input_s3 import S3Source, _Gunzip, _LineSplitter
from aiosagemaker.batch._inputs import (
    InputError,
    InputItem,
    InputSource,
    ParquetUnavailableError,
    input_changes,
    open_input_source,
)
from aiosagemaker.batch._s3 import S3Error, S3Objects, open_s3
from aiosagemaker.local import LocalStack

# --- helpers ---------------------------------------------------------------------------------


def _jsonl(values: list[Any]) -> bytes:
    return b"".join(orjson.dumps(v) + b"\n" for v in values)


def _parquet(table: pa.Table, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    return buffer.getvalue()


async def _items(source: InputSource) -> list[InputItem]:
    return [item async for item in source.items()]


def _bodies(items: list[InputItem]) -> list[Any]:
    return [None if i.body is None else orjson.loads(i.body) for i in items]


# --- local gzip JSON Lines -------------------------------------------------------------------


async def test_gzip_lines_are_read_decompressed(tmp_path: Path) -> None:
    single = tmp_path / "one.jsonl.gz"
    single.write_bytes(gzip.compress(_jsonl([{"i": i} for i in range(1200)])))
    # Multi-member, as `cat a.gz b.gz` makes, the second one without a final newline.
    multi = tmp_path / "two.JSONL.GZ"
    compressed = gzip.compress(b'{"a": 1}\n{"body": "x", "id": "b"}\n') + gzip.compress(b"[3]")
    multi.write_bytes(compressed)

    items = await _items(open_input_source(str(single)))
    assert [i.n for i in items] == list(range(1, 1201))
    assert _bodies(items)[-1] == {"i": 1199} and items[-1].input_id == "1200"

    source = open_input_source(str(multi))
    items = await _items(source)
    assert [(i.n, i.input_id, i.body, i.content_type) for i in items] == [
        (1, "1", b'{"a": 1}', "application/json"),
        (2, "b", b"x", "text/plain"),
        (3, "3", b"[3]", "application/json"),
    ]
    # Counting would decompress it all: no count. The fingerprint is of the file as it is.
    assert source.count() is None
    fingerprint = source.fingerprint()
    assert fingerprint["kind"] == "file" and fingerprint["size"] == len(compressed)
    assert fingerprint["sha256"] == hashlib.sha256(compressed).hexdigest()


async def test_a_damaged_gzip_file_is_an_input_error(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(_jsonl([{"i": i} for i in range(100)]))[:-20])
    with pytest.raises(InputError, match="is not valid gzip") as caught:
        await _items(open_input_source(str(truncated)))
    # An OSError: the job reports it as an input it cannot read.
    assert isinstance(caught.value, OSError)
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_bytes(b'{"i": 1}\n')
    with pytest.raises(InputError, match="is not valid gzip"):
        await _items(open_input_source(str(not_gzip)))


# --- local Parquet ---------------------------------------------------------------------------


async def test_parquet_payloads_by_type(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table(
        {
            "body": pa.array([b"\x00\x01", b"\xff"], pa.binary()),
            "text": ["héllo", "world"],
            "obj": [{"x": 1, "tags": ["a"]}, {"x": 2, "tags": []}],
            "num": [1.5, 2.0],
            "flag": [True, False],
            "other": [1, 2],
        }
    )
    path.write_bytes(_parquet(table))

    binary = open_input_source(str(path))
    assert binary.count() == 2 and binary.uses_s3 is False
    items = await _items(binary)
    assert [(i.n, i.input_id, i.body, i.content_type) for i in items] == [
        (1, "1", b"\x00\x01", "application/octet-stream"),
        (2, "2", b"\xff", "application/octet-stream"),
    ]
    text = await _items(open_input_source(str(path), payload_column="text"))
    assert [(i.body, i.content_type) for i in text] == [
        ("héllo".encode(), "text/plain"),
        (b"world", "text/plain"),
    ]
    obj = await _items(open_input_source(str(path), payload_column="obj"))
    assert _bodies(obj) == [{"x": 1, "tags": ["a"]}, {"x": 2, "tags": []}]
    assert {i.content_type for i in obj} == {"application/json"}
    for column, expected in (("num", [1.5, 2.0]), ("flag", [True, False])):
        items = await _items(open_input_source(str(path), payload_column=column))
        assert _bodies(items) == expected
        assert {i.content_type for i in items} == {"application/json"}

    # The job's content type replaces every default.
    for column in ("body", "text", "obj"):
        items = await _items(
            open_input_source(str(path), payload_column=column, default_content_type="x/y")
        )
        assert {i.content_type for i in items} == {"x/y"}

    # The fingerprint is a file's, as for JSON Lines.
    fingerprint = binary.fingerprint()
    assert fingerprint["kind"] == "file" and fingerprint["size"] == path.stat().st_size
    assert fingerprint["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


async def test_parquet_ids_and_bad_rows_become_error_items(tmp_path: Path) -> None:
    path = tmp_path / "in.pq"
    table = pa.table(
        {
            "payload": ["a", None, "c", "d", "e"],
            "key": ["k1", "k2", None, "", "k5"],
            "num_id": [10, 20, 30, None, 50],
            "float_id": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    path.write_bytes(_parquet(table))

    items = await _items(open_input_source(str(path), payload_column="payload", id_column="key"))
    assert [(i.n, i.input_id, i.body) for i in items] == [
        (1, "k1", b"a"),
        (2, "k2", None),
        (3, "3", None),
        (4, "4", None),
        (5, "k5", b"e"),
    ]
    assert items[0].error is None
    assert items[1].error == "the payload (column 'payload') is null"
    assert items[2].error == "the id (column 'key') is null"
    assert items[3].error == "the id (column 'key') is empty"

    numbered = await _items(
        open_input_source(str(path), payload_column="payload", id_column="num_id")
    )
    assert [i.input_id for i in numbered] == ["10", "20", "30", "4", "50"]
    assert numbered[3].error == "the id (column 'num_id') is null"

    floats = await _items(
        open_input_source(str(path), payload_column="payload", id_column="float_id")
    )
    assert floats[0].error is not None and "non-empty string or integer" in floats[0].error
    # The payload column may be the id column too.
    same = await _items(open_input_source(str(path), payload_column="key", id_column="key"))
    assert [(i.input_id, i.body) for i in same][:2] == [("k1", b"k1"), ("k2", b"k2")]


async def test_parquet_is_read_in_batches_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rows = 1300  # three batches of 512, in several row groups
    path.write_bytes(
        _parquet(pa.table({"body": [f"row {i}" for i in range(1, rows + 1)]}), row_group_size=500)
    )
    source = open_input_source(str(path))
    assert source.count() == rows
    items = await _items(source)
    assert [i.n for i in items] == list(range(1, rows + 1))
    assert all(i.body == f"row {i.n}".encode() and i.input_id == str(i.n) for i in items)


def test_a_parquet_column_that_is_not_there_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    path.write_bytes(_parquet(pa.table({"text": ["a"], "key": ["k"]})))
    with pytest.raises(InputError) as caught:
        open_input_source(str(path))
    message = str(caught.value)
    assert "no column 'body' (the payload column)" in message
    assert "its columns are: 'text', 'key'" in message
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InputError, match="no column 'id' \\(the id column\\)"):
        open_input_source(str(path), payload_column="text", id_column="id")
    not_parquet = tmp_path / "lines.parquet"
    not_parquet.write_bytes(b'{"body": "a"}\n')
    with pytest.raises(InputError, match="is not a readable Parquet file"):
        open_input_source(str(not_parquet))


def test_a_parquet_input_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.parquet"
    path.write_bytes(_parquet(pa.table({"body": ["a"]})))
    # `import pyarrow.parquet` raises ImportError while these are None.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ParquetUnavailableError, match=r"pip install 'aiosagemaker\[parquet\]'"):
        open_input_source(str(path))
    # JSON Lines need no pyarrow, and ignore the Parquet options.
    lines = tmp_path / "in.jsonl"
    lines.write_bytes(_jsonl([{"x": 1}]))
    source = open_input_source(str(lines), payload_column="nope", id_column="nope")
    assert source.count() == 1


# --- the streaming parts, alone --------------------------------------------------------------


def test_gunzip_gives_bounded_pieces_across_members_and_padding() -> None:
    big = b"\n" * (20 << 20)  # 20 MiB of newlines: about 20 KiB compressed
    data = gzip.compress(big) + b"\0" * 8 + gzip.compress(b"end")
    gunzip = _Gunzip()
    pieces = []
    for start in range(0, len(data), 4096):
        gunzip.feed(data[start : start + 4096])
        while piece := gunzip.read(1 << 20):
            pieces.append(len(piece))
    assert gunzip.complete
    assert max(pieces) <= 1 << 20 and sum(pieces) == len(big) + 3

    cut = _Gunzip()
    cut.feed(data[:100])
    while cut.read(1 << 20):
        pass
    assert not cut.complete


def test_line_splitter_joins_lines_split_over_pieces() -> None:
    lines = _LineSplitter()
    out = []
    for piece in (b"ab", b"c", b"\n\nd", b"e\nf", b"g"):
        out.extend(lines.push(piece))
    assert out == [b"abc", b"", b"de"]
    assert lines.end() == b"fg" and lines.end() is None


# --- S3 --------------------------------------------------------------------------------------


@pytest.fixture
async def s3(stack_env: LocalStack) -> AsyncIterator[S3Objects]:
    """S3 calls to the local stack's moto, as the job makes them (each test makes its own
    bucket: :func:`_bucket`)."""
    aws, objects = await open_s3(region=None, profile=None)
    try:
        yield objects
    finally:
        await aws.aclose()


async def _bucket(s3: S3Objects) -> str:
    bucket = f"inputs-{uuid.uuid4().hex}"
    await s3.client.create_bucket(Bucket=bucket)
    return bucket


async def _opened(spec: str, s3: S3Objects, **kwargs: Any) -> InputSource:
    source = open_input_source(spec, **kwargs)
    await source.open(s3)
    return source


async def test_s3_prefix_objects_in_key_order_with_continuous_numbers(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    objects = {
        "data/b.jsonl.gz": gzip.compress(_jsonl([{"b": 1}])) + gzip.compress(_jsonl([{"b": 2}])),
        "data/a.jsonl": _jsonl([{"a": 1}, {"body": "a2", "id": "A2"}]),
        "data/c.parquet": _parquet(pa.table({"body": [{"c": 1}, {"c": 2}], "k": ["c1", "c2"]})),
        "data/sub/d.jsonl": b'{"d": 1}',  # no final newline
        "data/sub/": b"",  # a folder marker
        "data/_SUCCESS": b"",
        "data/.hidden.jsonl": b"not read\n",
        "data/_journal/j.jsonl": b"not read\n",
        "data/sub/_tmp/x.jsonl": b"not read\n",
        "data.jsonl": b"next to the prefix, not under it\n",
        "database/x.jsonl": b"another prefix\n",
    }
    for key, body in objects.items():
        await s3.put(S3Uri(bucket, key), body)

    # No object "data": the prefix "data/".
    source = await _opened(f"s3://{bucket}/data", s3, id_column="k")
    assert source.uses_s3 and source.identity == f"s3://{bucket}/data"
    assert source.count() is None
    assert isinstance(source, S3Source)
    assert [o.uri.key for o in source.objects] == [
        "data/a.jsonl",
        "data/b.jsonl.gz",
        "data/c.parquet",
        "data/sub/d.jsonl",
    ]
    items = await _items(source)
    assert [(i.n, i.input_id) for i in items] == [
        (1, "1"),
        (2, "A2"),
        (3, "3"),
        (4, "4"),
        (5, "c1"),
        (6, "c2"),
        (7, "7"),
    ]
    json = "application/json"
    assert [(i.body, i.content_type) for i in items] == [
        (b'{"a":1}', json),
        (b"a2", "text/plain"),
        (b'{"b":1}', json),
        (b'{"b":2}', json),
        (b'{"c":1}', json),  # a Parquet struct
        (b'{"c":2}', json),
        (b'{"d": 1}', json),
    ]
    fingerprint = source.fingerprint()
    assert fingerprint["kind"] == "s3" and fingerprint["objects"] == 4
    await source.aclose()

    # The same prefix with its slash, and the bucket's root.
    slash = await _opened(f"s3://{bucket}/data/", s3, id_column="k")
    assert slash.fingerprint() == fingerprint and len(await _items(slash)) == 7
    root = await _opened(f"s3://{bucket}", s3, id_column="k")
    assert isinstance(root, S3Source) and root.identity == f"s3://{bucket}/"
    assert [o.uri.key for o in root.objects][:2] == ["data.jsonl", "data/a.jsonl"]


async def test_s3_a_uri_naming_an_object_reads_that_object_alone(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "in"), _jsonl([{"one": 1}]))
    await s3.put(S3Uri(bucket, "in/other.jsonl"), _jsonl([{"other": 1}]))
    await s3.put(S3Uri(bucket, "_only.parquet"), _parquet(pa.table({"body": ["p"]})))

    items = await _items(await _opened(f"s3://{bucket}/in", s3))
    assert _bodies(items) == [{"one": 1}]
    # Named exactly, an object is read even if its name starts with "_"; by its own suffix.
    items = await _items(await _opened(f"s3://{bucket}/_only.parquet", s3))
    assert [(i.body, i.content_type) for i in items] == [(b"p", "text/plain")]


class _CountingS3(S3Objects):
    """The job's S3 calls, counting the chunks each object is read in."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.chunk_sizes: list[int] = []
        self.reading = 0  # objects being read now

    async def chunks(
        self, uri: S3Uri, *, size: int = 1 << 20, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        self.reading += 1
        try:
            async for chunk in super().chunks(uri, size=size, if_match=if_match):
                self.chunk_sizes.append(len(chunk))
                yield chunk
        finally:
            self.reading -= 1


async def test_s3_large_objects_are_streamed_in_chunks(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    rng = random.Random(7)
    # 3.5 MiB of lines, read in 1 MiB chunks (lines cross their boundaries).
    lines = [{"i": i, "pad": "x" * rng.randrange(0, 400)} for i in range(17000)]
    plain = _jsonl(lines)
    assert len(plain) > 3 << 20
    await s3.put(S3Uri(bucket, "big/plain.jsonl"), plain)
    counting = _CountingS3(s3.client)
    source = await _opened(f"s3://{bucket}/big/plain.jsonl", counting)
    items = await _items(source)
    assert len(items) == len(lines) and _bodies(items)[-1] == lines[-1]
    assert len(counting.chunk_sizes) >= 4 and max(counting.chunk_sizes) <= 1 << 20

    # A gzip object of two members, of incompressible text, read in 4 KiB chunks.
    text = [{"i": i, "r": rng.randbytes(60).hex()} for i in range(3000)]
    compressed = gzip.compress(_jsonl(text[:1000])) + gzip.compress(_jsonl(text[1000:]))
    await s3.put(S3Uri(bucket, "big/z.jsonl.gz"), compressed)
    counting = _CountingS3(s3.client)
    small_chunks = S3Source(
        S3Uri(bucket, "big/z.jsonl.gz"),
        columns=ParquetColumns(),
        default_content_type=None,
        chunk_size=4096,
    )
    await small_chunks.open(counting)
    items = await _items(small_chunks)
    assert [i.n for i in items] == list(range(1, 3001)) and _bodies(items) == text
    assert len(counting.chunk_sizes) >= len(compressed) // 4096

    # A Parquet object, spooled in chunks to a temporary file.
    table = pa.table({"body": [rng.randbytes(100) for _ in range(30000)]})
    blob = _parquet(table, compression="none")
    assert len(blob) > 2 << 20
    await s3.put(S3Uri(bucket, "big/p.parquet"), blob)
    counting = _CountingS3(s3.client)
    items = await _items(await _opened(f"s3://{bucket}/big/p.parquet", counting))
    assert [i.body for i in items] == table.column("body").to_pylist()
    assert len(counting.chunk_sizes) >= 3


async def test_s3_reading_left_part_way_lets_go_of_the_object(s3: S3Objects) -> None:
    """A job that stops mid-object closes its GET at once, not when the garbage collector
    gets to it."""
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "a/1.jsonl.gz"), gzip.compress(_jsonl([{"i": i} for i in range(9)])))
    await s3.put(S3Uri(bucket, "a/2.parquet"), _parquet(pa.table({"body": ["x"] * 2000})))
    counting = _CountingS3(s3.client)
    source = await _opened(f"s3://{bucket}/a/", counting)
    # In the gzip object, its GET open; in the Parquet one, spooled whole (and its temporary
    # file closed with it).
    for stop_at, reading in ((3, 1), (12, 0)):
        items = source.items()
        assert isinstance(items, AsyncGenerator)
        async for item in items:
            if item.n == stop_at:
                break
        assert counting.reading == reading
        await items.aclose()
        assert counting.reading == 0
    assert len(await _items(source)) == 2009
    await source.aclose()


async def test_s3_damaged_or_unfit_objects_are_input_errors(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "p/a.jsonl"), _jsonl([{"a": 1}]))
    await s3.put(S3Uri(bucket, "p/b.parquet"), _parquet(pa.table({"text": ["x"]})))
    source = await _opened(f"s3://{bucket}/p/", s3)
    got: list[InputItem] = []
    with pytest.raises(InputError) as caught:
        async for item in source.items():
            got.append(item)
    assert len(got) == 1  # the first object was read before the second one failed
    assert f"s3://{bucket}/p/b.parquet has no column 'body'" in str(caught.value)
    assert "its columns are: 'text'" in str(caught.value)

    await s3.put(S3Uri(bucket, "z/cut.jsonl.gz"), gzip.compress(_jsonl([{"a": 1}] * 50))[:-10])
    with pytest.raises(InputError, match="ends in the middle of a gzip stream"):
        await _items(await _opened(f"s3://{bucket}/z/cut.jsonl.gz", s3))
    await s3.put(S3Uri(bucket, "z/bad.gz"), b"not gzip at all\n")
    with pytest.raises(InputError, match="is not valid gzip"):
        await _items(await _opened(f"s3://{bucket}/z/bad.gz", s3))


async def test_s3_an_empty_prefix_or_bad_uri_is_an_error(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    with pytest.raises(InputError, match=f"no input objects under s3://{bucket}/none/$"):
        await _opened(f"s3://{bucket}/none", s3)
    await s3.put(S3Uri(bucket, "done/_SUCCESS"), b"")
    await s3.put(S3Uri(bucket, "done/.keep"), b"")
    with pytest.raises(InputError, match=r"under s3://[^ ]+/done/ \(2 object\(s\) left out"):
        await _opened(f"s3://{bucket}/done/", s3)
    with pytest.raises(InputError, match="invalid bucket name"):
        open_input_source("s3://Not_A_Bucket/key")
    source = open_input_source(f"s3://{bucket}/done/")
    with pytest.raises(TypeError, match="needs an S3Objects"):
        await source.open(None)
    with pytest.raises(RuntimeError, match="open\\(\\) first"):
        source.fingerprint()


async def test_s3_fingerprint_tells_an_object_replaced_added_or_removed(s3: S3Objects) -> None:
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "in/a.jsonl"), _jsonl([{"a": 1}]))
    await s3.put(S3Uri(bucket, "in/b.jsonl"), _jsonl([{"b": 1}]))
    spec = f"s3://{bucket}/in/"
    before = (await _opened(spec, s3)).fingerprint()
    assert before["objects"] == 2 and before["bytes"] == 2 * len(_jsonl([{"a": 1}]))
    again = (await _opened(spec, s3)).fingerprint()
    assert again == before and input_changes(before, again, spec) == []

    # Listing is the only S3 call a fingerprint needs: opened once, it makes none.
    source = await _opened(spec, s3)
    calls = dict(s3.calls)
    source.fingerprint()
    assert s3.calls == calls

    await s3.put(S3Uri(bucket, "in/b.jsonl"), _jsonl([{"B": 2}]))  # same size, new ETag
    replaced = (await _opened(spec, s3)).fingerprint()
    assert replaced["sha256"] != before["sha256"]
    assert input_changes(before, replaced, spec) == [
        "an object was replaced, modified or renamed (the keys, sizes or ETags of its "
        "2 objects differ)"
    ]
    await s3.put(S3Uri(bucket, "in/b.jsonl"), _jsonl([{"bigger": 2}]))
    resized = (await _opened(spec, s3)).fingerprint()
    assert input_changes(before, resized, spec) == [
        "an object was replaced, modified or renamed (the keys, sizes or ETags of its "
        f"2 objects differ; {before['bytes']:,} -> {resized['bytes']:,} bytes in all)"
    ]
    await s3.put(S3Uri(bucket, "in/0.jsonl"), b"")
    added = (await _opened(spec, s3)).fingerprint()
    changes = input_changes(resized, added, spec)
    assert changes == ["it had 2 objects, it has 3"]
    await s3.put(S3Uri(bucket, "in/_SUCCESS"), b"")  # left out: no change
    assert input_changes(added, (await _opened(spec, s3)).fingerprint(), spec) == []


async def test_s3_calls_carry_the_expected_bucket_owner(s3: S3Objects) -> None:
    """moto accepts ``ExpectedBucketOwner`` without checking it: check that every call of the
    input sends it, and that reading works with it."""
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "o/a.jsonl"), _jsonl([{"a": 1}]))
    await s3.put(S3Uri(bucket, "o/b.parquet"), _parquet(pa.table({"body": ["b"]})))
    owners: list[bytes | None] = []

    def record(request: Any, **_: Any) -> None:
        owners.append(request.headers.get("x-amz-expected-bucket-owner"))

    s3.client.meta.events.register("before-send.s3", record)
    owned = S3Objects(s3.client, expected_bucket_owner="123456789012")
    for spec in (f"s3://{bucket}/o", f"s3://{bucket}/o/a.jsonl"):
        items = await _items(await _opened(spec, owned))
        assert items[0].body == b'{"a":1}'
    # a HEAD (no object "o"), the listing, two GETs; a HEAD and a GET
    assert len(owners) == 6 and set(owners) == {b"123456789012"}


async def test_s3_object_replaced_after_listing_is_refused(s3: S3Objects) -> None:
    # The journal fingerprinted the listing: reading a newer version would pair records with
    # inputs the fingerprint never saw. The GET names the listed ETag, and S3 refuses the rest.
    bucket = await _bucket(s3)
    await s3.put(S3Uri(bucket, "in/a.jsonl"), _jsonl([{"v": 1}, {"v": 2}]))
    source = await _opened(f"s3://{bucket}/in/", s3)
    await s3.put(S3Uri(bucket, "in/a.jsonl"), _jsonl([{"v": 3}, {"v": 4}]))
    with pytest.raises(S3Error) as caught:
        await _items(source)
    assert caught.value.code in ("PreconditionFailed", "412")
