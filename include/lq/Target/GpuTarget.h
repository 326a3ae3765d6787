//===- GpuTarget.h - kernel modules to PTX ---------------------*- C++ -*-===//
//
// The GPU back half of the pipeline, as named stages:
//
//   kernels   gpu.module of gpu/nvvm/llvm/arith/scf ops (GpuKernels.h)
//   nvvm      the same module in the LLVM dialect with NVVM intrinsics
//   ptx       PTX text from LLVM's NVPTX backend (gpu-module-to-binary,
//             format=isa); no CUDA toolkit involved
//
// PTX -> cubin is the runtime's business (nvJitLink or ptxas), so that a
// machine with only the CUDA driver can still load PTX.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TARGET_GPUTARGET_H
#define LQ_TARGET_GPUTARGET_H

#include "lq/Conversion/Gpu/GpuKernels.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <functional>
#include <string>

namespace mlir {
class DialectRegistry;
}

namespace lq {

/// Registers what kernel modules and their lowering to PTX need: the gpu
/// and nvvm dialects, the NVVM target attribute's serializer and the LLVM
/// IR translations of the dialects.
void registerGpuTargetInterfaces(mlir::DialectRegistry &registry);

/// Registers the `lq-lower-to-gpu` pipeline (lq programs to PTX).
void registerGpuPipelines();

/// Adds the passes that take `gpu.module`s of generated kernels to
/// `gpu.binary` ops holding PTX for `chip`.
void addGpuToPtxPasses(mlir::OpPassManager &pm, Target chip);

/// Called with (stage name, module text) after each named stage.
using StageCallback = std::function<void(llvm::StringRef, llvm::StringRef)>;

/// Lowers the kernel modules of `module` to PTX for `chip` and returns the
/// PTX text (of the one gpu.module). Errors are emitted as diagnostics on
/// the module's context.
mlir::FailureOr<std::string> lowerKernelsToPtx(mlir::ModuleOp module,
                                               Target chip,
                                               const StageCallback &stage = {});

} // namespace lq

#endif // LQ_TARGET_GPUTARGET_H
