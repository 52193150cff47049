"""The errors aiosagemaker raises, all under one base class.

    AsyncInferenceError
    ├── InvalidRequestError          bad input, refused before anything is sent (also a ValueError)
    │   └── PayloadTooLargeError     over 128,000 bytes with no staging location
    ├── InvocationError              InvokeEndpointAsync failed; carries the AWS error code
    │   └── ThrottledError           ThrottlingException / HTTP 429, retries exhausted
    ├── InferenceFailedError         the endpoint ran the request and it failed
    ├── ResultTimeoutError           no result by the job's deadline (also a TimeoutError)
    ├── AdmissionTimeoutError        no room under the limits in time (also a TimeoutError)
    ├── InvokerClosedError           the invoker closed before the job resolved
    └── NotificationError            a message that claims to be a notification but cannot be read

``asyncio.CancelledError`` is never wrapped or swallowed.
"""

from __future__ import annotations

__all__ = [
    "AdmissionTimeoutError",
    "AsyncInferenceError",
    "InferenceFailedError",
    "InvalidRequestError",
    "InvocationError",
    "InvokerClosedError",
    "NotificationError",
    "PayloadTooLargeError",
    "ResultTimeoutError",
    "ThrottledError",
]


class AsyncInferenceError(Exception):
    """Base class of every aiosagemaker error.

    :param message: what went wrong, in one line.
    :param inference_id: the request's inference id, where known.
    """

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
    """``InvokeEndpointAsync`` failed. ``code`` is the AWS error code, ``status`` the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        request_id: str | None = None,
        **kwargs: str | None,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {super().__str__()}"


class ThrottledError(InvocationError):
    """The endpoint kept throttling after every retry the policy allowed."""


class InferenceFailedError(AsyncInferenceError):
    """The endpoint accepted and ran the request, and the inference failed.

    ``reason`` is the failure reason from the failure object or the error notification.
    """

    def __init__(self, reason: str, **kwargs: str | None) -> None:
        super().__init__(f"inference failed: {reason}", **kwargs)
        self.reason = reason


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
