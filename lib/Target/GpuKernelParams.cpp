//===- GpuKernelParams.cpp - tensor maps as by-value kernel parameters ----===//
//
// lq-gpu-kernel-params: the arguments a lowered kernel lists in
// `lq.tensor_map_args` become CUtensorMaps passed by value (CUDA's
// __grid_constant__). A map the launcher copied to global memory would be a
// generic-proxy write that the TMA unit reads through the tensormap proxy,
// which needs a fence.proxy.tensormap::generic.acquire before its first use;
// in the parameter space it needs none and costs no copy.
//
//===----------------------------------------------------------------------===//

#include "lq/Target/GpuTarget.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

namespace lq {
#define GEN_PASS_DEF_LQGPUKERNELPARAMS
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;

namespace {

/// CUtensorMap's size and the alignment PTX requires of a tensor-map
/// parameter (GpuAbi.h's kTensorMapBytes and kTensorMapAlign).
constexpr int64_t kMapBytes = lq::cuda::kTensorMapBytes;
constexpr int64_t kMapAlign = lq::cuda::kTensorMapAlign;

LogicalResult byValue(LLVM::LLVMFuncOp fn, DenseI32ArrayAttr indices) {
  if (!fn->hasAttr(NVVM::NVVMDialect::getKernelFuncAttrName()))
    return fn.emitError() << "'" << lq::kTensorMapArgsAttr
                          << "' on a function that is not a kernel";
  Builder b(fn.getContext());
  for (int32_t index : indices.asArrayRef()) {
    if (index < 0 || unsigned(index) >= fn.getNumArguments())
      return fn.emitError() << "'" << lq::kTensorMapArgsAttr
                            << "' lists argument " << index << ", but @"
                            << fn.getName() << " has "
                            << fn.getNumArguments();
    Type type = fn.getArgument(index).getType();
    auto ptr = dyn_cast<LLVM::LLVMPointerType>(type);
    if (!ptr || ptr.getAddressSpace() != 0)
      return fn.emitError() << "tensor map argument " << index
                            << " must be a generic !llvm.ptr, not " << type;
    fn.setArgAttr(index, LLVM::LLVMDialect::getByValAttrName(),
                  TypeAttr::get(LLVM::LLVMArrayType::get(
                      IntegerType::get(fn.getContext(), 8), kMapBytes)));
    fn.setArgAttr(index, LLVM::LLVMDialect::getAlignAttrName(),
                  b.getI64IntegerAttr(kMapAlign));
    fn.setArgAttr(index, NVVM::NVVMDialect::getGridConstantAttrName(),
                  b.getUnitAttr());
  }
  fn->removeAttr(lq::kTensorMapArgsAttr);
  return success();
}

struct LqGpuKernelParamsPass
    : lq::impl::LqGpuKernelParamsBase<LqGpuKernelParamsPass> {
  void runOnOperation() override {
    WalkResult result = getOperation().walk([](LLVM::LLVMFuncOp fn) {
      Attribute attr = fn->getAttr(lq::kTensorMapArgsAttr);
      if (!attr)
        return WalkResult::advance();
      auto indices = dyn_cast<DenseI32ArrayAttr>(attr);
      if (!indices) {
        fn.emitError() << "'" << lq::kTensorMapArgsAttr
                       << "' must be a dense i32 array, not " << attr;
        return WalkResult::interrupt();
      }
      return failed(byValue(fn, indices)) ? WalkResult::interrupt()
                                          : WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
