"""Sphinx configuration of the pybatchtools documentation site (``make docs``).

Guide pages are Markdown (MyST); the API reference (``reference/``) is generated from the
docstrings of every public name by ``_ext/apiref.py`` when the build starts; the tables of the
backend contract in ``backends/custom.md`` are rendered from the code by ``_ext/contract.py``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import batchtools  # noqa: E402

project = "pybatchtools"
author = "the pybatchtools authors"
copyright = "pybatchtools authors, LGPL-3.0-or-later"
version = release = batchtools.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "apiref", "contract"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_scripts", "_ext", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
add_module_names = False
python_display_short_literal_types = True

# every cross-reference in the guide and the docstrings must resolve (types from other packages,
# and the internal registry state in signatures, are not documented here)
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(pandas|numpy|np|pd|collections\.abc|os|pathlib|jinja2(\.\w+)*)\.\w+"),
    ("py:class", r"batchtools\.core\.registry\.RegistryState"),
    # short names that autodoc takes from other packages' annotations (matplotlib, pandas typing)
    ("py:class", r"(matplotlib(\.\w+)*\.)?Axes|(pandas\._typing\.)?Dtype"),
]

html_theme = "furo"
html_title = f"pybatchtools {release}"
html_static_path = []
pygments_style = "friendly"
