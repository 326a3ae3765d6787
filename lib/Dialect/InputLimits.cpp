//===- InputLimits.cpp - MLIR text the tools accept -----------------------===//

#include "lq/Dialect/InputLimits.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Location.h"
#include "llvm/Support/thread.h"

#include <optional>

using namespace mlir;

LogicalResult lq::checkInputNesting(const llvm::SourceMgr &sources,
                                    MLIRContext *context) {
  const llvm::MemoryBuffer *buffer =
      sources.getMemoryBuffer(sources.getMainFileID());
  StringRef text = buffer->getBuffer();
  unsigned depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      // A string literal; \" does not end it.
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\')
          ++i;
      continue;
    }
    if (c == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      i = text.find('\n', i);
      if (i == StringRef::npos)
        break;
      continue;
    }
    if (c == '{' || c == '(' || c == '[' || c == '<') {
      if (++depth > kMaxInputNesting) {
        auto [line, column] = sources.getLineAndColumn(
            llvm::SMLoc::getFromPointer(text.data() + i));
        emitError(FileLineColLoc::get(context, buffer->getBufferIdentifier(),
                                      line, column))
            << "nesting deeper than " << kMaxInputNesting
            << " levels of brackets";
        return failure();
      }
      continue;
    }
    // `->` and `>=` are not closing brackets; a stray closer only lowers a
    // count that the parser then rejects anyway.
    bool arrow = c == '>' && i > 0 && text[i - 1] == '-';
    bool comparison = c == '>' && i + 1 < text.size() && text[i + 1] == '=';
    if ((c == '}' || c == ')' || c == ']' || (c == '>' && !arrow &&
                                             !comparison)) &&
        depth > 0)
      --depth;
  }
  return success();
}

void lq::runOnLargeStack(llvm::function_ref<void()> work) {
  llvm::thread worker(std::optional<unsigned>(kLargeStackBytes),
                      [&] { work(); });
  worker.join();
}
