//===- Program.cpp - GEMM kernels from lq programs -------------------------===//
//
// An lq program (text) names a GEMM by its ops: lq.matmul with operands from
// lq.quantize (quantized inside the kernel) or lq.unpack (packed operands),
// or a training-level lq.linear / lq.linear_grad expanded first. The kernel
// spec is read off those ops, so a program and the equivalent GemmSpec give
// the same kernel.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Runtime.h"

#include "lq/Dialect/InputLimits.h"
#include "lq/Dialect/MatmulSpec.h"
#include "lq/InitAll.h"
#include "lq/Transforms/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>

using namespace mlir;

namespace {

using SpecResult = lq::Result<lq::GemmSpec>;

} // namespace

namespace {

/// allFromProgram's work, on the calling thread.
lq::Result<std::vector<lq::GemmSpec>> specsOfProgram(std::string_view program) {
  using lq::GemmSpec;
  using SpecsResult = lq::Result<std::vector<GemmSpec>>;
  DialectRegistry registry;
  lq::registerAllDialects(registry);
  MLIRContext ctx(registry, MLIRContext::Threading::DISABLED);
  std::string diagnostics;
  llvm::raw_string_ostream os(diagnostics);
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
    if (auto file = dyn_cast<FileLineColLoc>(diag.getLocation()))
      os << file.getFilename().getValue() << ":" << file.getLine() << ":"
         << file.getColumn() << ": ";
    os << diag << "\n";
    return success();
  });
  llvm::SourceMgr sources;
  sources.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(program.data(), program.size()), "program"),
      llvm::SMLoc());
  if (failed(lq::checkInputText(sources, &ctx)))
    return SpecsResult::failure("invalid lq program: " + diagnostics);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sources, &ctx);
  if (!module)
    return SpecsResult::failure("invalid lq program: " + diagnostics);
  PassManager pm(&ctx);
  pm.addPass(lq::createLqExpandLinear());
  pm.addPass(createCanonicalizerPass());
  if (failed(pm.run(*module)))
    return SpecsResult::failure("invalid lq program: " + diagnostics);
  std::vector<GemmSpec> specs;
  bool failedRead = false;
  module->walk([&](lq::MatmulOp op) {
    FailureOr<GemmSpec> spec = lq::readMatmulSpec(op, "compiled");
    failedRead |= failed(spec);
    if (succeeded(spec))
      specs.push_back(*spec);
  });
  if (failedRead)
    return SpecsResult::failure("invalid lq program: " + diagnostics);
  return specs;
}

} // namespace

lq::Result<std::vector<lq::GemmSpec>>
lq::GemmSpec::allFromProgram(std::string_view program) {
  // MLIR's parser, verifier and passes recurse per nesting level: a large
  // stack, whatever thread (a Python one included) calls.
  std::optional<Result<std::vector<GemmSpec>>> specs;
  runOnLargeStack([&] { specs.emplace(specsOfProgram(program)); });
  return std::move(*specs);
}

lq::Result<lq::GemmSpec> lq::GemmSpec::fromProgram(std::string_view program) {
  Result<std::vector<GemmSpec>> specs = allFromProgram(program);
  if (!specs)
    return SpecResult::failure(specs.error());
  if (specs->size() != 1)
    return SpecResult::failure("a kernel program must hold exactly one "
                               "lq.matmul (after lq-expand-linear), found " +
                               std::to_string(specs->size()));
  return specs->front();
}

lq::Result<lq::Kernel> lq::Runtime::compileProgram(std::string_view program) {
  Result<GemmSpec> spec = GemmSpec::fromProgram(program);
  if (!spec)
    return Result<Kernel>::failure(spec.error());
  return compile(*spec);
}
