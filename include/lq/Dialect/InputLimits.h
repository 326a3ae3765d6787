//===- InputLimits.h - MLIR text the tools accept ---------------*- C++ -*-===//
//
// MLIR's parser, verifier and printer recurse once per nested region,
// attribute or type, so a file of a few thousand nested brackets overflows
// a thread's default stack. Every lq entry point that parses MLIR text
// (lq-opt, lq-compile, GemmSpec::fromProgram and so lq.compile_program)
// rejects deeper nesting with a located error before parsing, and does its
// work on a thread whose stack holds what is left. It also refuses the
// malformed integer lists that some upstream parsers crash on.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_DIALECT_INPUTLIMITS_H
#define LQ_DIALECT_INPUTLIMITS_H

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/SourceMgr.h"

namespace lq {

/// The deepest nesting of brackets ({ ( [ <) accepted in MLIR text: far
/// beyond any real program, far within the stack runOnLargeStack gives.
constexpr unsigned kMaxInputNesting = 1000;

/// Stack of the threads that parse and compile MLIR text: pages are only
/// committed as recursion touches them.
constexpr unsigned kLargeStackBytes = 512u << 20;

/// Fails, with an error at the bracket that opens nesting level
/// kMaxInputNesting + 1 of the main buffer of `sources`, when the text
/// nests deeper; string literals and `//` comments are skipped.
mlir::LogicalResult checkInputNesting(const llvm::SourceMgr &sources,
                                      mlir::MLIRContext *context);

/// Fails, with an error at the keyword, when `permutation =` or
/// `dimensions =` in the main buffer of `sources` is followed by anything
/// but an integer list `[i, j, ...]` of at most 18 digits per integer (or
/// `array<...>`). MLIR 22's parsers of linalg.transpose, linalg.broadcast
/// and linalg.reduce crash on anything else instead of reporting it.
mlir::LogicalResult checkIntegerLists(const llvm::SourceMgr &sources,
                                      mlir::MLIRContext *context);

/// Both checks above: what every entry point runs before parsing.
inline mlir::LogicalResult checkInputText(const llvm::SourceMgr &sources,
                                          mlir::MLIRContext *context) {
  return mlir::success(succeeded(checkInputNesting(sources, context)) &&
                       succeeded(checkIntegerLists(sources, context)));
}

/// Runs `work` on a thread with a stack of kLargeStackBytes and waits for
/// it.
void runOnLargeStack(llvm::function_ref<void()> work);

} // namespace lq

#endif // LQ_DIALECT_INPUTLIMITS_H
