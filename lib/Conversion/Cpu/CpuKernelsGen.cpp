//===- CpuKernelsGen.cpp - lq.matmul to generated CPU kernel stages -------===//

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Dialect/MatmulSpec.h"
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

namespace {

struct LqCpuKernelsPass : lq::impl::LqCpuKernelsBase<LqCpuKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    CpuKernelOptions options;
    std::optional<CpuDotProduct> dot = parseCpuDotProduct(dotProduct);
    if (!dot) {
      module.emitError() << "unknown dot-product '" << dotProduct
                         << "': expected avx2-vpmaddubsw, avx-vnni or "
                            "avx512-vnni";
      return signalPassFailure();
    }
    options.dot = *dot;
    SmallVector<MatmulOp> matmuls;
    module.walk([&](MatmulOp op) { matmuls.push_back(op); });
    SymbolTable symbols(module);
    unsigned index = 0;
    for (MatmulOp op : matmuls) {
      FailureOr<GemmSpec> spec = readMatmulSpec(op, "CPU");
      if (failed(spec))
        return signalPassFailure();

      std::string prefix = "lq_gemm" + std::to_string(index++);
      OwningOpRef<ModuleOp> kernels =
          buildCpuGemmKernels(getContext(), *spec, options);
      for (func::FuncOp fn :
           llvm::make_early_inc_range(kernels->getOps<func::FuncOp>())) {
        // lq_<stage> -> lq_gemm<N>_<stage>
        fn.setName(prefix + fn.getName().drop_front(2).str());
        fn->moveBefore(module.getBody(), module.getBody()->end());
        symbols.insert(fn);
      }
      op->setAttr("lq.cpu_kernel", StringAttr::get(&getContext(), prefix));
      op->setAttr("lq.cpu_spec",
                  StringAttr::get(&getContext(),
                                  describeCpuKernels(*spec, options)));
    }
  }
};

} // namespace
