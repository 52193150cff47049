"""The batch job: a stream of inputs in, one JSON Lines record per input out, resumable.

The application layer: it uses only the client library's public API (``aiosagemaker``).
"""

from __future__ import annotations

from ._job import BatchConfigError as BatchConfigError
from ._job import BatchJob as BatchJob
from ._job import BatchOptions as BatchOptions
from ._job import BatchUsageError as BatchUsageError
from ._summary import BatchStats as BatchStats

__all__ = ["BatchConfigError", "BatchJob", "BatchOptions", "BatchStats", "BatchUsageError"]
