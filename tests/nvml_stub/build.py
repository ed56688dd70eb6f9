"""Build the stand-in libnvidia-ml.so.1 from C with the system compiler (tests and benchmarks)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

SOURCE = pathlib.Path(__file__).with_name("nvml_stub.c")
LIBRARY = "libnvidia-ml.so.1"  # the name pynvml asks the dynamic loader for


def build_stub(dest: pathlib.Path, *defines: str) -> pathlib.Path:
    """Compile the stub into `dest` and return that folder (put it on LD_LIBRARY_PATH); `defines` pick variants."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) found to build the NVML stand-in")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", *(f"-D{d}" for d in defines),
         "-o", str(dest / LIBRARY), str(SOURCE)],
        check=True,
        capture_output=True,
    )
    return dest


def stub_env(lib_dir: pathlib.Path, **scenario: str) -> dict[str, str]:
    """Environment for a subprocess that loads the stub; scenario keys become NVML_STUB_<KEY>."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib_dir), env.get("LD_LIBRARY_PATH")]))
    for key in [k for k in env if k.startswith("NVML_STUB_")]:
        del env[key]
    env.update({f"NVML_STUB_{key.upper()}": str(value) for key, value in scenario.items()})
    return env
