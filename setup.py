"""Builds jaxnet's native CPU kernels (jaxnet/csrc/*.cc) as an optional extension.

The project's metadata is in pyproject.toml; this file only adds the C++
extension. It needs a C++17 compiler and the XLA FFI headers that ship with
jaxlib (``jax.ffi.include_dir()``; jaxlib is a build requirement). If either
is missing, or the compile fails, the install still succeeds without the
extension and jaxnet runs its pure-JAX kernels (it says so once, in one
line, when it first needs them).
"""

import os
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = ["jaxnet_cpu.cc", "kernels_base.cc", "kernels_avx2.cc", "kernels_avx512.cc"]


def _ffi_include_dir():
    try:
        import jaxlib  # noqa: F401  (the FFI headers ship in jaxlib)
        from jax import ffi

        return ffi.include_dir()
    except Exception:  # jax itself may be absent from the build environment
        try:
            import jaxlib

            path = os.path.join(os.path.dirname(jaxlib.__file__), "include")
            return path if os.path.isdir(path) else None
        except ImportError:
            return None


class OptionalBuildExt(build_ext):
    """``build_ext`` that reports a failed compile in one line instead of failing the install."""

    def run(self):
        include = _ffi_include_dir()
        if include is None:
            print("jaxnet: XLA FFI headers not found (is jaxlib installed?); skipping the native CPU kernels")
            return
        for ext in self.extensions:
            ext.include_dirs.append(include)
        try:
            super().run()
        except Exception as e:  # no compiler, or it failed
            print(f"jaxnet: could not build the native CPU kernels ({e}); jaxnet will use its pure-JAX kernels")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
            return
        except Exception:  # perhaps a compiler without GCC's --param: try once more without
            ext.extra_compile_args = [f for f in ext.extra_compile_args if not f.startswith("--param")]
        try:
            super().build_extension(ext)
        except Exception as e:
            print(f"jaxnet: could not build the native CPU kernels ({e}); jaxnet will use its pure-JAX kernels")

    def get_export_symbols(self, ext):
        return ["jaxnet_sums", "jaxnet_per_example"]


# GCC's complete-peeling limits are raised so that the loops over the seed
# net's units unroll and its units live in registers (4-5x faster; see
# jaxnet/csrc/kernels.h). -fno-math-errno lets sqrt vectorise.
flags = [
    "-std=c++17",
    "-O3",
    "-fno-math-errno",
    "-fvisibility=hidden",
    "--param=max-completely-peeled-insns=800",
    "--param=max-completely-peel-times=32",
]
if platform.system() == "Windows":  # pragma: no cover
    flags = ["/std:c++17", "/O2"]

setup(
    ext_modules=[
        Extension(
            "jaxnet._jaxnet_cpu",
            sources=[os.path.join("jaxnet", "csrc", s) for s in SOURCES],
            depends=[os.path.join("jaxnet", "csrc", h) for h in ("common.h", "kernels.h")],
            extra_compile_args=flags,
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
