//===- LaunchBench.h - the cost of launching a tiny GEMM --------*- C++ -*-===//

#ifndef LQ_BENCH_LAUNCHBENCH_H
#define LQ_BENCH_LAUNCHBENCH_H

#include "Harness.h"

#include <vector>

namespace lq::bench {

/// The size of the tiny GEMMs (M = N = K) whose launch is measured.
constexpr int64_t kTinySize = 16;

/// Registers launch/lq-cached/<role>/m16n16k16 (a compiled kernel launched
/// again and again) and launch/plain-call/forward/m16n16k16 (an ordinary
/// C++ function computing the same product in f32, the baseline); returns
/// the roles measured.
std::vector<Role> registerLaunchBenchmarks();

/// "launch/<impl>/<role>/m16n16k16".
std::string launchName(const char *impl, Role role);

} // namespace lq::bench

#endif // LQ_BENCH_LAUNCHBENCH_H
