//===- JitBench.cpp - Runtime::compile, cold and cached -------------------===//
//
// Runtime::compile: cold compile and disk-cache hit in fresh child
// processes (this binary re-run in a child mode), and the in-process cache
// hit; and where lq has its CUDA backend, the CPU-side compile of a first
// sm_90a launch (PTX generation and nvJitLink; no GPU needed).
//
//===----------------------------------------------------------------------===//

#include "JitBench.h"

#ifdef LQ_BENCH_GPU
#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/PtxCompiler.h"
#endif

#include <cstdio>
#include <filesystem>
#include <system_error>

namespace lq::bench {

//===----------------------------------------------------------------------===//
// Child modes
//===----------------------------------------------------------------------===//

int childCompile(const std::string &roleName, bool warmJit) {
  Role role;
  if (!parseRole(roleName, role)) {
    std::fprintf(stderr, "lq-bench: unknown role '%s'\n", roleName.c_str());
    return 2;
  }
  GemmSpec spec = specOf(role);
  Runtime &rt = Runtime::get();
  double jitInit = 0.0;
  if (warmJit) {
    Clock::time_point start = Clock::now();
    std::string host = rt.hostDescription();
    jitInit = secondsSince(start);
    if (host.rfind("unavailable", 0) == 0) {
      std::fprintf(stderr, "lq-bench: host JIT %s\n", host.c_str());
      return 1;
    }
  }
  Clock::time_point start = Clock::now();
  auto kernel = rt.compile(spec);
  double compile = secondsSince(start);
  if (!kernel) {
    std::fprintf(stderr, "lq-bench: compile failed: %s\n",
                 kernel.error().c_str());
    return 1;
  }
  CacheCounters counters = rt.cacheCounters();
  std::printf("lq-child compile_s=%.9f jit_init_s=%.9f compiles=%llu "
              "disk_hits=%llu memory_hits=%llu\n",
              compile, jitInit, (unsigned long long)counters.compiles,
              (unsigned long long)counters.diskHits,
              (unsigned long long)counters.memoryHits);
  std::fflush(stdout);
  return 0;
}

#ifdef LQ_BENCH_GPU
namespace {

/// The GEMM shape of the sm_90a cold-compile rows, and the H200 it plans
/// for: the kernels a first launch compiles depend on both.
constexpr int64_t kGpuColdSize = 4096;

cuda::DeviceInfo h200() {
  cuda::DeviceInfo d;
  d.name = "NVIDIA H200 (as planned for)";
  d.computeMajor = 9;
  d.computeMinor = 0;
  d.multiprocessors = 132;
  d.maxSharedOptin = 227 * 1024;
  return d;
}

/// Launch arguments of a 4096^3 GEMM of `spec` with aligned device
/// pointers that are never dereferenced: what the plan reads of them is
/// their layout.
LaunchArgs planningArgs(const GemmSpec &spec) {
  auto tensor = [](const OperandSpec &op, bool isLhs) {
    int64_t n = kGpuColdSize;
    (void)isLhs;
    TensorRef t{reinterpret_cast<void *>(uintptr_t(1) << 32), op.dtype, n, n,
                n, Device::CUDA};
    if (op.dtype == DType::Packed4)
      t.rowStride = (n + 1) / 2;
    return t;
  };
  LaunchArgs args;
  args.lhs = tensor(spec.lhs, true);
  args.rhs = tensor(spec.rhs, false);
  args.out = {reinterpret_cast<void *>(uintptr_t(2) << 32), spec.output,
              kGpuColdSize, kGpuColdSize, kGpuColdSize, Device::CUDA};
  return args;
}

GemmSpec hopperSpecOf(Role role) {
  GemmSpec spec = specOf(role);
  spec.lhs.dtype = spec.rhs.dtype = DType::BF16;
  spec.target = Target::CudaSm90a;
  return spec;
}

} // namespace

int childGpuCompile(const std::string &roleName) {
  Role role;
  if (!parseRole(roleName, role)) {
    std::fprintf(stderr, "lq-bench: unknown role '%s'\n", roleName.c_str());
    return 2;
  }
  const char *tiny = ".version 8.0\n.target sm_90a\n.address_size 64\n"
                     ".visible .entry lq_warm() { ret; }\n";
  Clock::time_point start = Clock::now();
  Result<std::string> warm = cuda::compilePtx(tiny, "sm_90a");
  double init = secondsSince(start);
  if (!warm) {
    std::fprintf(stderr, "lq-bench: %s\n", warm.error().c_str());
    return 1;
  }
  GemmSpec spec = hopperSpecOf(role);
  start = Clock::now();
  auto info = gpuModuleInfo(spec, /*quantizeOnly=*/false);
  auto plan = info ? cuda::planGemmLaunch(*info, planningArgs(spec), h200())
                   : Result<cuda::LaunchPlan>::failure(info.error());
  auto cubins = plan ? compileGpuKernels(spec, false, plan->kernels, "sm_90a")
                     : Result<std::vector<std::string>>::failure(plan.error());
  double compile = secondsSince(start);
  if (!cubins) {
    std::fprintf(stderr, "lq-bench: %s\n", cubins.error().c_str());
    return 1;
  }
  CacheCounters counters = Runtime::get().cacheCounters();
  std::printf("lq-child compile_s=%.9f init_s=%.9f kernels=%zu "
              "compiles=%llu disk_hits=%llu\n",
              compile, init, plan->kernels.size(),
              (unsigned long long)counters.compiles,
              (unsigned long long)counters.diskHits);
  std::fprintf(stderr, "kernels:");
  for (const std::string &k : plan->kernels)
    std::fprintf(stderr, " %s", k.c_str());
  std::fprintf(stderr, "\n");
  std::fflush(stdout);
  return 0;
}
#endif

//===----------------------------------------------------------------------===//
// Benchmarks
//===----------------------------------------------------------------------===//

namespace {

/// Cold compile in a new process with a fresh, empty disk cache: the time
/// of Runtime::compile for one kernel (JIT already set up, reported apart).
void benchColdCompile(benchmark::State &state, Role role) {
  waitForBlasToPark();
  double jitInit = 0.0;
  for (auto _ : state) {
    std::string dir = makeTempDir(tempRoot, "cold-");
    if (dir.empty()) {
      state.SkipWithError("mkdtemp failed");
      break;
    }
    ChildResult r = runChild(
        {std::string("--lq-child-compile=") + roleName(role),
         "--lq-child-warm-jit"},
        dir);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (!r.error.empty()) {
      state.SkipWithError(r.error.c_str());
      break;
    }
    if (r.get("compiles") != 1 || r.get("disk_hits") != 0) {
      state.SkipWithError("the child did not compile cold");
      break;
    }
    state.SetIterationTime(r.get("compile_s"));
    jitInit += r.get("jit_init_s");
  }
  if (state.iterations() > 0)
    state.counters["jit_init_ms"] =
        1e3 * jitInit / double(state.iterations());
  state.SetLabel("new process, empty cache");
}

#ifdef LQ_BENCH_GPU
/// The CPU-side compile of a first sm_90a launch of a new spec, in a new
/// process with an empty cache (childGpuCompile).
void benchGpuColdCompile(benchmark::State &state, Role role) {
  waitForBlasToPark();
  double init = 0.0, kernels = 0.0;
  for (auto _ : state) {
    std::string dir = makeTempDir(tempRoot, "gpu-cold-");
    if (dir.empty()) {
      state.SkipWithError("mkdtemp failed");
      break;
    }
    ChildResult r = runChild(
        {std::string("--lq-child-gpu-compile=") + roleName(role)}, dir);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (!r.error.empty()) {
      state.SkipWithError(r.error.c_str());
      break;
    }
    // Two compiles per kernel (PTX, cubin), none found on disk.
    if (r.get("compiles") != 2 * r.get("kernels") || r.get("disk_hits") != 0) {
      state.SkipWithError("the child did not compile cold");
      break;
    }
    state.SetIterationTime(r.get("compile_s"));
    init += r.get("init_s");
    kernels = r.get("kernels");
  }
  if (state.iterations() > 0) {
    state.counters["assembler_init_ms"] =
        1e3 * init / double(state.iterations());
    state.counters["kernels"] = kernels;
  }
  state.SetLabel("bf16 4096^3 on H200, new process, empty cache");
}
#endif

/// Makes sure the parent's disk cache holds the kernel of `role`.
bool primeDiskCache(benchmark::State &state, Role role) {
  ChildResult r = runChild(
      {std::string("--lq-child-compile=") + roleName(role)}, parentCacheDir);
  if (!r.error.empty()) {
    state.SkipWithError(r.error.c_str());
    return false;
  }
  return true;
}

/// Disk-cache hit in a new process: compile() as that process's first call
/// into the runtime, timed inside the child (with `warmJit`, after the JIT
/// is set up).
void benchDiskHitNewProcess(benchmark::State &state, Role role,
                            bool warmJit) {
  waitForBlasToPark();
  if (!primeDiskCache(state, role))
    return;
  double jitInit = 0.0;
  for (auto _ : state) {
    std::vector<std::string> args = {std::string("--lq-child-compile=") +
                                     roleName(role)};
    if (warmJit)
      args.push_back("--lq-child-warm-jit");
    ChildResult r = runChild(args, parentCacheDir);
    if (!r.error.empty()) {
      state.SkipWithError(r.error.c_str());
      break;
    }
    if (r.get("disk_hits") != 1 || r.get("compiles") != 0) {
      state.SkipWithError("the child did not hit the disk cache");
      break;
    }
    state.SetIterationTime(r.get("compile_s"));
    jitInit += r.get("jit_init_s");
  }
  if (warmJit && state.iterations() > 0)
    state.counters["jit_init_ms"] =
        1e3 * jitInit / double(state.iterations());
  state.SetLabel(warmJit ? "new process, JIT set up first"
                         : "new process, first runtime call");
}

/// In-process hit: compile() of a spec this process compiled before.
void benchMemoryHit(benchmark::State &state, Role role) {
  waitForBlasToPark();
  Runtime &rt = Runtime::get();
  GemmSpec spec = specOf(role);
  auto first = rt.compile(spec);
  if (!first) {
    state.SkipWithError(("compile failed: " + first.error()).c_str());
    return;
  }
  for (auto _ : state) {
    auto kernel = rt.compile(spec);
    benchmark::DoNotOptimize(kernel);
  }
  state.SetLabel("same process");
}

/// Disk-cache hit in this process: the memory cache is cleared before each
/// (timed) compile(); the JIT is already set up.
void benchDiskHitInProcess(benchmark::State &state, Role role) {
  waitForBlasToPark();
  Runtime &rt = Runtime::get();
  GemmSpec spec = specOf(role);
  if (!rt.compile(spec)) {
    state.SkipWithError("compile failed");
    return;
  }
  for (auto _ : state) {
    rt.clearMemoryCache();
    uint64_t hits = rt.cacheCounters().diskHits;
    Clock::time_point start = Clock::now();
    auto kernel = rt.compile(spec);
    double seconds = secondsSince(start);
    if (!kernel) {
      state.SkipWithError(("compile failed: " + kernel.error()).c_str());
      break;
    }
    if (rt.cacheCounters().diskHits != hits + 1) {
      state.SkipWithError("compile() did not hit the disk cache");
      break;
    }
    state.SetIterationTime(seconds);
  }
  state.SetLabel("same process, memory cache cleared");
}

} // namespace

JitRoles registerJitBenchmarks() {
  bool quick = options.quick;
  // Quick mode: one cold compile (weight-grad; the forward kernel takes
  // the longest) and one disk hit (of a kernel the GEMM benchmarks already
  // compiled).
  std::vector<Role> allRoles = {Role::Forward, Role::BackwardData,
                                Role::WeightGrad};
  std::vector<Role> coldRoles =
      quick ? std::vector<Role>{Role::WeightGrad} : allRoles;
  std::vector<Role> diskRoles =
      quick ? std::vector<Role>{Role::Forward} : allRoles;
  for (Role role : coldRoles)
    benchmark::RegisterBenchmark(
        (std::string("jit/cold-compile/") + roleName(role)).c_str(),
        [role](benchmark::State &s) { benchColdCompile(s, role); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(quick ? 1 : 3);
#ifdef LQ_BENCH_GPU
  for (Role role : coldRoles)
    benchmark::RegisterBenchmark(
        (std::string("jit/gpu-cold-compile/") + roleName(role)).c_str(),
        [role](benchmark::State &s) { benchGpuColdCompile(s, role); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(quick ? 1 : 3);
#endif
  benchmark::RegisterBenchmark(
      "jit/memory-hit/forward",
      [](benchmark::State &s) { benchMemoryHit(s, Role::Forward); })
      ->UseRealTime()
      ->Unit(benchmark::kNanosecond)
      ->Iterations(quick ? 100 : 200000);
  for (Role role : diskRoles)
    benchmark::RegisterBenchmark(
        (std::string("jit/disk-hit-new-process/") + roleName(role)).c_str(),
        [role](benchmark::State &s) {
          benchDiskHitNewProcess(s, role, /*warmJit=*/false);
        })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(quick ? 1 : 5);
  benchmark::RegisterBenchmark(
      "jit/disk-hit-new-process-jit-ready/forward",
      [](benchmark::State &s) {
        benchDiskHitNewProcess(s, Role::Forward, /*warmJit=*/true);
      })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(quick ? 1 : 5);
  benchmark::RegisterBenchmark(
      "jit/disk-hit-in-process/forward",
      [](benchmark::State &s) { benchDiskHitInProcess(s, Role::Forward); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(quick ? 1 : 10);
  return {coldRoles, diskRoles};
}

} // namespace lq::bench
