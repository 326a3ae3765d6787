# lit configuration for lq.

import os

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

# lq tools come from the build; FileCheck, not, mlir-opt and mlir-runner from
# the LLVM installation.
tool_dirs = [config.lq_tools_dir, config.llvm_tools_dir]
tools = ["lq-opt", "mlir-opt", "mlir-runner", "not"]
# lq-gpu-pack and lq-compile are built where the CUDA driver header is found.
for tool in ["lq-gpu-pack", "lq-compile"]:
    if os.path.exists(os.path.join(config.lq_tools_dir, tool)):
        tools.append(tool)
        config.available_features.add(tool)
# lq-train is built where zlib and OpenBLAS are found.
if os.path.exists(os.path.join(config.lq_tools_dir, "lq-train")):
    tools.append("lq-train")
    config.available_features.add("lq-train")
llvm_config.add_tool_substitutions(tools, tool_dirs)
