"""Only the C helper lives here; all metadata is in pyproject.toml.

The helper reads Linux /proc, so it is built only on Linux: elsewhere nothing is compiled (and no
compiler is looked for), and the psutil collectors serve instead.
"""

import sys

from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"] if sys.platform.startswith("linux") else [])
