"""Sphinx configuration of the specreg documentation."""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(DOCS))  # gallery_order.py, the order of the gallery's cards

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
    "within_subsection_order": "gallery_order.GalleryOrder",
    "plot_gallery": "True",
    # no computation-times page: it loads DataTables and jQuery from CDNs
    "write_computation_times": False,
    # "Examples using X" on every API page (the minigallery in the autosummary templates)
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("specreg",),
    "reference_url": {"specreg": None},
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


GRID_FIGURE = DOCS / "generated" / "grid_build.png"


def _grid_build_figure(app) -> None:
    """What a grid build produces, drawn from the embedded grid (the build example's figure).

    The grid-building example is shown, not executed (it needs gfortran and hours of CPU
    time), so its page and gallery card show this figure instead: the node lattice of the
    embedded grid, which ``specreg grid build`` computed, and its node spectra.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from specreg.datasets import load_grid

    grid = load_grid(normalize=False)
    teff, logg, mh = (grid.axes[name] for name in grid.param_names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.6), width_ratios=[1, 1.5])
    tt, gg = np.meshgrid(teff, logg, indexing="ij")
    spherical = gg <= 3.0  # MARCS: spherical giants, plane-parallel dwarfs
    left.scatter(tt[spherical], gg[spherical], s=14, c="C0", label="spherical MARCS")
    left.scatter(tt[~spherical], gg[~spherical], s=14, c="C1", label="plane-parallel")
    left.legend(loc="lower left", fontsize="small", framealpha=0.9)
    left.set_xlabel("T_eff (K)")
    left.set_ylabel("log g")
    left.invert_xaxis()
    left.set_ylim(6.4, 0.7)  # giants on top; room for the legend below the dwarfs
    left.set_yticks(logg[::2])
    left.set_title(f"{grid.valid.sum()} nodes: {len(teff)} x {len(logg)} x {len(mh)} [M/H]")
    theta = np.column_stack([teff, np.full_like(teff, 2.5), np.zeros_like(teff)])
    flux = grid.flux(theta) / grid.continuum(theta)
    window = (grid.wave > 8480) & (grid.wave < 8680)
    image = right.imshow(
        flux[:, window],
        aspect="auto",
        origin="lower",
        cmap="magma",
        extent=(grid.wave[window][0], grid.wave[window][-1], teff[0] - 125, teff[-1] + 125),
    )
    right.set_xlabel("wavelength (Å)")
    right.set_ylabel("T_eff (K)")
    right.set_title("Ca II triplet, log g = 2.5, [M/H] = 0")
    fig.colorbar(image, ax=right, label="flux / continuum")
    fig.tight_layout()
    GRID_FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(GRID_FIGURE, dpi=100)
    plt.close(fig)


def setup(app):
    # before sphinx-gallery (priority 500) makes the gallery's thumbnails
    app.connect("builder-inited", _grid_build_figure, priority=100)
    app.connect("autodoc-skip-member", _skip_metadata_request_setters)
    app.connect("autodoc-process-docstring", _data_doc_comment, priority=100)
