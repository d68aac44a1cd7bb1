"""The one compiled part: collector/kernels/ (_kernels.c and the C files beside it, one
extension module), optional. Without a C compiler the install still succeeds and imflow runs
the same NumPy code paths (`imflow --version` says which)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("collector.kernels._kernels",
                             ["collector/kernels/_kernels.c", "collector/kernels/_classify.c",
                              "collector/kernels/_aggregate.c", "collector/kernels/_audit.c"],
                             depends=["collector/kernels/_kernels.h"], optional=True)])
