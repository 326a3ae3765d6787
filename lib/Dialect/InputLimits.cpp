//===- InputLimits.cpp - MLIR text the tools accept -----------------------===//

#include "lq/Dialect/InputLimits.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Location.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/thread.h"

#include <algorithm>
#include <optional>

using namespace mlir;

namespace {

/// When `text[i]` opens a string literal or a `//` comment, moves `i` to
/// its last character (a comment's newline; the end of the text when it
/// is unterminated) and returns true: neither holds MLIR syntax.
bool skipLiteralOrComment(StringRef text, size_t &i) {
  if (text[i] == '"') {
    // \" does not end the literal.
    for (++i; i < text.size() && text[i] != '"'; ++i)
      if (text[i] == '\\')
        ++i;
    return true;
  }
  if (text[i] == '/' && i + 1 < text.size() && text[i + 1] == '/') {
    i = std::min(text.find('\n', i), text.size());
    return true;
  }
  return false;
}

} // namespace

LogicalResult lq::checkInputNesting(const llvm::SourceMgr &sources,
                                    MLIRContext *context) {
  const llvm::MemoryBuffer *buffer =
      sources.getMemoryBuffer(sources.getMainFileID());
  StringRef text = buffer->getBuffer();
  unsigned depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (skipLiteralOrComment(text, i))
      continue;
    char c = text[i];
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

namespace {

bool isIdentifierChar(char c) {
  return llvm::isAlnum(c) || c == '_' || c == '$' || c == '.';
}

/// Whether `text` starts with `[`, integers of at most 18 digits separated
/// by commas, and `]`, spaces allowed anywhere between.
bool startsWithIntegerList(StringRef text) {
  if (!text.consume_front("["))
    return false;
  text = text.ltrim();
  if (text.consume_front("]"))
    return true;
  while (true) {
    text.consume_front("-");
    size_t digits = text.find_if_not(llvm::isDigit);
    if (digits == 0 || digits == StringRef::npos || digits > 18)
      return false;
    text = text.drop_front(digits).ltrim();
    if (text.consume_front("]"))
      return true;
    if (!text.consume_front(","))
      return false;
    text = text.ltrim();
  }
}

} // namespace

LogicalResult lq::checkIntegerLists(const llvm::SourceMgr &sources,
                                    MLIRContext *context) {
  const llvm::MemoryBuffer *buffer =
      sources.getMemoryBuffer(sources.getMainFileID());
  StringRef text = buffer->getBuffer();
  for (size_t i = 0; i < text.size(); ++i) {
    if (skipLiteralOrComment(text, i))
      continue;
    if (i > 0 && isIdentifierChar(text[i - 1]))
      continue;
    StringRef rest = text.drop_front(i);
    StringRef keyword;
    for (StringRef name : {"permutation", "dimensions"})
      if (rest.starts_with(name) &&
          (rest.size() == name.size() || !isIdentifierChar(rest[name.size()])))
        keyword = name;
    if (keyword.empty())
      continue;
    rest = rest.drop_front(keyword.size()).ltrim();
    if (!rest.consume_front("=") || rest.starts_with("="))
      continue;
    rest = rest.ltrim();
    if (rest.starts_with("array<") || startsWithIntegerList(rest))
      continue;
    auto [line, column] =
        sources.getLineAndColumn(llvm::SMLoc::getFromPointer(text.data() + i));
    emitError(FileLineColLoc::get(context, buffer->getBufferIdentifier(), line,
                                  column))
        << "expected an integer list such as [1, 0] after '" << keyword
        << " ='";
    return failure();
  }
  return success();
}

void lq::runOnLargeStack(llvm::function_ref<void()> work) {
  llvm::thread worker(std::optional<unsigned>(kLargeStackBytes),
                      [&] { work(); });
  worker.join();
}
