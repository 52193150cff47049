"""The batch job's errors, and which AWS errors stop a whole job instead of failing one input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiosagemaker import InvocationError

__all__ = ["BatchConfigError", "BatchUsageError", "is_config_error"]

# AWS error codes that mean the credentials or the configuration are wrong, not this input.
_CONFIG_ERROR_CODES = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)


class BatchUsageError(Exception):
    """Bad arguments or input files, a journal in use by another run, damaged or of another job,
    an input changed since the job started: nothing was sent (exit status 2)."""


class BatchConfigError(Exception):
    """AWS or configuration trouble: credentials, an unreachable or missing endpoint; OUTPUT or
    the journal that cannot be written (a full disk). The job stopped; a rerun resumes (exit 3)."""


def is_config_error(exc: InvocationError) -> bool:
    """Whether no input can get past ``exc``: stop the job (exit 3) rather than fail every input.

    True for rejected credentials or signatures (by code, or HTTP 401/403), an endpoint that could
    not be reached at all (after every retry), and an endpoint that does not exist.
    """
    if exc.code in _CONFIG_ERROR_CODES or exc.status in (401, 403):
        return True
    if exc.code == "ConnectionError" and not exc.ambiguous:
        return True  # the endpoint could not be reached at all, after every retry
    # A missing endpoint has no structured signal: AWS answers it as it answers every bad field,
    # HTTP 400 ``ValidationError``, and says which in the message alone ("Endpoint X of account
    # Y not found."). So this one case reads the message.
    message = exc.message.lower()
    return exc.code == "ValidationError" and "endpoint" in message and "not found" in message
