"""Type stub for the compiled cffi module: `ffi` and `lib` are built at install time (native/build_ffi.py)."""

from typing import Any

ffi: Any  # cffi's FFI instance for this module
lib: Any  # the C functions and enums of native/sysmon.cdef.h
