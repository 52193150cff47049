"""``python -m aiosagemaker.cli``: the ``aiosagemaker`` command."""

from __future__ import annotations

import sys

from ._main import main

sys.exit(main())
