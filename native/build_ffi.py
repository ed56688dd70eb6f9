"""cffi builder for the C helper (API mode); setup.py names it in `cffi_modules`."""

from __future__ import annotations

import pathlib

from cffi import FFI

NATIVE = pathlib.Path(__file__).resolve().parent
MODULE = "tracklab_sysmon._sysmon_cffi"

ffibuilder = FFI()
ffibuilder.cdef((NATIVE / "sysmon.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "devices.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "procwalk.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "fabric.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "fdinfo.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "drmfds.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "ibports.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "sysints.cdef.h").read_text())
ffibuilder.cdef((NATIVE / "engines.cdef.h").read_text())
ffibuilder.set_source(
    MODULE,
    '#include "sysmon.h"\n#include "devices.h"\n#include "procwalk.h"\n#include "fabric.h"\n#include "fdinfo.h"\n'
    '#include "drmfds.h"\n#include "ibports.h"\n#include "sysints.h"\n#include "engines.h"',
    # setuptools wants source paths relative to setup.py, which sits one folder up.
    sources=["native/sysmon.c", "native/devices.c", "native/procwalk.c", "native/fabric.c",
             "native/fdinfo.c", "native/drmfds.c", "native/ibports.c", "native/sysints.c", "native/engines.c"],
    include_dirs=["native"],
    # No fused multiply-add: usage must round exactly as the Python twin's arithmetic does.
    extra_compile_args=["-std=gnu11", "-O2", "-ffp-contract=off"],
    libraries=["m"],
    # A machine without a C compiler still installs, with the Python twin as the backend.
    optional=True,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
