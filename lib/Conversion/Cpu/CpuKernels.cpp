//===- CpuKernels.cpp - generated x86-64 kernels of a quantized GEMM ------===//

#include "KernelModuleBuilder.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace lq;
using namespace lq::cpu_stages;

namespace lq::cpu_stages {

const char *storageName(DType storage) {
  switch (storage) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  case DType::Packed4:
    return "packed";
  }
  llvm_unreachable("unknown storage");
}

MemRefType memref1d(Type element) {
  return MemRefType::get({ShapedType::kDynamic}, element);
}


ValueRange KernelModuleBuilder::beginFunction(StringRef name,
                                              ArrayRef<cpu::ParamKind> kinds,
                                              ArrayRef<Type> elements) {
  SmallVector<Type> args;
  size_t memrefs = 0;
  for (cpu::ParamKind kind : kinds)
    switch (kind) {
    case cpu::ParamKind::Memref:
      args.push_back(memref1d(elements[memrefs++]));
      break;
    case cpu::ParamKind::Index:
      args.push_back(b.getIndexType());
      break;
    case cpu::ParamKind::I64:
      args.push_back(b.getI64Type());
      break;
    case cpu::ParamKind::I32:
      args.push_back(b.getI32Type());
      break;
    case cpu::ParamKind::F32:
      args.push_back(b.getF32Type());
      break;
    }
  assert(memrefs == elements.size() && "one element type per memref");
  b.setInsertionPointToEnd(module->getBody());
  auto fn = func::FuncOp::create(b, name, b.getFunctionType(args, {}));
  fn->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  return entry->getArguments();
}

Type KernelModuleBuilder::storageType(const OperandSpec &op) {
  switch (op.dtype) {
  case DType::F32:
    return b.getF32Type();
  case DType::BF16:
    // Raw bf16 bits: widening is a shift, and no bf16 arithmetic (with its
    // runtime library calls) reaches the backend.
    return b.getI16Type();
  case DType::Packed4:
    return b.getI8Type();
  }
  llvm_unreachable("unknown storage");
}

OwningOpRef<ModuleOp> KernelModuleBuilder::build() {
  ctx.loadDialect<arith::ArithDialect, func::FuncDialect, LLVM::LLVMDialect,
                  math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect>();
  auto sideStages = [&](StringRef side, const OperandSpec &op) {
    if (op.dtype == DType::Packed4)
      return;
    if (op.format == Format::Log4)
      buildMaxAbs(side, op);
    else
      buildMoments(side, op);
    buildQuantize(side, op);
  };
  sideStages("lhs", spec.lhs);
  if (quantizeOnly) {
    buildPack4();
    return std::move(module);
  }
  sideStages("rhs", spec.rhs);
  buildPackA();
  buildPackB();
  buildGemm();
  return std::move(module);
}


} // namespace lq::cpu_stages


const char *lq::cpuDotProductName(CpuDotProduct dot) {
  switch (dot) {
  case CpuDotProduct::Avx2:
    return "avx2-vpmaddubsw";
  case CpuDotProduct::AvxVnni:
    return "avx-vnni";
  case CpuDotProduct::Avx512Vnni:
    return "avx512-vnni";
  }
  return "?";
}

std::optional<CpuDotProduct> lq::parseCpuDotProduct(std::string_view name) {
  for (CpuDotProduct dot : {CpuDotProduct::Avx2, CpuDotProduct::AvxVnni,
                            CpuDotProduct::Avx512Vnni})
    if (name == cpuDotProductName(dot))
      return dot;
  return std::nullopt;
}

std::string lq::describeCpuKernels(const GemmSpec &spec,
                                   const CpuKernelOptions &options) {
  auto side = [](const OperandSpec &op) {
    return std::string(formatName(op.format)) + ":" + storageName(op.dtype) +
           (op.transposed ? ":t" : ":n");
  };
  return "lhs=" + side(spec.lhs) + " rhs=" + side(spec.rhs) +
         " bias=" + (spec.bias ? "1" : "0") +
         " relu=" + (spec.relu ? "1" : "0") +
         " out=" + (spec.bf16Output() ? "bf16" : "f32") +
         " tile=" + std::to_string(kCpuTileRows) + "x" +
         std::to_string(kCpuTileCols * cpuTileColBlocks(options.dot)) +
         " dot=" + cpuDotProductName(options.dot);
}

OwningOpRef<ModuleOp>
lq::buildCpuGemmKernels(MLIRContext &ctx, const GemmSpec &spec,
                        const CpuKernelOptions &options) {
  return KernelModuleBuilder(ctx, spec, options, /*quantizeOnly=*/false)
      .build();
}

OwningOpRef<ModuleOp> lq::buildCpuQuantizeKernels(MLIRContext &ctx,
                                                  const OperandSpec &op) {
  GemmSpec spec;
  spec.lhs = op;
  return KernelModuleBuilder(ctx, spec, CpuKernelOptions(),
                             /*quantizeOnly=*/true)
      .build();
}

LogicalResult lq::lowerCpuKernelsToLLVM(ModuleOp module) {
  PassManager pm(module->getContext());
  // One verification of the result instead of one after each of the
  // twelve passes: a third of this lowering's time in a cold compile.
  pm.enableVerifier(false);
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  if (failed(pm.run(module)))
    return failure();
  return verify(module);
}
