"""Watchers: turn S3 listings or SNS/SQS notifications into resolved jobs."""

from __future__ import annotations

from ._base import Watcher as Watcher
from ._base import WatcherStatistics as WatcherStatistics
from ._s3 import S3Polling as S3Polling
from ._sns import SnsSignatureVerifier as SnsSignatureVerifier
from ._sqs import SqsNotifications as SqsNotifications

__all__ = [
    "S3Polling",
    "SnsSignatureVerifier",
    "SqsNotifications",
    "Watcher",
    "WatcherStatistics",
]
