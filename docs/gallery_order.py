"""The order of the gallery's cards: the quick start first, the grid build last."""

ORDER = [
    "plot_quickstart.py",
    "plot_grid_spectra.py",
    "plot_template_fit.py",
    "plot_r2_vs_snr.py",
    "plot_uncertainties.py",
    "plot_learning_curve.py",
    "plot_build_grid.py",
]


class GalleryOrder:
    """sphinx-gallery's ``within_subsection_order``: the position of a file in ORDER.

    Examples not listed come after the listed ones, by file name.
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in ORDER:
            return (ORDER.index(filename), filename)
        return (len(ORDER), filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
