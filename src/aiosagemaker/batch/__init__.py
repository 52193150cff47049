"""The batch job: a stream of inputs in, one JSON Lines record per input out, resumable.

The application layer: it uses only the client library's public API (``aiosagemaker``).
"""

from __future__ import annotations

from ._errors import BatchConfigError as BatchConfigError
from ._errors import BatchUsageError as BatchUsageError
from ._errors import is_config_error as is_config_error
from ._inputs import Shard as Shard
from ._job import BatchJob as BatchJob
from ._options import BatchOptions as BatchOptions
from ._summary import BatchStats as BatchStats

__all__ = [
    "BatchConfigError",
    "BatchJob",
    "BatchOptions",
    "BatchStats",
    "BatchUsageError",
    "Shard",
    "is_config_error",
]
