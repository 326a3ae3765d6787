//===- GpuCompiler.cpp - GemmSpecs to PTX modules --------------------------===//

#include "lq/Runtime/GpuCompiler.h"

#include "HostJit.h"
#include "Spec.h"
#include "lq/Conversion/GpuKernels.h"
#include "lq/InitAll.h"
#include "lq/Target/GpuTarget.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

using namespace lq;

namespace {

std::optional<GpuChip> chipOf(Target target) {
  switch (target) {
  case Target::CudaSm80:
    return GpuChip::Sm80;
  case Target::CudaSm90a:
    return GpuChip::Sm90a;
  case Target::HostCPU:
    break;
  }
  return std::nullopt;
}

/// Builds kernels with `build` in a fresh context and lowers them to PTX;
/// diagnostics become the error message.
Result<std::string>
lower(GpuChip chip, const GpuStageCallback &stage,
      llvm::function_ref<mlir::OwningOpRef<mlir::ModuleOp>(mlir::MLIRContext &)>
          build) {
  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  mlir::MLIRContext ctx(registry, mlir::MLIRContext::Threading::DISABLED);
  ctx.loadAllAvailableDialects();
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  mlir::OwningOpRef<mlir::ModuleOp> module = build(ctx);
  StageCallback callback;
  if (stage)
    callback = [&](llvm::StringRef name, llvm::StringRef text) {
      stage(std::string_view(name.data(), name.size()),
            std::string_view(text.data(), text.size()));
    };
  mlir::FailureOr<std::string> ptx = lowerKernelsToPtx(*module, chip, callback);
  if (failed(ptx))
    return Result<std::string>::failure("GPU kernel lowering failed: " +
                                        diagnostics);
  return *ptx;
}

GpuGemmSpec gpuSpecOf(const GemmSpec &spec, GpuChip chip) {
  CpuGemmSpec kernel = runtime::toCpuSpec(spec);
  GpuGemmSpec gpuSpec;
  gpuSpec.lhs = kernel.lhs;
  gpuSpec.rhs = kernel.rhs;
  gpuSpec.samples = spec.samples;
  gpuSpec.hindsight = spec.hindsight;
  gpuSpec.bias = kernel.bias;
  gpuSpec.relu = kernel.relu;
  gpuSpec.bf16Output = kernel.bf16Output;
  gpuSpec.chip = chip;
  return gpuSpec;
}

/// Why `spec` has no GPU GEMM module, or "".
std::string checkGpuSpec(const GemmSpec &spec) {
  std::string invalid = runtime::validateSpec(spec);
  if (!invalid.empty())
    return invalid;
  if (!chipOf(spec.target))
    return "GPU kernels need a CUDA target (sm_80 or sm_90a)";
  return "";
}

} // namespace

Result<std::string> lq::gpuKernelSource(const GemmSpec &spec,
                                        bool quantizeOnly) {
  std::optional<GpuChip> chip = chipOf(spec.target);
  if (!chip)
    return Result<std::string>::failure(
        "GPU kernels need a CUDA target (sm_80 or sm_90a)");
  if (!quantizeOnly)
    if (std::string error = checkGpuSpec(spec); !error.empty())
      return Result<std::string>::failure(error);
  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  mlir::MLIRContext ctx(registry, mlir::MLIRContext::Threading::DISABLED);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      quantizeOnly ? buildGpuQuantizeKernels(ctx, runtime::toCpuSpec(spec).lhs, *chip)
                   : buildGpuGemmKernels(ctx, gpuSpecOf(spec, *chip));
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return text;
}

Result<GpuModuleImage> lq::compileGpuGemm(const GemmSpec &spec,
                                          const GpuStageCallback &stage) {
  using R = Result<GpuModuleImage>;
  if (std::string error = checkGpuSpec(spec); !error.empty())
    return R::failure(error);
  GpuChip chip = *chipOf(spec.target);
  GpuGemmSpec gpuSpec = gpuSpecOf(spec, chip);
  Result<std::string> ptx = lower(chip, stage, [&](mlir::MLIRContext &ctx) {
    return buildGpuGemmKernels(ctx, gpuSpec);
  });
  if (!ptx)
    return R::failure(ptx.error());
  GpuModuleImage image;
  image.ptx = std::move(*ptx);
  image.info.chip = gpuChipName(chip);
  image.info.spec = spec;
  image.info.tiles = gpuGemmTiles(gpuSpec);
  return image;
}

Result<GpuModuleImage> lq::compileGpuQuantize(Format format, DType dtype,
                                              Target target,
                                              const GpuStageCallback &stage) {
  using R = Result<GpuModuleImage>;
  std::optional<GpuChip> chip = chipOf(target);
  if (!chip)
    return R::failure("GPU kernels need a CUDA target (sm_80 or sm_90a)");
  if (dtype != DType::F32 && dtype != DType::BF16)
    return R::failure("only f32 and bf16 tensors are quantized");
  GemmSpec spec;
  spec.lhs = {format, dtype, false};
  spec.target = target;
  Result<std::string> ptx = lower(*chip, stage, [&](mlir::MLIRContext &ctx) {
    return buildGpuQuantizeKernels(ctx, runtime::toCpuSpec(spec).lhs, *chip);
  });
  if (!ptx)
    return R::failure(ptx.error());
  GpuModuleImage image;
  image.ptx = std::move(*ptx);
  image.info.chip = gpuChipName(*chip);
  image.info.spec = spec;
  image.info.quantizeOnly = true;
  return image;
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
  GemmSpec quant;
  quant.lhs = {Format::Log4, DType::F32, false};
  set.push_back({"quant_log4_f32", quant, true});
  quant.lhs = {Format::Log4, DType::BF16, false};
  set.push_back({"quant_log4_bf16", quant, true});
  quant.lhs = {Format::SInt4, DType::BF16, false};
  set.push_back({"quant_sint4_bf16", quant, true});
  return set;
}
