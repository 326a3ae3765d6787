//===- ParallelFor.h - independent work items on a few threads --*- C++ -*-===//
//
// Plain C++ (the LLVM-free tools use it): compiling, assembling or loading
// kernel modules are independent items of tens to thousands of
// milliseconds each.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_PARALLELFOR_H
#define LQ_RUNTIME_PARALLELFOR_H

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace lq {

/// Runs fn(i) for every i < n on up to `jobs` threads, the calling thread
/// among them; returns when all have run.
template <typename Fn> void parallelFor(size_t n, unsigned jobs, const Fn &fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++)
      fn(i);
  };
  std::vector<std::thread> threads;
  size_t count = std::max<size_t>(1, std::min<size_t>(jobs, n));
  for (size_t t = 1; t < count; ++t)
    threads.emplace_back(work);
  work();
  for (std::thread &t : threads)
    t.join();
}

} // namespace lq

#endif // LQ_RUNTIME_PARALLELFOR_H
