//===- GpuKernelsGen.cpp - lq.matmul to generated CUDA kernels ------------===//

#include "lq/Conversion/GpuKernels.h"
#include "lq/Dialect/LqDialect.h"
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
    std::optional<GpuChip> target = parseGpuChip(chip);
    if (!target) {
      module.emitError() << "unknown GPU chip '" << chip
                         << "': expected sm_80 or sm_90a";
      return signalPassFailure();
    }
    SmallVector<MatmulOp> matmuls;
    module.walk([&](MatmulOp op) { matmuls.push_back(op); });
    SymbolTable symbols(module);
    unsigned index = 0;
    for (MatmulOp op : matmuls) {
      FailureOr<CpuOperandSpec> lhs = matmulOperandSpec(
          op, op.getLhs().front(), op.getTransposeLhs(), "left", "GPU");
      FailureOr<CpuOperandSpec> rhs = matmulOperandSpec(
          op, op.getRhs(), op.getTransposeRhs(), "right", "GPU");
      if (failed(lhs) || failed(rhs))
        return signalPassFailure();
      GpuGemmSpec spec;
      spec.lhs = *lhs;
      spec.rhs = *rhs;
      spec.samples = op.getNumSamples();
      if (auto quantize = op.getLhs().front().getDefiningOp<QuantizeOp>())
        spec.hindsight = quantize.getHindsight();
      spec.bias = bool(op.getBias());
      spec.relu = op.getRelu();
      spec.bf16Output =
          cast<RankedTensorType>(op.getType()).getElementType().isBF16();
      spec.chip = *target;

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
