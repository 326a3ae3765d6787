//===- CompilerIdentity.cpp - which lq compiler built a kernel ------------===//

#include "lq/Jit/CompilerIdentity.h"

#include "lq/Jit/CompilerIdentity.inc"
#include "lq/Runtime/Cache.h"
#include "lq/Spec/Spec.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/Config/llvm-config.h"

const char *lq::compilerIdentity() { return LQ_COMPILER_IDENTITY; }

std::string lq::makeCompilerCacheKey(
    llvm::ArrayRef<std::pair<llvm::StringRef, llvm::StringRef>> fields,
    llvm::StringRef identity) {
  llvm::SmallVector<std::pair<llvm::StringRef, llvm::StringRef>, 12> all(
      fields.begin(), fields.end());
  all.push_back({"lq", lqVersion()});
  all.push_back({"compiler", identity});
  all.push_back({"llvm", LLVM_VERSION_STRING});
  return runtime::makeCacheKey(all);
}
