//===- CpuAbiTest.cpp - generated CPU stages agree with CpuAbi.h ----------===//
//
// The host runtime calls the stages through function pointer types made
// from CpuAbi.h's tables; a stage whose generated signature left the table
// would be called with the wrong arguments. Every stage of the kernels of
// every GEMM role, with every operand storage, must declare the table's
// parameters in order.
//
//===----------------------------------------------------------------------===//

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/InitAll.h"
#include "lq/Spec/CpuAbi.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace mlir;
using lq::DType;
using lq::GemmSpec;
using lq::cpu::ParamKind;

namespace {

std::vector<ParamKind> kindsOf(llvm::StringRef stage) {
  auto list = [](const auto &kinds) {
    return std::vector<ParamKind>(std::begin(kinds), std::end(kinds));
  };
  if (stage.starts_with("lq_maxabs_") || stage.starts_with("lq_moments_"))
    return list(lq::cpu::kStatsKinds);
  if (stage.starts_with("lq_quant_"))
    return list(lq::cpu::kQuantKinds);
  if (stage == "lq_pack4")
    return list(lq::cpu::kPack4Kinds);
  if (stage == "lq_pack_a")
    return list(lq::cpu::kPackAKinds);
  if (stage == "lq_pack_b")
    return list(lq::cpu::kPackBKinds);
  if (stage == "lq_gemm")
    return list(lq::cpu::kGemmKinds);
  return {};
}

bool matches(Type type, ParamKind kind) {
  switch (kind) {
  case ParamKind::Memref:
    return isa<MemRefType>(type) && cast<MemRefType>(type).getRank() == 1;
  case ParamKind::Index:
    return type.isIndex();
  case ParamKind::I64:
    return type.isInteger(64);
  case ParamKind::I32:
    return type.isInteger(32);
  case ParamKind::F32:
    return type.isF32();
  }
  return false;
}

TEST(CpuAbiAgreement, EveryStageDeclaresTheTablesParameters) {
  DialectRegistry registry;
  lq::registerAllDialects(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  GemmSpec bf16Out = GemmSpec::forward(DType::BF16, true);
  bf16Out.output = DType::BF16;
  bf16Out.bias = true;
  std::vector<GemmSpec> specs = {
      GemmSpec::forward(), bf16Out, GemmSpec::backwardData(DType::BF16, 2),
      GemmSpec::weightGrad(DType::Packed4), GemmSpec::backwardData()};
  int stages = 0;
  // Every dot product's micro-kernel takes the same parameters.
  std::vector<lq::CpuKernelOptions> targets(3);
  targets[1].dot = lq::CpuDotProduct::AvxVnni;
  targets[2].dot = lq::CpuDotProduct::Avx512Vnni;
  for (const GemmSpec &spec : specs)
    for (int build = 0; build < 4; ++build) {
      bool quantizeOnly = build == 3;
      OwningOpRef<ModuleOp> module =
          quantizeOnly ? lq::buildCpuQuantizeKernels(ctx, spec.lhs)
                       : lq::buildCpuGemmKernels(ctx, spec, targets[build]);
      for (auto fn : module->getOps<func::FuncOp>()) {
        if (fn.getName().starts_with("_mlir_ciface_"))
          continue;
        std::vector<ParamKind> kinds = kindsOf(fn.getName());
        SCOPED_TRACE(spec.describe() + " " + fn.getName().str() + " " +
                     (quantizeOnly ? "quantize"
                                   : lq::cpuDotProductName(targets[build].dot)));
        ASSERT_FALSE(kinds.empty()) << "a stage outside CpuAbi.h";
        ArrayRef<Type> inputs = fn.getFunctionType().getInputs();
        ASSERT_EQ(inputs.size(), kinds.size());
        for (size_t i = 0; i < kinds.size(); ++i)
          EXPECT_TRUE(matches(inputs[i], kinds[i])) << "parameter " << i;
        ++stages;
      }
    }
  EXPECT_GT(stages, 20);
}

} // namespace
