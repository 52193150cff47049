"""The service errors the local endpoint answers, shaped as AWS's rest-json protocol shapes them.

botocore's ``RestJSONParser`` takes the code from the ``x-amzn-ErrorType`` header (up to a ``:``)
and the message from the JSON body's ``message`` key, so ``ClientError.response["Error"]`` carries
the same ``Code`` and ``Message`` as against the real service.
"""

from __future__ import annotations

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """An error answer: HTTP ``status``, AWS error ``code`` and a one-line ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def validation_error(message: str) -> ServiceError:
    """A ``ValidationError`` (HTTP 400), as the service answers for a bad request field."""
    return ServiceError(400, "ValidationError", message)
