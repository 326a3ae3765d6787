//===- GpuTarget.cpp - kernel modules to PTX -------------------------------===//
//
// The only translation unit with the NVVM target headers: they are heavy to
// compile.
//
//===----------------------------------------------------------------------===//

#include "lq/Target/GpuTarget.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"

using namespace mlir;

void lq::registerGpuTargetInterfaces(DialectRegistry &registry) {
  registry.insert<mlir::gpu::GPUDialect, NVVM::NVVMDialect>();
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

namespace {

void addToNvvmPasses(OpPassManager &pm, lq::Target chip) {
  GpuNVVMAttachTargetOptions target;
  target.chip = lq::targetName(chip);
  target.features = lq::gpuPtxFeatures(chip);
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &kernels = pm.nest<mlir::gpu::GPUModuleOp>();
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  kernels.addPass(lq::createLqGpuKernelParams());
  // What convert-gpu-to-nvvm leaves of the numerics and the control flow.
  kernels.addPass(createArithToLLVMConversionPass());
  // wgmma and the other NVVM ops that have no intrinsic become inline PTX.
  kernels.addPass(createConvertNVVMToLLVMPass());
  // A module pass: it converts the branches inside the gpu.modules.
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void addToBinaryPasses(OpPassManager &pm) {
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

} // namespace

void lq::addGpuToPtxPasses(OpPassManager &pm, Target chip) {
  addToNvvmPasses(pm, chip);
  addToBinaryPasses(pm);
}

FailureOr<std::string> lq::lowerKernelsToPtx(ModuleOp module, Target chip,
                                             const StageCallback &stage) {
  auto dump = [&](StringRef name) {
    if (!stage)
      return;
    std::string text;
    llvm::raw_string_ostream os(text);
    module.print(os);
    stage(name, text);
  };
  dump("kernels");
  PassManager toNvvm(module.getContext());
  addToNvvmPasses(toNvvm, chip);
  if (failed(toNvvm.run(module)))
    return failure();
  dump("nvvm");
  PassManager toBinary(module.getContext());
  addToBinaryPasses(toBinary);
  if (failed(toBinary.run(module)))
    return failure();

  std::string ptx;
  module.walk([&](mlir::gpu::BinaryOp binary) {
    for (Attribute object : binary.getObjects())
      ptx += cast<mlir::gpu::ObjectAttr>(object).getObject().getValue().str();
  });
  if (ptx.empty())
    return module.emitError("lowering produced no PTX"), failure();
  if (stage)
    stage("ptx", ptx);
  return ptx;
}

namespace {

struct LowerToGpuOptions : public PassPipelineOptions<LowerToGpuOptions> {
  Option<std::string> chip{*this, "chip",
                           llvm::cl::desc("Target GPU: sm_80 or sm_90a"),
                           llvm::cl::init("sm_80")};
};

} // namespace

void lq::registerGpuPipelines() {
  PassPipelineRegistration<LowerToGpuOptions>(
      "lq-lower-to-gpu",
      "Expand layers, generate the CUDA kernels of every lq.matmul and lower "
      "them to PTX (gpu.binary ops)",
      [](OpPassManager &pm, const LowerToGpuOptions &options) {
        std::optional<Target> chip = parseTarget(options.chip);
        pm.addPass(createLqExpandLinear());
        LqGpuKernelsOptions kernels;
        kernels.chip = options.chip;
        pm.addPass(createLqGpuKernels(kernels));
        // An unknown chip is reported by lq-gpu-kernels.
        if (chip && isCudaTarget(*chip))
          addGpuToPtxPasses(pm, *chip);
      });
}
