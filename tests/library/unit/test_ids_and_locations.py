"""The invoker's inference ids (made ahead, in batches) and the check of a tracked job's
locations: what they give is what ``str(uuid.uuid4())`` and ``parse_s3_uri`` give. No I/O."""

from __future__ import annotations

import os
import uuid

import pytest

from aiosagemaker._core._request import check_s3_uri, parse_s3_uri
from aiosagemaker._exceptions import InvalidRequestError
from aiosagemaker._invoker import _IDS_AT_ONCE, new_inference_id


def test_inference_ids_are_random_uuids_and_unique() -> None:
    ids = [new_inference_id() for _ in range(5 * _IDS_AT_ONCE + 3)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # the canonical form: lower case, hyphens where uuid puts them
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_makes_its_own_ids() -> None:
    """Ids made ahead by the parent are not handed out again in a forked child."""
    new_inference_id()  # some made ahead now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next few ids, to the parent
        try:
            os.write(write, " ".join(new_inference_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_inference_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/key",
        "s3://bucket.with.dots/a/b/c.out",
        "s3://bucket",
        "s3://bucket/",
        "s3://ab/key",
        "s3://Bucket/key",
        "s3://-bucket/key",
        "s3:///key",
        "https://bucket/key",
        "s3:/bucket/key",
        "",
        42,
    ],
)
def test_check_s3_uri_accepts_what_parse_s3_uri_parses(uri: object) -> None:
    try:
        parse_s3_uri(uri, field="location")  # type: ignore[arg-type]
    except InvalidRequestError as expected:
        with pytest.raises(InvalidRequestError) as caught:
            check_s3_uri(uri, field="location")  # type: ignore[arg-type]
        assert str(caught.value) == str(expected) and caught.value.field == "location"
    else:
        assert check_s3_uri(uri, field="location") == uri  # type: ignore[arg-type]
