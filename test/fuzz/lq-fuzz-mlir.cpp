//===- lq-fuzz-mlir.cpp - arbitrary bytes through lq's pipelines ----------===//
//
// libFuzzer target: parses the input as MLIR with every dialect lq
// registers, and runs what parses and verifies through lq's main pipelines
// (expansion and canonicalization, the reference lowering, the CPU kernel
// generator and its lowering to LLVM, the linalg-graph quantizer), each on
// a clone. Diagnostics are expected and swallowed; a crash, a sanitizer
// report or a pipeline that leaves invalid IR (the pass manager's verifier)
// is a finding. The text is checked as the tools check it
// (lq/Dialect/InputLimits.h): nesting is bounded, so stack depth stays
// within libFuzzer's, and the integer lists that MLIR's linalg parsers
// crash on are refused before parsing.
//
//===----------------------------------------------------------------------===//

#include "lq/Dialect/InputLimits.h"
#include "lq/InitAll.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstddef>
#include <cstdint>

using namespace mlir;

namespace {

/// The pipelines a program goes through in lq's tools and runtime.
const char *const kPipelines[] = {
    "builtin.module(lq-expand-linear,canonicalize,cse)",
    "builtin.module(lq-expand-linear,lq-lower-to-linalg,canonicalize)",
    "builtin.module(lq-expand-linear,lq-cpu-kernels,lq-cpu-kernels-to-llvm)",
    "builtin.module(lq-quantize-matmuls,canonicalize)",
};

DialectRegistry &registry() {
  static DialectRegistry *registry = [] {
    lq::registerAllPasses();
    auto *r = new DialectRegistry;
    lq::registerAllDialects(*r);
    return r;
  }();
  return *registry;
}

} // namespace

/// ASan defaults for this binary, whoever runs it. LLVM's BumpPtrAllocator
/// poisons fresh slabs and unpoisons each allocation, but only where its
/// inline code was compiled with ASan: a slab of an MLIR context's uniquer
/// opened by lq's instrumented code and then allocated from by the
/// uninstrumented libMLIR stays poisoned, and the first write to it is a
/// false "use-after-poison". Manual poisoning is off so that every report
/// is a real one; redzones, use-after-free and overflows stay checked.
/// Leaks are not checked: LLVM and MLIR keep process-lifetime singletons.
extern "C" const char *__asan_default_options() {
  return "detect_leaks=0:allow_user_poisoning=0";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MLIRContext context(registry(), MLIRContext::Threading::DISABLED);
  context.getDiagEngine().registerHandler([](Diagnostic &) { return success(); });
  llvm::SourceMgr sources;
  sources.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size), "fuzz"),
      llvm::SMLoc());
  if (failed(lq::checkInputText(sources, &context)))
    return 0;
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sources, &context);
  if (!module)
    return 0;
  for (const char *pipeline : kPipelines) {
    OwningOpRef<ModuleOp> copy = module->clone();
    PassManager pm(&context);
    if (failed(parsePassPipeline(pipeline, pm)))
      __builtin_trap(); // the pipelines above are fixed and valid
    (void)pm.run(*copy);
  }
  return 0;
}
