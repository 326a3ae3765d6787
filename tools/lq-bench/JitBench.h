//===- JitBench.h - Runtime::compile, cold and cached -----------*- C++ -*-===//

#ifndef LQ_BENCH_JITBENCH_H
#define LQ_BENCH_JITBENCH_H

#include "Harness.h"

#include <string>
#include <vector>

namespace lq::bench {

/// The roles whose cold compiles and disk hits in a new process are
/// measured.
struct JitRoles {
  std::vector<Role> cold, disk;
};

/// Registers the jit/... benchmarks and returns the roles they cover.
JitRoles registerJitBenchmarks();

/// The child mode: compile one spec and report how long compile() took and
/// what the cache did. With `warmJit`, the host JIT is set up first and
/// timed on its own; otherwise compile() is the first call into the
/// runtime's JIT and its time includes the setup.
int childCompile(const std::string &roleName, bool warmJit);

#ifdef LQ_BENCH_GPU
/// The child mode of the sm_90a cold compile: the kernels a first 4096^3
/// launch of the role's bf16 GEMM runs on an H200, planned as the launcher
/// plans, generated and assembled as the runtime does on that launch. The
/// assembler's one-time start-up in a process (nvJitLink's library load)
/// is timed apart: it is paid once per process, not per spec.
int childGpuCompile(const std::string &roleName);
#endif

} // namespace lq::bench

#endif // LQ_BENCH_JITBENCH_H
