"""Sphinx configuration of the aiosagemaker documentation (``make docs``).

Sphinx because the library's docstrings are reStructuredText (``:param:`` fields, ``:class:``
roles, ``.. code-block::`` and ``.. versionadded::`` directives), which autodoc renders as they
are; the narrative pages are Markdown (MyST). The build runs with warnings as errors.
"""

from __future__ import annotations

import aiosagemaker

project = "aiosagemaker"
author = "aiosagemaker developers"
copyright = "aiosagemaker developers"
release = aiosagemaker.__version__
version = release

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: ``:::`` fences for directives; headings get anchors to link to.
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# autodoc: the public API as __init__ exports it, documented under those names.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
# The library's docstrings show the class first, its parameters after.
autoclass_content = "class"

html_theme = "furo"
html_title = f"aiosagemaker {release}"
html_static_path: list[str] = []
