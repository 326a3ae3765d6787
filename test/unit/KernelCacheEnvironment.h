//===- KernelCacheEnvironment.h - kernel cache of runtime tests -*- C++ -*-===//
//
// Runtime tests compile kernels into a cache of their own, never the
// user's: the directory named by LQ_TEST_KERNEL_CACHE (ctest sets one in
// the build tree, shared by all test processes of a run), else a temporary
// directory removed at the end. Child processes inherit it.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TEST_UNIT_KERNELCACHEENVIRONMENT_H
#define LQ_TEST_UNIT_KERNELCACHEENVIRONMENT_H

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

class KernelCacheEnvironment : public ::testing::Environment {
public:
  void SetUp() override {
    if (const char *shared = std::getenv("LQ_TEST_KERNEL_CACHE")) {
      setenv("LQ_CACHE_DIR", shared, 1);
      return;
    }
    llvm::SmallString<128> dir;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("lq-kernel-cache", dir));
    temporary = std::string(dir);
    setenv("LQ_CACHE_DIR", temporary.c_str(), 1);
    setenv("LQ_TEST_KERNEL_CACHE", temporary.c_str(), 1);
  }
  void TearDown() override {
    if (!temporary.empty())
      llvm::sys::fs::remove_directories(temporary);
  }

private:
  std::string temporary;
};

#endif // LQ_TEST_UNIT_KERNELCACHEENVIRONMENT_H
