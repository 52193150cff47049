"""The errors aiosagemaker raises, all under one base class.

    AsyncInferenceError
    ├── InvalidRequestError          bad input, refused before anything is sent (also a ValueError)
    │   └── PayloadTooLargeError     over 128,000 bytes with no staging location
    ├── InvocationError              InvokeEndpointAsync failed; carries the AWS error code
    │   ├── ThrottledError           ThrottlingException / HTTP 429, retries exhausted
    │   └── StagingError             uploading a large payload to S3 failed (S3's error code)
    ├── InferenceFailedError         the endpoint ran the request and it failed
    ├── ResultReadError              the output or failure object exists but could not be read
    │   └── OutputTooLargeError      the output is over the watcher's max_output_bytes: not read
    ├── WatcherError                 the result source cannot be read (denied, bucket or queue missing)
    ├── ResultTimeoutError           no result by the job's deadline (also a TimeoutError)
    ├── AdmissionTimeoutError        no room under the limits in time (also a TimeoutError)
    ├── InvokerClosedError           the invoker closed before the job resolved
    └── NotificationError            a message that claims to be a notification but cannot be read
        └── SnsVerificationError     an SNS envelope whose signature does not verify (in _core._sns)

Every error carries ``inference_id`` (and the job's locations) where known, and ``code``: the AWS
error code (``AccessDenied``, ``ThrottlingException``, ...) or ``HTTP<status>`` when AWS gave none,
``None`` for errors that are not AWS's. The AWS exception is chained as ``__cause__``.

``asyncio.CancelledError`` is never wrapped or swallowed.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "AdmissionTimeoutError",
    "AsyncInferenceError",
    "InferenceFailedError",
    "InvalidRequestError",
    "InvocationError",
    "InvokerClosedError",
    "NotificationError",
    "OutputTooLargeError",
    "PayloadTooLargeError",
    "ResultReadError",
    "ResultTimeoutError",
    "StagingError",
    "ThrottledError",
    "WatcherError",
]


class AsyncInferenceError(Exception):
    """Base class of every aiosagemaker error.

    :param message: what went wrong, in one line.
    :param inference_id: the request's inference id, where known.
    """

    #: the AWS error code behind this error, where there is one
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        inference_id: str | None = None,
        output_location: str | None = None,
        failure_location: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.inference_id = inference_id
        self.output_location = output_location
        self.failure_location = failure_location

    def __str__(self) -> str:
        if self.inference_id:
            return f"{self.message} (inference id {self.inference_id})"
        return self.message


class InvalidRequestError(AsyncInferenceError, ValueError):
    """A request field is outside the API's documented limits; nothing was sent.

    ``field`` names the offending parameter (``"Body"``, ``"InferenceId"``, ...).
    """

    def __init__(self, message: str, *, field: str | None = None, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class PayloadTooLargeError(InvalidRequestError):
    """The payload exceeds the inline limit and no staging location is configured."""

    def __init__(self, size: int, limit: int, **kwargs: str | None) -> None:
        super().__init__(
            f"payload is {size:,} bytes, over the {limit:,}-byte inline limit, and no "
            "staging location is set (pass staging=S3Staging('s3://bucket/prefix/'))",
            field="Body",
            **kwargs,
        )
        self.size = size
        self.limit = limit


class InvocationError(AsyncInferenceError):
    """``InvokeEndpointAsync`` failed. ``code`` is the AWS error code, ``status`` the HTTP status.

    ``ambiguous`` is true when the request was sent and no answer came back (a reset, a read
    timeout): the endpoint may have queued it. Connection errors before anything was sent have
    ``code="ConnectionError"`` and ``ambiguous=False``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        request_id: str | None = None,
        ambiguous: bool = False,
        **kwargs: str | None,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.ambiguous = ambiguous

    def __str__(self) -> str:
        return f"{self.code}: {super().__str__()}"


class ThrottledError(InvocationError):
    """The endpoint kept throttling after every retry the policy allowed."""


class StagingError(InvocationError):
    """Uploading a payload over the inline limit to the staging location failed; nothing was invoked.

    ``code`` is S3's error code (``AccessDenied``, ``NoSuchBucket``, ...).
    """


class InferenceFailedError(AsyncInferenceError):
    """The endpoint accepted and ran the request, and the inference failed.

    ``reason`` is the failure reason from the failure object or the error notification.
    """

    def __init__(self, reason: str, **kwargs: str | None) -> None:
        super().__init__(f"inference failed: {reason}", **kwargs)
        self.reason = reason


class ResultReadError(AsyncInferenceError):
    """The job's output (or failure object) exists, but reading it from S3 failed.

    ``code`` is S3's error code where it gave one.
    """

    def __init__(self, message: str, *, code: str | None = None, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.code = code


class OutputTooLargeError(ResultReadError):
    """The job's output is larger than its watcher's ``max_output_bytes``, so it was not read.

    The inference succeeded: its output is in S3 at ``output_location``. Stream it to a file with
    ``await job.result(to_file=path)`` (which ignores the limit), or read it with any S3 client.
    The output was never held: the watcher saw its size in the GetObject answer's headers and
    closed the body unread (or dropped the copy a notification carried).

    ``size`` is the output's size in bytes (``None`` when S3 did not say), ``limit`` the
    ``max_output_bytes`` it is over, ``content_type`` its content type where known; ``code`` is
    ``None`` (S3 answered; nothing failed).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        size: int | None,
        limit: int,
        content_type: str | None = None,
        **kwargs: str | None,
    ) -> None:
        what = f"{size:,} bytes" if size is not None else "of unknown size"
        super().__init__(
            f"the output is {what}, over max_output_bytes ({limit:,}), and was not read: "
            "stream it to a file with job.result(to_file=path)",
            **kwargs,
        )
        self.size = size
        self.limit = limit
        self.content_type = content_type


class WatcherError(AsyncInferenceError):
    """The watcher cannot read its result source, and retrying will not help.

    Raised for every job the watcher can no longer resolve: listing denied, a bucket or queue that
    does not exist. ``permission`` names the IAM action that is missing (``s3:ListBucket``,
    ``sqs:ReceiveMessage``), where that is the cause.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        permission: str | None = None,
        **kwargs: str | None,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.permission = permission


class ResultTimeoutError(AsyncInferenceError, TimeoutError):
    """No result arrived before the wait's timeout or the job's deadline."""


class AdmissionTimeoutError(AsyncInferenceError, TimeoutError):
    """``submit`` waited longer than the admission timeout for room under the limits."""


class InvokerClosedError(AsyncInferenceError):
    """The invoker closed before this job resolved.

    The request was accepted: ``output_location`` and ``failure_location`` say where another watcher
    can collect its result.
    """


class NotificationError(AsyncInferenceError, ValueError):
    """A message looked like a SageMaker notification but could not be read."""


_E = TypeVar("_E", bound=BaseException)


def with_cause(error: _E, cause: BaseException) -> _E:
    """``error`` chained to ``cause`` as ``raise error from cause`` would, for an error that is
    raised later or set on a future instead; returns ``error``."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error
