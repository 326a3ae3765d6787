//===- GpuCompiler.h - GemmSpecs to PTX modules -----------------*- C++ -*-===//
//
// The compiler half of the CUDA backend: a GemmSpec (or a quantizer) for
// sm_80 or sm_90a -> generated kernels -> PTX, with the module info a
// launcher needs (lq/Runtime/GpuAbi.h). Launchers load the result with
// GpuLauncher, here or on a machine without LLVM (AOT kernel packs).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUCOMPILER_H
#define LQ_RUNTIME_GPUCOMPILER_H

#include "lq/Runtime/GpuAbi.h"
#include "lq/Runtime/Runtime.h"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

struct GpuModuleImage {
  std::string ptx;
  gpu::GpuModuleInfo info;
};

/// Called with (stage name, text) for each stage of the pipeline: "kernels"
/// (gpu dialect), "nvvm" (LLVM dialect), "ptx".
using GpuStageCallback = std::function<void(std::string_view, std::string_view)>;

/// The generated kernel module of `spec` (or of its left operand's
/// quantizer) as MLIR text, before lowering: what cache keys hash.
Result<std::string> gpuKernelSource(const GemmSpec &spec, bool quantizeOnly);

/// The kernels of `spec` (its target must be CudaSm80 or CudaSm90a).
Result<GpuModuleImage> compileGpuGemm(const GemmSpec &spec,
                                      const GpuStageCallback &stage = {});

/// The statistics and quantizer kernels of a float operand of `format`
/// stored as `dtype`, for `target`.
Result<GpuModuleImage> compileGpuQuantize(Format format, DType dtype,
                                          Target target,
                                          const GpuStageCallback &stage = {});

/// A named module of a kernel pack.
struct GpuModuleEntry {
  std::string name;
  GemmSpec spec;
  /// A quantizer module (spec.lhs names the operand) instead of a GEMM.
  bool quantize = false;
};

/// The modules the GPU tests and benchmarks run (target left to the
/// caller): every role, SMP, hindsight, bf16 in and out, the epilogue,
/// packed operands and the standalone quantizers.
std::vector<GpuModuleEntry> standardGpuModules();

} // namespace lq

#endif // LQ_RUNTIME_GPUCOMPILER_H
