"""Watchers: turn S3 listings or SNS/SQS notifications into resolved jobs."""

from __future__ import annotations

from ._base import Watcher as Watcher
from ._base import WatcherStatistics as WatcherStatistics

__all__ = ["Watcher", "WatcherStatistics"]
