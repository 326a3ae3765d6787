# lit configuration for lq.

import os
import subprocess

import lit.formats
from lit.llvm import llvm_config

config.name = "lq"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "golden", "aot"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.lq_obj_root, "test")

llvm_config.with_system_environment(["HOME", "TMPDIR"])
llvm_config.use_default_substitutions()

config.substitutions.append(("%lq_src_root", config.lq_src_root))
config.substitutions.append(("%python", "python3"))
config.substitutions.append(
    ("%mlir_c_runner_utils",
     os.path.join(config.llvm_lib_dir, "libmlir_c_runner_utils.so")))
config.substitutions.append(
    ("%mlir_runner_utils",
     os.path.join(config.llvm_lib_dir, "libmlir_runner_utils.so")))

# lq tools come from the build; FileCheck, not, mlir-opt, mlir-runner and
# llvm-objdump from the LLVM installation.
tool_dirs = [config.lq_tools_dir, config.llvm_tools_dir]
tools = ["lq-opt", "mlir-opt", "mlir-runner", "not", "llvm-objdump"]
# lq-gpu-pack and lq-compile are built where the CUDA driver header is found.
for tool in ["lq-gpu-pack", "lq-compile"]:
    if os.path.exists(os.path.join(config.lq_tools_dir, tool)):
        tools.append(tool)
        config.available_features.add(tool)
# lq-train is built where zlib and OpenBLAS are found.
if os.path.exists(os.path.join(config.lq_tools_dir, "lq-train")):
    tools.append("lq-train")
    config.available_features.add("lq-train")
# lq-bench is built where Google Benchmark and OpenBLAS are found.
if os.path.exists(os.path.join(config.lq_tools_dir, "lq-bench")):
    tools.append("lq-bench")
    config.available_features.add("lq-bench")
if os.path.exists(os.path.join(config.lq_tools_dir, "lq-plot")):
    tools.append("lq-plot")
# lq-plot draws with matplotlib, which lq-train looks for in Debian's
# interpreter first: probe the same one. Without it the PNGs are not drawn
# and lq-train says so (test/lq-train/plot.test pins that either way).
python_for_plots = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
if subprocess.run([python_for_plots, "-c", "import matplotlib"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
    config.available_features.add("matplotlib")
config.substitutions.append(("%plot_python", python_for_plots))
llvm_config.add_tool_substitutions(tools, tool_dirs)
