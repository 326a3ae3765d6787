//===- CpuKernelsToLLVM.cpp - generated CPU kernel stages to LLVM ---------===//

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

namespace lq {
#define GEN_PASS_DEF_LQCPUKERNELSTOLLVM
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;

namespace {

struct LqCpuKernelsToLLVMPass
    : lq::impl::LqCpuKernelsToLLVMBase<LqCpuKernelsToLLVMPass> {
  void runOnOperation() override {
    if (failed(lq::lowerCpuKernelsToLLVM(getOperation())))
      signalPassFailure();
  }
};

} // namespace
