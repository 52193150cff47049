"""The fields of one ``InvokeEndpointAsync`` request and the API's documented limits on them.

botocore checks minimums only; the service checks the rest and answers ``ValidationError``. We check
them all here, before anything is sent, and the local endpoint checks the same rules on the server side.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpointAsync.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._exceptions import InvalidRequestError

__all__ = [
    "DEFAULT_INVOCATION_TIMEOUT_SECONDS",
    "DEFAULT_REQUEST_TTL_SECONDS",
    "HEADER",
    "MAX_INLINE_BODY_BYTES",
    "AsyncRequest",
    "S3Uri",
    "check_endpoint_name",
    "check_s3_uri",
    "parse_s3_uri",
]

#: The largest raw payload InvokeEndpointAsync accepts inline as ``Body``.
MAX_INLINE_BODY_BYTES = 128_000

# What the service uses when a request leaves out its two clocks (the client's job deadline is
# their sum; the local endpoint enforces them).
DEFAULT_REQUEST_TTL_SECONDS = 21_600
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 900

# The wire names of the request and answer headers.
HEADER_PREFIX = "X-Amzn-SageMaker-"
HEADER = {
    "content_type": "X-Amzn-SageMaker-Content-Type",
    "accept": "X-Amzn-SageMaker-Accept",
    "custom_attributes": "X-Amzn-SageMaker-Custom-Attributes",
    "inference_id": "X-Amzn-SageMaker-Inference-Id",
    "input_location": "X-Amzn-SageMaker-InputLocation",
    "output_path_extension": "X-Amzn-SageMaker-S3OutputPathExtension",
    "filename": "X-Amzn-SageMaker-Filename",
    "request_ttl": "X-Amzn-SageMaker-RequestTTLSeconds",
    "invocation_timeout": "X-Amzn-SageMaker-InvocationTimeoutSeconds",
}
OUTPUT_LOCATION_HEADER = "X-Amzn-SageMaker-OutputLocation"
FAILURE_LOCATION_HEADER = "X-Amzn-SageMaker-FailureLocation"

# The service model's names, used in error messages so they match what AWS says.
API_NAME = {
    "content_type": "ContentType",
    "accept": "Accept",
    "custom_attributes": "CustomAttributes",
    "inference_id": "InferenceId",
    "input_location": "InputLocation",
    "output_path_extension": "S3OutputPathExtension",
    "filename": "Filename",
    "request_ttl": "RequestTTLSeconds",
    "invocation_timeout": "InvocationTimeoutSeconds",
}

_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_ASCII = re.compile(r"[\x00-\x7f]*")
# \A\S[\p{Print}]*\z: a first character that is not white space, then printable characters.
_INFERENCE_ID = re.compile(r"[^\s\x00-\x1f\x7f][\x20-\x7e\u00a0-\U0010ffff]*")
_INPUT_LOCATION = re.compile(r"(https|s3)://([^/]+)/?(.*)", re.DOTALL)
_OUTPUT_PATH_EXTENSION = re.compile(r"(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+")
_FILENAME = re.compile(r"(?!.*\..*\.)[a-zA-Z0-9][a-zA-Z0-9-_.]*")
# Every field travels as an HTTP header: a line break or NUL in one cannot be sent (botocore's
# http.client and aiohttp refuse it at send time; we refuse it before).
_HEADER_UNSAFE = re.compile(r"[\r\n\x00]")

# (minimum length, maximum length, full-match pattern) of each string field.
_STRING_RULES: dict[str, tuple[int, int, re.Pattern[str]]] = {
    "content_type": (0, 1024, _ASCII),
    "accept": (0, 1024, _ASCII),
    "custom_attributes": (0, 1024, _ASCII),
    "inference_id": (1, 64, _INFERENCE_ID),
    "input_location": (1, 1024, _INPUT_LOCATION),
    "output_path_extension": (1, 512, _OUTPUT_PATH_EXTENSION),
    "filename": (1, 32, _FILENAME),
}
_INT_RULES: dict[str, tuple[int, int]] = {
    "request_ttl": (60, 21_600),
    "invocation_timeout": (1, 3_600),
}


def check_endpoint_name(name: str) -> str:
    """Return ``name`` if it is a valid endpoint name, else raise :class:`InvalidRequestError`."""
    if not 1 <= len(name) <= 63 or not _ENDPOINT_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"invalid endpoint name {name!r}: 1-63 characters, letters, digits and inner hyphens",
            field="EndpointName",
        )
    return name


@dataclass(frozen=True, slots=True)
class S3Uri:
    """A parsed ``s3://bucket/key`` location."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, name: str) -> S3Uri:
        """The location of ``name`` below this one, as a prefix."""
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Uri(self.bucket, prefix + name)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_s3_uri(uri: str, *, field: str = "S3Uri") -> S3Uri:
    """Parse ``s3://bucket/key``; raise :class:`InvalidRequestError` for anything else."""
    bucket, _, key = check_s3_uri(uri, field=field)[5:].partition("/")
    return S3Uri(bucket, key)


def check_s3_uri(uri: str, *, field: str = "S3Uri") -> str:
    """Return ``uri`` if it is an ``s3://bucket/key`` URI (:func:`parse_s3_uri` would parse it),
    else raise :class:`InvalidRequestError`; nothing is made of it (a check per tracked job)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidRequestError(
            f"{field} must be an s3://bucket/key URI, got {uri!r}", field=field
        )
    slash = uri.find("/", 5)
    if not _BUCKET.fullmatch(uri, 5, len(uri) if slash < 0 else slash):
        raise InvalidRequestError(f"{field} has an invalid bucket name: {uri!r}", field=field)
    return uri


@dataclass(frozen=True, slots=True)
class AsyncRequest:
    """One ``InvokeEndpointAsync`` request: exactly one of ``body`` and ``input_location``."""

    body: bytes | None = None
    input_location: str | None = None
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    inference_id: str | None = None
    output_path_extension: str | None = None
    filename: str | None = None
    request_ttl: int | None = None
    invocation_timeout: int | None = None

    def __repr__(self) -> str:
        # Never show the payload or CustomAttributes (sensitive in the service model).
        size = None if self.body is None else len(self.body)
        return (
            f"AsyncRequest(body=<{size} bytes>, input_location={self.input_location!r}, "
            f"inference_id={self.inference_id!r})"
        )

    def validate(self) -> AsyncRequest:
        """Check every field against the API's limits; return ``self`` or raise."""
        if (self.body is None) == (self.input_location is None):
            raise InvalidRequestError(
                "exactly one of Body and InputLocation must be given",
                field="Body",
                inference_id=self.inference_id,
            )
        if self.body is not None and len(self.body) > MAX_INLINE_BODY_BYTES:
            raise InvalidRequestError(
                f"Body is {len(self.body):,} bytes, over the {MAX_INLINE_BODY_BYTES:,}-byte limit",
                field="Body",
                inference_id=self.inference_id,
            )
        for attr, (low, high, pattern) in _STRING_RULES.items():
            value = getattr(self, attr)
            if value is None:
                continue
            problem = _string_problem(value, low, high, pattern)
            if problem is None and _HEADER_UNSAFE.search(value):
                problem = "contains a line break or NUL, which an HTTP header cannot carry"
            if problem:
                raise InvalidRequestError(
                    f"{API_NAME[attr]} {problem}",
                    field=API_NAME[attr],
                    inference_id=self.inference_id,
                )
        for attr, (low, high) in _INT_RULES.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidRequestError(
                    f"{API_NAME[attr]} must be an integer from {low} to {high}, got {value!r}",
                    field=API_NAME[attr],
                    inference_id=self.inference_id,
                )
        return self

    def headers(self) -> dict[str, str]:
        """The request's ``X-Amzn-SageMaker-*`` headers, in a fixed order."""
        out: dict[str, str] = {}
        for attr, name in HEADER.items():
            value = getattr(self, attr)
            if value is not None:
                out[name] = str(value)
        return out


def _string_problem(value: object, low: int, high: int, pattern: re.Pattern[str]) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not low <= len(value) <= high:
        return f"must be {low} to {high} characters long, got {len(value)}"
    if not pattern.fullmatch(value):
        return "does not match the pattern the API requires"
    return None
