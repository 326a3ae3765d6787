//===- GpuCompiler.h - GemmSpecs to PTX modules -----------------*- C++ -*-===//
//
// The compiler half of the CUDA backend: a GemmSpec (or a quantizer) for
// sm_80 or sm_90a -> generated kernels -> PTX, with the module info a
// launcher needs (lq/Spec/GpuAbi.h). Launchers load the result with
// GpuLauncher, here or on a machine without LLVM (AOT kernel packs).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUCOMPILER_H
#define LQ_RUNTIME_GPUCOMPILER_H

#include "lq/Spec/GpuAbi.h"
#include "lq/Runtime/Runtime.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

struct GpuModuleImage {
  std::string ptx;
  cuda::GpuModuleInfo info;
};

/// Called with (stage name, text) for each stage of the pipeline: "kernels"
/// (gpu dialect), "nvvm" (LLVM dialect), "ptx".
using GpuStageCallback = std::function<void(std::string_view, std::string_view)>;

/// What a launcher must know of the module of `spec` (or of its left
/// operand's quantizer), without generating it; an error when there is no
/// such module.
Result<cuda::GpuModuleInfo> gpuModuleInfo(const GemmSpec &spec,
                                         bool quantizeOnly);

/// The generated kernel module of `spec` (or of its left operand's
/// quantizer) as MLIR text, before lowering: what cache keys hash.
Result<std::string> gpuKernelSource(const GemmSpec &spec, bool quantizeOnly);

/// Some kernels of the module of `spec` (or of its left operand's
/// quantizer), generated once: their MLIR text is what a cache key hashes,
/// and the PTX is made only when the cache misses. Independent builds run
/// in parallel (each has its own MLIR context).
class GpuKernelBuild {
public:
  /// `kernels` names kernels of GpuAbi.h; every one must be in the module.
  static Result<GpuKernelBuild> create(const GemmSpec &spec, bool quantizeOnly,
                                       const std::vector<std::string> &kernels);
  GpuKernelBuild(GpuKernelBuild &&) noexcept;
  GpuKernelBuild &operator=(GpuKernelBuild &&) noexcept;
  ~GpuKernelBuild();

  /// The kernels as MLIR text, before lowering.
  const std::string &source() const;
  /// Lowers the kernels to PTX (once: the build is consumed).
  Result<std::string> ptx(const GpuStageCallback &stage = {});

private:
  struct State;
  explicit GpuKernelBuild(std::unique_ptr<State> state);
  std::unique_ptr<State> state;
};


/// The kernels of `spec` (its target must be CudaSm80 or CudaSm90a).
Result<GpuModuleImage> compileGpuGemm(const GemmSpec &spec,
                                      const GpuStageCallback &stage = {});

/// The statistics and quantizer kernels of a float operand of `format`
/// stored as `dtype`, for `target`.
Result<GpuModuleImage> compileGpuQuantize(Format format, DType dtype,
                                          Target target,
                                          const GpuStageCallback &stage = {});

/// Kernels `names` of the module of `spec` (or of its quantizer) as cubins
/// for `arch` ("sm_90a", or "sm_80", "sm_90", ... for sm_80 code): what a
/// launch compiles on the first use of its kernels. Each kernel is
/// generated, lowered to PTX and assembled (nvJitLink, else ptxas) on a
/// thread of its own, each step through the compile cache (keyed by the
/// kernel's IR, chip, PTX ISA, lq and LLVM versions; then by the PTX,
/// architecture and assembler). Needs the CUDA toolkit, not a GPU.
Result<std::vector<std::string>>
compileGpuKernels(const GemmSpec &spec, bool quantizeOnly,
                  const std::vector<std::string> &names,
                  const std::string &arch);

/// A named module of a kernel pack.
struct GpuModuleEntry {
  std::string name;
  GemmSpec spec;
  /// A quantizer module (spec.lhs names the operand) instead of a GEMM.
  bool quantize = false;
};

/// The modules the GPU tests and benchmarks run (target left to the
/// caller): every role, SMP, hindsight, bf16 in and out, the epilogue,
/// packed operands, the standalone quantizers and the GEMMs of
/// lq.torch.Linear (whose GPU check the pack serves).
std::vector<GpuModuleEntry> standardGpuModules();

} // namespace lq

#endif // LQ_RUNTIME_GPUCOMPILER_H
