"""pip install ./python: builds lq's extension with the project's CMake.

Needs what scripts/test installs (LLVM/MLIR 22, CMake, Ninja, pybind11);
pip's build isolation has no network here, so install with
--no-build-isolation (docs/python.md: into a virtual environment).

LQ_CMAKE_BUILD_DIR=<a configured lq build> takes the extension from that
build (brought up to date with `cmake --build <dir> --target lq-python`:
_lq, and _lq_torch where that build found PyTorch's C++ headers) instead
of configuring and building lq again in pip's build directory.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The one place lq's version is written is CMakeLists.txt's project() call.
with open(os.path.join(ROOT, "CMakeLists.txt")) as cmake:
    VERSION = re.search(r"project\(lq VERSION ([0-9.]+)", cmake.read()).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.environ.get("LQ_CMAKE_BUILD_DIR")
        if build:
            # An existing build keeps its own configuration: configuring it
            # here would rewrite its cache (tests off, this interpreter).
            build = os.path.abspath(build)
            if not os.path.isfile(os.path.join(build, "CMakeCache.txt")):
                sys.exit(f"LQ_CMAKE_BUILD_DIR={build}: not a configured "
                         "CMake build of lq (no CMakeCache.txt)")
        else:
            build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
            subprocess.check_call([
                "cmake", "-G", "Ninja", "-S", ROOT, "-B", build,
                "-DCMAKE_BUILD_TYPE=Release", "-DLQ_BUILD_TESTS=OFF",
                f"-DPython3_EXECUTABLE={sys.executable}"])
        # _lq, and _lq_torch where the build found PyTorch's C++ headers.
        subprocess.check_call(["cmake", "--build", build, "--target",
                               "lq-python"])
        built = os.path.join(build, "python", "lq")
        # The extension must be built for this interpreter (an existing
        # build may have been configured for another Python).
        module = "_lq" + sysconfig.get_config_var("EXT_SUFFIX")
        if not os.path.isfile(os.path.join(built, module)):
            sys.exit(f"{build}: no {module} in python/lq: the build is not "
                     f"for this Python ({sys.executable})")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(os.path.join(built, module), target)
        # lq.torch runs its Python autograd.Function without this one.
        torch_module = "_lq_torch" + sysconfig.get_config_var("EXT_SUFFIX")
        if os.path.isfile(os.path.join(built, torch_module)):
            shutil.copy(os.path.join(built, torch_module),
                        os.path.join(os.path.dirname(target), torch_module))


setup(
    name="lq",
    version=VERSION,
    description="4-bit training GEMMs: LUQ gradients, SAWB weights and "
                "activations, compiled kernels",
    packages=["lq"],
    ext_modules=[Extension("lq._lq", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
)
