//===- CompilerIdentity.h - which lq compiler built a kernel ----*- C++ -*-===//
//
// The compile cache must not serve an object built by another lq: the
// version string stays the same across most changes of the lowering, so
// every key the JIT makes also names the build of the compiler itself.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_JIT_COMPILERIDENTITY_H
#define LQ_JIT_COMPILERIDENTITY_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <string>
#include <utility>

namespace lq {

/// SHA-256 (64 lowercase hex digits) over the sources of lq's compiler
/// libraries, computed when lq is built (cmake/lqCompilerIdentity.cmake):
/// any change of the ODS, a header or a library source changes it.
const char *compilerIdentity();

/// The compile-cache key (runtime::makeCacheKey) of `fields` followed by
/// lq's version, the compiler identity and the LLVM version: what every
/// key the JIT makes ends with. `identity` is compilerIdentity() except in
/// tests.
std::string makeCompilerCacheKey(
    llvm::ArrayRef<std::pair<llvm::StringRef, llvm::StringRef>> fields,
    llvm::StringRef identity = compilerIdentity());

} // namespace lq

#endif // LQ_JIT_COMPILERIDENTITY_H
