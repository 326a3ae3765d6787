//===- GpuAddressTest.cpp - no 32-bit wrap in generated global addresses --===//
//
// Tensors passed to the GPU kernels can hold more than 2^31 elements, so the
// offset of every global-memory access must be computed without a 32-bit
// product or sum that can wrap. The kernels' sizes (M, N, K) are i32 and
// below 2^31; a column index times an element size, or a row times a stride,
// is not. This test walks the address computation of every global access in
// every kernel of the standard set and bounds each 32-bit operation in it
// from the hardware's limits (thread and block indices) and the constants;
// any i32 multiply, shift or add that can pass 2^32, or any i32 index that
// can reach 2^31 (GEP indices are signed), is reported with its kernel.
//
//===----------------------------------------------------------------------===//

#include "lq/InitAll.h"
#include "lq/Jit/GpuCompiler.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace mlir;

namespace {

using Bound = unsigned __int128;

/// The largest value (as unsigned) an integer of `bits` bits holds.
Bound maxOf(unsigned bits) { return (Bound(1) << bits) - 1; }

std::optional<uint64_t> constant(Value v) {
  if (auto c = v.getDefiningOp<arith::ConstantOp>())
    if (auto i = dyn_cast<IntegerAttr>(c.getValue()))
      return i.getValue().getZExtValue();
  return std::nullopt;
}

/// An upper bound of `v` read as unsigned, from constants, the hardware's
/// limits and the ABI (i32 kernel arguments are sizes and ids below 2^31);
/// a loop variable is below its loop's bound; other kernel arguments are
/// unbounded.
Bound upper(Value v) {
  unsigned bits = v.getType().getIntOrFloatBitWidth();
  Bound all = maxOf(bits);
  Operation *op = v.getDefiningOp();
  if (!op) {
    auto arg = cast<BlockArgument>(v);
    Operation *owner = arg.getOwner()->getParentOp();
    if (auto loop = dyn_cast<scf::ForOp>(owner))
      if (arg == loop.getInductionVar())
        return upper(loop.getUpperBound());
    bool kernelArg =
        isa<gpu::GPUFuncOp>(owner) && arg.getOwner()->isEntryBlock();
    return kernelArg && bits == 32 ? Bound(0x7FFFFFFF) : all;
  }
  auto of = [](Value x) { return upper(x); };
  auto clamp = [&](Bound b) { return b < all ? b : all; };
  Bound b = llvm::TypeSwitch<Operation *, Bound>(op)
      .Case([&](arith::ConstantOp) { return Bound(constant(v).value_or(0)); })
      .Case([](NVVM::ThreadIdXOp) { return Bound(1023); })
      .Case([](NVVM::BlockIdXOp) { return Bound(0x7FFFFFFF); })
      .Case([](NVVM::BlockIdYOp) { return Bound(65534); })
      .Case([](NVVM::GridDimXOp) { return Bound(0x7FFFFFFF); })
      .Case([](NVVM::GridDimYOp) { return Bound(65535); })
      .Case([&](arith::ExtUIOp e) { return of(e.getIn()); })
      .Case([&](arith::TruncIOp t) { return of(t.getIn()); })
      .Case([&](arith::AddIOp a) { return of(a.getLhs()) + of(a.getRhs()); })
      .Case([&](arith::MulIOp m) { return of(m.getLhs()) * of(m.getRhs()); })
      .Case([&](arith::ShLIOp s) -> Bound {
        std::optional<uint64_t> c = constant(s.getRhs());
        return c && *c < 64 ? of(s.getLhs()) << *c : all;
      })
      .Case([&](arith::ShRUIOp s) -> Bound {
        std::optional<uint64_t> c = constant(s.getRhs());
        return c ? of(s.getLhs()) >> *c : of(s.getLhs());
      })
      .Case([&](arith::DivUIOp d) -> Bound {
        std::optional<uint64_t> c = constant(d.getRhs());
        return c && *c ? of(d.getLhs()) / *c : of(d.getLhs());
      })
      .Case([&](arith::RemUIOp r) {
        Bound divisor = of(r.getRhs());
        return std::min(of(r.getLhs()), divisor ? divisor - 1 : Bound(0));
      })
      .Case([&](arith::AndIOp a) { return std::min(of(a.getLhs()), of(a.getRhs())); })
      .Case([&](arith::MinUIOp m) { return std::min(of(m.getLhs()), of(m.getRhs())); })
      .Case([&](arith::MaxUIOp m) { return std::max(of(m.getLhs()), of(m.getRhs())); })
      .Case([&](arith::SelectOp s) {
        return std::max(of(s.getTrueValue()), of(s.getFalseValue()));
      })
      .Default([&](Operation *) { return all; });
  return clamp(b);
}

/// Why a 32-bit operation of an address computation can go wrong, or "".
std::string wraps(Operation *op) {
  if (op->getNumResults() != 1 || !op->getResult(0).getType().isInteger(32))
    return "";
  auto unclamped = [&](Value a, Value b, bool product) {
    return product ? upper(a) * upper(b) : upper(a) + upper(b);
  };
  Bound limit = maxOf(32);
  if (auto m = dyn_cast<arith::MulIOp>(op))
    return unclamped(m.getLhs(), m.getRhs(), true) > limit ? "i32 multiply" : "";
  if (auto a = dyn_cast<arith::AddIOp>(op))
    return unclamped(a.getLhs(), a.getRhs(), false) > limit ? "i32 add" : "";
  if (auto s = dyn_cast<arith::ShLIOp>(op)) {
    std::optional<uint64_t> c = constant(s.getRhs());
    return !c || *c >= 32 || (upper(s.getLhs()) << *c) > limit ? "i32 shift"
                                                                : "";
  }
  if (auto e = dyn_cast<arith::ExtSIOp>(op))
    return upper(e.getIn()) > Bound(0x7FFFFFFF) ? "sign extension" : "";
  return "";
}

/// Every problem in the computation of the global address `gep`: the
/// values that flow into its offset (a select's condition and comparisons
/// decide, they do not flow).
void checkAddress(LLVM::GEPOp gep, const std::string &kernel,
                  std::vector<std::string> &problems) {
  auto space = cast<LLVM::LLVMPointerType>(gep.getBase().getType())
                   .getAddressSpace();
  if (space != 0 && space != 1)
    return;
  auto where = [&](Operation *op, const std::string &what) {
    std::string text;
    llvm::raw_string_ostream os(text);
    op->print(os, OpPrintingFlags().skipRegions());
    problems.push_back(kernel + ": " + what + " can wrap in a global " +
                       "address: " + text);
  };
  llvm::DenseSet<Operation *> seen;
  std::vector<Value> work(gep.getDynamicIndices().begin(),
                          gep.getDynamicIndices().end());
  for (Value index : gep.getDynamicIndices())
    if (index.getType().isInteger(32) && upper(index) > Bound(0x7FFFFFFF))
      where(gep, "an i32 index (sign-extended)");
  while (!work.empty()) {
    Operation *op = work.back().getDefiningOp();
    work.pop_back();
    if (!op || !seen.insert(op).second || isa<arith::CmpIOp>(op))
      continue;
    if (std::string what = wraps(op); !what.empty())
      where(op, what);
    if (auto s = dyn_cast<arith::SelectOp>(op)) {
      work.push_back(s.getTrueValue());
      work.push_back(s.getFalseValue());
      continue;
    }
    for (Value operand : op->getOperands())
      work.push_back(operand);
  }
}

/// The problems of every global address in `module`, each once.
std::vector<std::string> addressProblems(ModuleOp module) {
  std::vector<std::string> problems;
  module.walk([&](gpu::GPUFuncOp fn) {
    std::string name = fn.getName().str();
    fn.walk([&](LLVM::GEPOp gep) { checkAddress(gep, name, problems); });
  });
  std::vector<std::string> unique;
  for (std::string &p : problems)
    if (std::find(unique.begin(), unique.end(), p) == unique.end())
      unique.push_back(std::move(p));
  return unique;
}

OwningOpRef<ModuleOp> parse(MLIRContext &ctx, const std::string &text) {
  return parseSourceString<ModuleOp>(text, &ctx);
}

struct Case {
  lq::GpuModuleEntry entry;
  lq::Target target;
  const char *chip;
};

void PrintTo(const Case &c, std::ostream *os) {
  *os << c.chip << " " << c.entry.name;
}

std::vector<Case> allCases() {
  std::vector<Case> cases;
  for (lq::Target target : lq::cudaTargets())
    for (const lq::GpuModuleEntry &entry : lq::standardGpuModules())
      cases.push_back({entry, target, lq::targetName(target)});
  return cases;
}

class GpuAddressTest : public testing::TestWithParam<Case> {
protected:
  GpuAddressTest() {
    lq::registerAllDialects(registry);
    ctx = std::make_unique<MLIRContext>(registry);
    ctx->loadAllAvailableDialects();
  }
  DialectRegistry registry;
  std::unique_ptr<MLIRContext> ctx;
};

TEST_P(GpuAddressTest, GlobalAddressesCannotWrap) {
  const Case &c = GetParam();
  lq::GemmSpec spec = c.entry.spec;
  spec.target = c.target;
  lq::Result<std::string> source = lq::gpuKernelSource(spec, c.entry.quantize);
  ASSERT_TRUE(source.ok()) << source.error();
  OwningOpRef<ModuleOp> module = parse(*ctx, *source);
  ASSERT_TRUE(module);
  int accesses = 0;
  module->walk([&](LLVM::GEPOp) { ++accesses; });
  EXPECT_GT(accesses, 0);
  for (const std::string &problem : addressProblems(*module))
    ADD_FAILURE() << problem;
}

INSTANTIATE_TEST_SUITE_P(StandardModules, GpuAddressTest,
                         testing::ValuesIn(allCases()),
                         [](const testing::TestParamInfo<Case> &info) {
                           return std::string(info.param.chip == std::string(
                                                  "sm_80") ? "sm80_"
                                                           : "sm90a_") +
                                  info.param.entry.name;
                         });

/// The analysis finds what it is for: the byte offset of a column computed
/// as an i32 product (column x 8 wraps from 2^29 columns), and an i32 GEP
/// index that can pass 2^31; the same offset computed in i64 passes.
TEST(GpuAddressCheck, FindsThirtyTwoBitProducts) {
  DialectRegistry registry;
  lq::registerAllDialects(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  const char *text = R"mlir(
    gpu.module @k {
      gpu.func @narrow(%p: !llvm.ptr<1>, %col: i32) kernel {
        %c8 = arith.constant 8 : i32
        %bytes = arith.muli %col, %c8 : i32
        %wide = arith.extui %bytes : i32 to i64
        %q = llvm.getelementptr %p[%wide] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, i8
        %twice = arith.addi %col, %col : i32
        %r = llvm.getelementptr %p[%twice] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
        gpu.return
      }
      gpu.func @wide(%p: !llvm.ptr<1>, %col: i32) kernel {
        %c8 = arith.constant 8 : i64
        %t = nvvm.read.ptx.sreg.tid.x : i32
        %c4 = arith.constant 4 : i32
        %small = arith.muli %t, %c4 : i32
        %wcol = arith.extui %col : i32 to i64
        %bytes = arith.muli %wcol, %c8 : i64
        %s = arith.extui %small : i32 to i64
        %off = arith.addi %bytes, %s : i64
        %q = llvm.getelementptr %p[%off] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, i8
        gpu.return
      }
    })mlir";
  OwningOpRef<ModuleOp> module =
      parse(ctx, std::string("module {") + text + "}");
  ASSERT_TRUE(module);
  std::vector<std::string> problems = addressProblems(*module);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("narrow: i32 multiply"), std::string::npos)
      << problems[0];
  EXPECT_NE(problems[1].find("narrow: an i32 index"), std::string::npos)
      << problems[1];
}

} // namespace
