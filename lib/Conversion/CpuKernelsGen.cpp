//===- CpuKernelsGen.cpp - lq.matmul to generated CPU kernel stages -------===//

#include "lq/Conversion/CpuKernels.h"
#include "lq/Dialect/LqDialect.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/SymbolTable.h"

namespace lq {
#define GEN_PASS_DEF_LQCPUKERNELS
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;

/// How an operand reaches the kernel, read off its producer.
FailureOr<CpuOperandSpec> lq::matmulOperandSpec(MatmulOp op, Value operand,
                                                bool transposed,
                                                StringRef side,
                                                StringRef device) {
  CpuOperandSpec spec;
  spec.format = getFormat(cast<QTensorType>(operand.getType()).getFormat());
  spec.transposed = transposed;
  if (auto quantize = operand.getDefiningOp<QuantizeOp>()) {
    Type element = quantize.getInput().getType().getElementType();
    if (element.isF16())
      return op.emitError() << side << " operand: f16 inputs have no "
                            << device << " kernel yet; use f32 or bf16";
    spec.storage = element.isBF16() ? OperandStorage::BF16 : OperandStorage::F32;
    return spec;
  }
  if (operand.getDefiningOp<UnpackOp>()) {
    spec.storage = OperandStorage::Packed;
    return spec;
  }
  return op.emitError() << side
                        << " operand must come from lq.quantize or lq.unpack "
                           "to be fused into a "
                        << device << " kernel";
}

namespace {

struct LqCpuKernelsPass : lq::impl::LqCpuKernelsBase<LqCpuKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<MatmulOp> matmuls;
    module.walk([&](MatmulOp op) { matmuls.push_back(op); });
    SymbolTable symbols(module);
    unsigned index = 0;
    for (MatmulOp op : matmuls) {
      FailureOr<CpuOperandSpec> lhs =
          matmulOperandSpec(op, op.getLhs().front(),
                            op.getTransposeLhs(), "left", "CPU");
      FailureOr<CpuOperandSpec> rhs =
          matmulOperandSpec(op, op.getRhs(), op.getTransposeRhs(),
                            "right", "CPU");
      if (failed(lhs) || failed(rhs))
        return signalPassFailure();
      CpuGemmSpec spec;
      spec.lhs = *lhs;
      spec.rhs = *rhs;
      spec.bias = bool(op.getBias());
      spec.relu = op.getRelu();
      spec.bf16Output =
          cast<RankedTensorType>(op.getType()).getElementType().isBF16();

      std::string prefix = "lq_gemm" + std::to_string(index++);
      OwningOpRef<ModuleOp> kernels =
          buildCpuGemmKernels(getContext(), spec);
      for (func::FuncOp fn :
           llvm::make_early_inc_range(kernels->getOps<func::FuncOp>())) {
        // lq_<stage> -> lq_gemm<N>_<stage>
        fn.setName(prefix + fn.getName().drop_front(2).str());
        fn->moveBefore(module.getBody(), module.getBody()->end());
        symbols.insert(fn);
      }
      op->setAttr("lq.cpu_kernel", StringAttr::get(&getContext(), prefix));
      op->setAttr("lq.cpu_spec",
                  StringAttr::get(&getContext(), spec.describe()));
    }
  }
};

} // namespace
