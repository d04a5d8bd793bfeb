"""Sphinx configuration: Markdown pages (MyST), the API reference from the docstrings
(autodoc), the Furo theme. Build: sphinx-build -W --keep-going -b html docs docs/_build/html"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

project = "genre-pipeline"
author = "the genre-pipeline developers"
copyright = "2026, the genre-pipeline developers"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "generated", "generate.py"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links
myst_enable_extensions = ["colon_fence"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True  # stats=SUMMARY, not the whole tuple
html_theme = "furo"
html_title = "genre-pipeline"
