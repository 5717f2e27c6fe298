"""
Sphinx configuration of superd's documentation.

``make docs`` builds the HTML pages into ``build/docs/html`` and the man
pages into ``docs/man`` (committed, installed with the package), both with
warnings as errors.  The man pages are built from the same pages as the HTML
reference: ``commands`` is superd(8), ``configuration`` superd.conf(5) and
``compatibility`` superd-migrate(8).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]

import superd  # noqa: E402  (found through the path above)

project = "superd"
author = "the superd authors"
# No copyright section in the man pages.
copyright = ""
release = superd.__version__
# The man pages' footer says the release where their date would be: a date
# would change every build and the committed pages with it.
version = ""
today = f"superd {release}"

extensions = ["superddocs"]
root_doc = "index"
exclude_patterns = ["_build", "man"]
templates_path: list[str] = []
# Literal text (``...``) is the default role's job; a bare `x` is a mistake.
default_role = None
nitpicky = True
highlight_language = "none"
# Text, not Sphinx's numbered "smart" quotes: a value shown must be typed as shown.
smartquotes = False

html_theme = "alabaster"
html_title = f"superd {release}"
html_static_path: list[str] = []
html_theme_options = {"nosidebar": False, "page_width": "1100px"}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

man_pages: list[tuple[str, str, str, list[str], int]] = [
    ("commands", "superd", "a super-server that reads xinetd's configuration", [], 8),
    ("configuration", "superd.conf", "superd's configuration files", [], 5),
    ("compatibility", "superd-migrate",
     "what superd does differently from xinetd, and how to see it for a configuration", [], 8),
]
man_show_urls = False
man_make_section_directory = False
