"""The batch job past one machine: SageMaker async inference inside Ray Data actors.

Needs the ``ray`` extra (``pip install 'aiosagemaker[ray]'``); nothing here imports Ray until a
job runs, and nothing else in the package imports this module but the ``batch --ray`` command.

.. code-block:: python

    from aiosagemaker.ray import AsyncInference, split_limits

    ds.map_batches(AsyncInference, fn_constructor_kwargs={...}, batch_format="pyarrow",
                   compute=ray.data.ActorPoolStrategy(size=4))
"""

from __future__ import annotations

from ._errors import INSTALL_HINT as INSTALL_HINT
from ._errors import RayUnavailableError as RayUnavailableError
from ._errors import require_ray as require_ray
from ._job import RayBatchJob as RayBatchJob
from ._limits import split_limits as split_limits
from ._udf import DEFAULT_FLUSH_INTERVAL as DEFAULT_FLUSH_INTERVAL
from ._udf import AsyncInference as AsyncInference

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "INSTALL_HINT",
    "AsyncInference",
    "RayBatchJob",
    "RayUnavailableError",
    "require_ray",
    "split_limits",
]
