//===- GpuKernelsGen.cpp - lq.matmul to generated CUDA kernels ------------===//

#include "lq/Conversion/Gpu/GpuKernels.h"
#include "lq/Dialect/MatmulSpec.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/SymbolTable.h"

namespace lq {
#define GEN_PASS_DEF_LQGPUKERNELS
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;

namespace {

struct LqGpuKernelsPass : lq::impl::LqGpuKernelsBase<LqGpuKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<Target> target = parseTarget(chip);
    if (!target || !isCudaTarget(*target)) {
      module.emitError() << "unknown GPU chip '" << chip << "': expected "
                         << cudaTargetNames();
      return signalPassFailure();
    }
    SmallVector<MatmulOp> matmuls;
    module.walk([&](MatmulOp op) { matmuls.push_back(op); });
    SymbolTable symbols(module);
    unsigned index = 0;
    for (MatmulOp op : matmuls) {
      FailureOr<GemmSpec> read = readMatmulSpec(op, "GPU");
      if (failed(read))
        return signalPassFailure();
      GemmSpec spec = *read;
      spec.target = *target;

      std::string name = "lq_gemm" + std::to_string(index++);
      OwningOpRef<ModuleOp> kernels = buildGpuGemmKernels(getContext(), spec);
      for (mlir::gpu::GPUModuleOp gpuModule :
           llvm::make_early_inc_range(kernels->getOps<mlir::gpu::GPUModuleOp>())) {
        gpuModule.setName(name);
        gpuModule->moveBefore(module.getBody(), module.getBody()->end());
        symbols.insert(gpuModule);
      }
      op->setAttr("lq.gpu_kernel", StringAttr::get(&getContext(), name));
      op->setAttr("lq.gpu_spec",
                  StringAttr::get(&getContext(), spec.describe()));
    }
    if (!matmuls.empty())
      module->setAttr(mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                      UnitAttr::get(&getContext()));
  }
};

} // namespace
