"""Only the C helper lives here; all metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
