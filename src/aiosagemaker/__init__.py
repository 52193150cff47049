"""aiosagemaker: the asyncio-native, high-throughput client for SageMaker Asynchronous Inference."""

from __future__ import annotations

from ._aws import AwsContext as AwsContext
from ._config import DEFAULT_LIMITS as DEFAULT_LIMITS
from ._config import DEFAULT_RESULT_GRACE as DEFAULT_RESULT_GRACE
from ._config import DEFAULT_RETRY_POLICY as DEFAULT_RETRY_POLICY
from ._config import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from ._config import MAX_INLINE_BODY_BYTES as MAX_INLINE_BODY_BYTES
from ._config import Limits as Limits
from ._config import RetryPolicy as RetryPolicy
from ._config import Timeouts as Timeouts
from ._core._request import S3Uri as S3Uri
from ._core._request import parse_s3_uri as parse_s3_uri
from ._core._sns import SnsVerificationError as SnsVerificationError
from ._exceptions import AdmissionTimeoutError as AdmissionTimeoutError
from ._exceptions import AsyncInferenceError as AsyncInferenceError
from ._exceptions import InferenceFailedError as InferenceFailedError
from ._exceptions import InvalidRequestError as InvalidRequestError
from ._exceptions import InvocationError as InvocationError
from ._exceptions import InvokerClosedError as InvokerClosedError
from ._exceptions import NotificationError as NotificationError
from ._exceptions import OutputTooLargeError as OutputTooLargeError
from ._exceptions import PayloadTooLargeError as PayloadTooLargeError
from ._exceptions import ResultReadError as ResultReadError
from ._exceptions import ResultTimeoutError as ResultTimeoutError
from ._exceptions import StagingError as StagingError
from ._exceptions import ThrottledError as ThrottledError
from ._exceptions import WatcherError as WatcherError
from ._invoker import AsyncInvoker as AsyncInvoker
from ._invoker import InvokerState as InvokerState
from ._invoker import InvokerStatistics as InvokerStatistics
from ._results import Accepted as Accepted
from ._results import InferenceJob as InferenceJob
from ._results import InferenceResult as InferenceResult
from ._results import JobTimings as JobTimings
from ._results import job_deadline as job_deadline
from ._staging import S3Staging as S3Staging
from ._version import __version__ as __version__
from ._watchers import S3Polling as S3Polling
from ._watchers import SnsSignatureVerifier as SnsSignatureVerifier
from ._watchers import SqsNotifications as SqsNotifications
from ._watchers import Watcher as Watcher
from ._watchers import WatcherStatistics as WatcherStatistics

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RESULT_GRACE",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUTS",
    "MAX_INLINE_BODY_BYTES",
    "Accepted",
    "AdmissionTimeoutError",
    "AsyncInferenceError",
    "AsyncInvoker",
    "AwsContext",
    "InferenceFailedError",
    "InferenceJob",
    "InferenceResult",
    "InvalidRequestError",
    "InvocationError",
    "InvokerClosedError",
    "InvokerState",
    "InvokerStatistics",
    "JobTimings",
    "Limits",
    "NotificationError",
    "OutputTooLargeError",
    "PayloadTooLargeError",
    "ResultReadError",
    "ResultTimeoutError",
    "RetryPolicy",
    "S3Polling",
    "S3Staging",
    "S3Uri",
    "SnsSignatureVerifier",
    "SnsVerificationError",
    "SqsNotifications",
    "StagingError",
    "ThrottledError",
    "Timeouts",
    "Watcher",
    "WatcherError",
    "WatcherStatistics",
    "__version__",
    "job_deadline",
    "parse_s3_uri",
]
