"""How a watcher reads the errors of its AWS calls: retry, keep waiting, or give the jobs up.

The one place the watchers classify an AWS error (the code and status come from
:func:`aiosagemaker._aws.aws_error_code`; messages are never parsed). A verdict is one of:

* ``TRANSIENT``: throttling, 5xx, connection errors, and every error not known to be permanent.
  The next poll (or receive) retries; nothing fails. Unknown errors land here on purpose: failing
  thousands of accepted jobs on a guess costs more than one more retry.
* ``PERMANENT``: the call cannot succeed as configured (listing denied, bucket or queue missing).
  Only the codes in :data:`_PERMANENT` are, each with the IAM action to grant where that is the
  cause, and a watcher believes one only when it repeats (:class:`Streak`).
* ``MISSING``: a HEAD or GET found no object: the result is not there yet. Not an error.
* ``FORBIDDEN``: a HEAD answered 403. Without ``s3:ListBucket`` S3 answers 403, not 404, for an
  object not written yet (and for every object without ``s3:GetObject``): "not there yet" and "not
  readable" look alike, so it is never a reason to fail a job.
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html ("Permissions")
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._aws import aws_error_code

__all__ = ["CONFIRMATIONS", "ErrorKind", "Streak", "Verdict", "classify"]

#: identical permanent errors in a row a watcher waits for before failing jobs. One answer can be
#: a fluke (an IAM change or a new bucket still propagating, a front end or proxy that erred
#: once); a second from a later, separate call is the service's settled answer. It costs one
#: poll interval (or receive backoff) against deadlines hours away.
CONFIRMATIONS = 2


class ErrorKind(enum.Enum):
    """What an AWS error means for a watcher (see the module docstring)."""

    #: retried by the next poll or receive; counted
    TRANSIENT = "transient"
    #: cannot succeed as configured; fails the affected jobs once confirmed
    PERMANENT = "permanent"
    #: a HEAD or GET found nothing: the object is not written yet
    MISSING = "missing"
    #: a HEAD answered 403: not written yet, or not readable (S3 does not say which)
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One error, classified. ``advice`` (for a permanent error) says what to fix."""

    kind: ErrorKind
    code: str | None
    status: int | None
    permission: str | None = None
    advice: str = ""


@dataclass(frozen=True, slots=True)
class _Rule:
    permission: str | None
    #: formatted with ``where``: ``s3://bucket/prefix/``, an object's URI, or a queue URL
    advice: str


_S3_ALL_DISABLED = _Rule(None, "all access to the bucket of {where} is disabled")
_S3_NO_BUCKET = _Rule(
    None,
    "the bucket of {where} does not exist: check the endpoint's S3OutputPath and S3FailurePath",
)
_S3_BAD_BUCKET = _Rule(None, "the bucket name in {where} is not valid")
_SQS_NO_QUEUE = _Rule(
    None,
    "the queue {where} does not exist (SQS also says so for a queue of another account whose "
    "policy does not let this role sqs:ReceiveMessage)",
)
_SQS_KMS = _Rule(
    "kms:Decrypt",
    "the queue {where} is encrypted with a KMS key this role may not use: grant kms:Decrypt on it",
)

# Error codes that are permanent, per operation; anything else is retried. S3's codes:
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html; SQS answers the JSON
# protocol's names (QueueDoesNotExist) or, AWS-query compatible, the older ones.
_PERMANENT: dict[str, dict[str, _Rule]] = {
    "ListObjectsV2": {
        "AccessDenied": _Rule(
            "s3:ListBucket", "grant s3:ListBucket on the bucket of {where} to this role"
        ),
        "AllAccessDisabled": _S3_ALL_DISABLED,
        "NoSuchBucket": _S3_NO_BUCKET,
        "InvalidBucketName": _S3_BAD_BUCKET,
    },
    "GetObject": {
        "AccessDenied": _Rule(
            "s3:GetObject",
            "grant s3:GetObject on {where} to this role (and kms:Decrypt when the bucket "
            "encrypts with SSE-KMS)",
        ),
        "AllAccessDisabled": _S3_ALL_DISABLED,
        "NoSuchBucket": _S3_NO_BUCKET,
        "InvalidObjectState": _Rule(None, "{where} is archived: restore it before reading it"),
    },
    "ReceiveMessage": {
        "AWS.SimpleQueueService.NonExistentQueue": _SQS_NO_QUEUE,
        "QueueDoesNotExist": _SQS_NO_QUEUE,
        "AccessDenied": _Rule(
            "sqs:ReceiveMessage", "grant sqs:ReceiveMessage on the queue {where} to this role"
        ),
        "AccessDeniedException": _Rule(
            "sqs:ReceiveMessage", "grant sqs:ReceiveMessage on the queue {where} to this role"
        ),
        "KmsAccessDenied": _SQS_KMS,
        "KMS.AccessDeniedException": _SQS_KMS,
    },
    "DeleteMessageBatch": {
        "AWS.SimpleQueueService.NonExistentQueue": _SQS_NO_QUEUE,
        "QueueDoesNotExist": _SQS_NO_QUEUE,
        "AccessDenied": _Rule(
            "sqs:DeleteMessage", "grant sqs:DeleteMessage on the queue {where} to this role"
        ),
        "AccessDeniedException": _Rule(
            "sqs:DeleteMessage", "grant sqs:DeleteMessage on the queue {where} to this role"
        ),
    },
}

# A HEAD has no body, so botocore's "code" is the status as text (or S3's name of it).
_HEAD_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_HEAD_FORBIDDEN = frozenset({"403", "Forbidden", "AccessDenied"})


def classify(operation: str, exc: BaseException, where: str = "") -> Verdict:
    """Classify the error ``exc`` of one ``operation`` (``ListObjectsV2``, ``HeadObject``,
    ``GetObject``, ``ReceiveMessage``, ``DeleteMessageBatch``) on ``where``."""
    code, status = aws_error_code(exc)
    if operation == "HeadObject":
        if code in _HEAD_MISSING or status == 404:
            return Verdict(ErrorKind.MISSING, code, status)
        if code in _HEAD_FORBIDDEN or status == 403:
            return Verdict(ErrorKind.FORBIDDEN, code, status)
    elif operation == "GetObject" and code == "NoSuchKey":
        return Verdict(ErrorKind.MISSING, code, status)
    rule = _PERMANENT.get(operation, {}).get(code or "")
    if rule is None:
        return Verdict(ErrorKind.TRANSIENT, code, status)
    return Verdict(
        ErrorKind.PERMANENT, code, status, rule.permission, rule.advice.format(where=where)
    )


@dataclass(slots=True)
class Streak:
    """Consecutive identical permanent errors from one source (a bucket, a queue).

    ``attempt`` identifies the try that met the error (a poll number, a receive number): several
    calls of one try (the directories of one bucket listed in the same poll) count once, so a
    confirmation always comes from a later call.
    """

    code: str | None = None
    count: int = 0
    attempt: int = -1

    def record(self, code: str | None, attempt: int) -> bool:
        """Note one permanent error; return whether it is now confirmed."""
        if code != self.code:
            self.code, self.count = code, 1
        elif attempt != self.attempt:
            self.count += 1
        self.attempt = attempt
        return self.confirmed

    @property
    def confirmed(self) -> bool:
        return self.count >= CONFIRMATIONS

    def clear(self) -> None:
        """A call succeeded: the source works (again)."""
        self.code, self.count = None, 0
