//===- GpuCompiler.cpp - GemmSpecs to PTX modules --------------------------===//

#include "lq/Jit/GpuCompiler.h"

#include "HostJit.h"
#include "lq/Runtime/Checks.h"
#include "lq/Conversion/Gpu/GpuKernels.h"
#include "lq/InitAll.h"
#include "lq/Target/GpuTarget.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <algorithm>

using namespace lq;

namespace {

/// A context for generated kernels: the dialects they use and what their
/// lowering to PTX needs, nothing else (a context per build, so that builds
/// run in parallel; each loads only the dialects it touches). No threads
/// of its own: parallelism is across builds.
std::unique_ptr<mlir::MLIRContext> kernelContext() {
  mlir::DialectRegistry registry;
  registerGpuTargetInterfaces(registry);
  return std::make_unique<mlir::MLIRContext>(
      registry, mlir::MLIRContext::Threading::DISABLED);
}

/// Lowers the kernels of `module` to PTX; diagnostics become the error.
Result<std::string> lower(mlir::ModuleOp module, Target chip,
                          const GpuStageCallback &stage) {
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(module.getContext(),
                                        [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  StageCallback callback;
  if (stage)
    callback = [&](llvm::StringRef name, llvm::StringRef text) {
      stage(std::string_view(name.data(), name.size()),
            std::string_view(text.data(), text.size()));
    };
  mlir::FailureOr<std::string> ptx = lowerKernelsToPtx(module, chip, callback);
  if (failed(ptx))
    return Result<std::string>::failure("GPU kernel lowering failed: " +
                                        diagnostics);
  return *ptx;
}


/// Success when `spec` (or its quantizer) has a GPU module, else why not.
Status checkModule(const GemmSpec &spec, bool quantizeOnly) {
  if (!isCudaTarget(spec.target))
    return Error{"GPU kernels need a CUDA target (" + cudaTargetNames() + ")"};
  if (quantizeOnly)
    return spec.lhs.isFloat()
               ? Status()
               : Error{"only f32 and bf16 tensors are quantized"};
  return validateSpec(spec);
}

/// The kernels of `spec` (or of its quantizer) that `only` selects, built
/// in `ctx`.
Result<mlir::OwningOpRef<mlir::ModuleOp>>
buildKernels(mlir::MLIRContext &ctx, const GemmSpec &spec, bool quantizeOnly,
             const KernelFilter &only) {
  using R = Result<mlir::OwningOpRef<mlir::ModuleOp>>;
  LQ_TRY(checkModule(spec, quantizeOnly));
  Target chip = spec.target;
  if (quantizeOnly)
    return buildGpuQuantizeKernels(ctx, spec.lhs, chip,
                                   only);
  return buildGpuGemmKernels(ctx, spec, only);
}

std::string printed(mlir::ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}

/// The quantizer module's spec: `spec.lhs` alone, for `target`.
GemmSpec quantizerSpec(Format format, DType dtype, Target target) {
  GemmSpec spec;
  spec.lhs = {format, dtype, false};
  spec.target = target;
  return spec;
}

GpuModuleImage imageOf(std::string ptx, const GemmSpec &spec,
                       bool quantizeOnly) {
  GpuModuleImage image;
  image.ptx = std::move(ptx);
  image.info.spec = spec;
  image.info.quantizeOnly = quantizeOnly;
  if (!quantizeOnly)
    image.info.tiles =
        gpuGemmTiles(spec);
  return image;
}

/// The whole module of `spec` (or of its quantizer) lowered to PTX.
Result<GpuModuleImage> compileModule(const GemmSpec &spec, bool quantizeOnly,
                                     const GpuStageCallback &stage) {
  using R = Result<GpuModuleImage>;
  std::unique_ptr<mlir::MLIRContext> ctx = kernelContext();
  auto module = buildKernels(*ctx, spec, quantizeOnly, {});
  if (!module)
    return R::failure(module.error());
  Result<std::string> ptx = lower(**module, spec.target, stage);
  if (!ptx)
    return R::failure(ptx.error());
  return imageOf(std::move(*ptx), spec, quantizeOnly);
}

} // namespace

struct GpuKernelBuild::State {
  std::unique_ptr<mlir::MLIRContext> ctx;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  Target chip;
  std::string source;
};

GpuKernelBuild::GpuKernelBuild(std::unique_ptr<State> state)
    : state(std::move(state)) {}
GpuKernelBuild::GpuKernelBuild(GpuKernelBuild &&) noexcept = default;
GpuKernelBuild &GpuKernelBuild::operator=(GpuKernelBuild &&) noexcept = default;
GpuKernelBuild::~GpuKernelBuild() = default;

Result<GpuKernelBuild>
GpuKernelBuild::create(const GemmSpec &spec, bool quantizeOnly,
                       const std::vector<std::string> &kernels) {
  using R = Result<GpuKernelBuild>;
  auto state = std::make_unique<State>();
  state->ctx = kernelContext();
  KernelFilter only = [&](llvm::StringRef name) {
    return std::find(kernels.begin(), kernels.end(), name) != kernels.end();
  };
  auto module = buildKernels(*state->ctx, spec, quantizeOnly, only);
  if (!module)
    return R::failure(module.error());
  state->module = std::move(*module);
  for (const std::string &name : kernels)
    if (!state->module->lookupSymbol<mlir::gpu::GPUModuleOp>("lq_kernels")
             .lookupSymbol(name))
      return R::failure("the GPU module of " +
                        std::string(quantizeOnly ? "quantize " : "") +
                        spec.describe() + " has no kernel " + name);
  state->chip = spec.target;
  state->source = printed(*state->module);
  return GpuKernelBuild(std::move(state));
}

const std::string &GpuKernelBuild::source() const { return state->source; }

Result<std::string> GpuKernelBuild::ptx(const GpuStageCallback &stage) {
  if (!state->module)
    return Result<std::string>::failure("the kernels were lowered already");
  Result<std::string> ptx = lower(*state->module, state->chip, stage);
  state->module = nullptr;
  return ptx;
}

Result<cuda::GpuModuleInfo> lq::gpuModuleInfo(const GemmSpec &spec,
                                             bool quantizeOnly) {
  LQ_TRY(checkModule(spec, quantizeOnly));
  return imageOf("", spec, quantizeOnly).info;
}

Result<std::string> lq::gpuKernelSource(const GemmSpec &spec,
                                        bool quantizeOnly) {
  std::unique_ptr<mlir::MLIRContext> ctx = kernelContext();
  auto module = buildKernels(*ctx, spec, quantizeOnly, {});
  if (!module)
    return Result<std::string>::failure(module.error());
  return printed(**module);
}

Result<GpuModuleImage> lq::compileGpuGemm(const GemmSpec &spec,
                                          const GpuStageCallback &stage) {
  return compileModule(spec, /*quantizeOnly=*/false, stage);
}

Result<GpuModuleImage> lq::compileGpuQuantize(Format format, DType dtype,
                                              Target target,
                                              const GpuStageCallback &stage) {
  return compileModule(quantizerSpec(format, dtype, target),
                       /*quantizeOnly=*/true, stage);
}

std::vector<GpuModuleEntry> lq::standardGpuModules() {
  std::vector<GpuModuleEntry> set;
  set.push_back({"fwd_f32", GemmSpec::forward(DType::F32)});
  GemmSpec fwd = GemmSpec::forward(DType::BF16, /*unsignedInput=*/true);
  fwd.bias = fwd.relu = true;
  fwd.output = DType::BF16;
  set.push_back({"fwd_bf16_u4_bias_relu", fwd});
  set.push_back({"bwd_data_f32", GemmSpec::backwardData(DType::F32)});
  set.push_back({"bwd_data_bf16", GemmSpec::backwardData(DType::BF16)});
  set.push_back({"bwd_data_bf16_smp2", GemmSpec::backwardData(DType::BF16, 2)});
  set.push_back({"wgrad_f32", GemmSpec::weightGrad(DType::F32)});
  set.push_back({"wgrad_bf16", GemmSpec::weightGrad(DType::BF16)});
  set.push_back({"wgrad_f32_smp4", GemmSpec::weightGrad(DType::F32, 4)});
  GemmSpec hindsight = GemmSpec::backwardData(DType::F32);
  hindsight.hindsight = true;
  set.push_back({"bwd_data_f32_hindsight", hindsight});
  GemmSpec packed = GemmSpec::backwardData(DType::Packed4);
  set.push_back({"bwd_data_packed", packed});
  GemmSpec packedWgrad = GemmSpec::weightGrad(DType::Packed4, 2);
  set.push_back({"wgrad_packed_smp2", packedWgrad});
  // The GEMMs of lq.torch.Linear beyond those above (f32 activations, f32
  // bias): a layer's forward, and its forward and weight gradient after a
  // ReLU (unsigned x).
  GemmSpec linear = GemmSpec::forward(DType::F32);
  linear.bias = true;
  set.push_back({"fwd_f32_bias", linear});
  GemmSpec linearU4 = GemmSpec::forward(DType::F32, /*unsignedInput=*/true);
  linearU4.bias = true;
  set.push_back({"fwd_f32_u4_bias", linearU4});
  set.push_back({"wgrad_f32_u4",
                 GemmSpec::weightGrad(DType::F32, 1, /*unsignedInput=*/true)});
  GemmSpec quant;
  quant.lhs = {Format::Log4, DType::F32, false};
  set.push_back({"quant_log4_f32", quant, true});
  quant.lhs = {Format::Log4, DType::BF16, false};
  set.push_back({"quant_log4_bf16", quant, true});
  quant.lhs = {Format::SInt4, DType::BF16, false};
  set.push_back({"quant_sint4_bf16", quant, true});
  return set;
}
