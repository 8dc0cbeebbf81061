"""Sphinx configuration of the specreg documentation."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import specreg  # after the path: the docs build from a plain checkout too

os.environ.setdefault("MPLBACKEND", "Agg")
# argparse wraps the usage lines that the command-line reference shows at this width
os.environ["COLUMNS"] = "79"

project = "specreg"
author = "specreg developers"
copyright = "2026, specreg developers"
version = release = specreg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",  # the command-line reference, from the real parsers
    "myst_parser",  # CHANGELOG.md, rendered in changelog.rst
    "sphinx-mathjax-offline",  # a packaged MathJax 3: formulas render without network
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "**/README.md", "sg_execution_times.rst"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"specreg {version}"
# quotes and ellipses, but "--out" stays two hyphens (no en dash) in option names
smartquotes_action = "qe"
toc_object_entries_show_parents = "hide"  # "fit()", not "TemplateFitRegressor.fit()"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

# No intersphinx: its inventories would be downloaded at build time, and the build is
# offline. numpy, scikit-learn and torch names stay plain text, never broken links.

# MathJax: the sphinx-mathjax-offline extension sets mathjax_path to its own copy of
# MathJax 3 (tex-chtml.js) and copies it into _static/mathjax of the built pages.

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_(?!build_grid)",  # the grid build is shown, not executed
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": "True",
}

nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]


def _skip_metadata_request_setters(app, what, name, obj, skip, options):
    """Hide scikit-learn's generated ``set_*_request`` methods (documented by sklearn)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _data_doc_comment(app, what, name, obj, options, lines):
    """Use the ``#:`` comment of a re-exported constant instead of its type's docstring.

    autodoc looks for the comment in the public subpackage (``specreg.metrics``), but
    the constant is defined, and commented, in a private module (``specreg.metrics._snr``).
    """
    if what != "data" or not name.startswith("specreg."):
        return
    from sphinx.pycode import ModuleAnalyzer

    modname, attr = name.rsplit(".", 1)
    candidates = [modname] + sorted(m for m in sys.modules if m.startswith(modname + "._"))
    for cand in candidates:
        if getattr(sys.modules.get(cand), attr, None) is not obj:
            continue
        comment = ModuleAnalyzer.for_module(cand).find_attr_docs().get(("", attr))
        if comment:
            lines[:] = list(comment)
            return
    lines[:] = []  # never show the docstring of dict / tuple / ndarray


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_setters)
    app.connect("autodoc-process-docstring", _data_doc_comment, priority=100)
