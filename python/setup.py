"""pip install ./python: builds lq's extension with the project's CMake.

Needs what scripts/test installs (LLVM/MLIR 22, CMake, Ninja, pybind11);
pip's build isolation has no network here, so install with
--no-build-isolation.
"""

import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The one place lq's version is written is CMakeLists.txt's project() call.
with open(os.path.join(ROOT, "CMakeLists.txt")) as cmake:
    VERSION = re.search(r"project\(lq VERSION ([0-9.]+)", cmake.read()).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        subprocess.check_call([
            "cmake", "-G", "Ninja", "-S", ROOT, "-B", build,
            "-DCMAKE_BUILD_TYPE=Release", "-DLQ_BUILD_TESTS=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", build, "--target", "_lq"])
        built = os.path.join(build, "python", "lq")
        module = next(f for f in os.listdir(built) if f.startswith("_lq."))
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(os.path.join(built, module), target)


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
