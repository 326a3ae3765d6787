//===- lq-bench.cpp - benchmarks of the host runtime against baselines ----===//
//
// A Google Benchmark program that measures lq's host runtime against
// baselines run in the same process (docs/benchmarks.md):
//
//   quantize/...  Runtime::quantize (LUQ with its max pass, SAWB with its
//                 statistics pass) against a memcpy of the same input bytes;
//   gemm/...      fused 4-bit GEMM kernels (quantization, packing, int32
//                 GEMM, epilogue) against OpenBLAS SGEMM with the same
//                 shapes, transposes and thread count;
//   jit/...       Runtime::compile: cold compile and disk-cache hit in fresh
//                 child processes (this binary re-run in a child mode), and
//                 the in-process cache hit; and where lq has its CUDA
//                 backend, the CPU-side compile of a first sm_90a launch
//                 (PTX generation and nvJitLink; no GPU needed).
//
// After the runs it prints a table of each measurement, its baseline, the
// ratio and the target. `--quick` runs every benchmark once on small sizes
// (a smoke test; it never checks speed). Compiled kernels go to a private
// cache directory that is removed at exit.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Runtime.h"
#ifdef LQ_BENCH_GPU
#include "lq/Runtime/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/PtxCompiler.h"
#endif

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace {

using Clock = std::chrono::steady_clock;
using lq::DType;
using lq::Format;
using lq::GemmSpec;
using lq::Runtime;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

//===----------------------------------------------------------------------===//
// Options and process-wide state
//===----------------------------------------------------------------------===//

struct Options {
  bool quick = false;
  bool table = true;
};
Options options;

/// Private temporary directory of this run: the parent's compile cache
/// (`cache/`), fresh cold-compile caches, children's stderr.
std::string tempRoot;
std::string parentCacheDir;
std::string selfExe;

/// OpenBLAS worker threads keep spinning for a while after a call; an lq
/// measurement that follows one waits for them to park.
bool blasRanRecently = false;

void markBlasRan() { blasRanRecently = true; }
void waitForBlasToPark() {
  if (!blasRanRecently)
    return;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  blasRanRecently = false;
}

std::string envOr(const char *name, const char *fallback) {
  const char *v = std::getenv(name);
  return v ? std::string(v) : std::string(fallback);
}

//===----------------------------------------------------------------------===//
// Input data
//===----------------------------------------------------------------------===//

/// A deterministic N(0, 1) buffer of `count` floats, made once per (count,
/// seed) and shared by every benchmark that asks for it.
const std::vector<float> &randomBuffer(int64_t count, uint32_t seed) {
  static std::map<std::pair<int64_t, uint32_t>, std::vector<float>> buffers;
  auto key = std::make_pair(count, seed);
  auto it = buffers.find(key);
  if (it != buffers.end())
    return it->second;
  std::vector<float> data(static_cast<size_t>(count));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float &v : data)
    v = normal(rng);
  return buffers.emplace(key, std::move(data)).first->second;
}

//===----------------------------------------------------------------------===//
// Quantizer vs memcpy
//===----------------------------------------------------------------------===//

void benchMemcpy(benchmark::State &state, int64_t rows, int64_t cols) {
  waitForBlasToPark();
  const std::vector<float> &src = randomBuffer(rows * cols, 1);
  std::vector<float> dst(src.size(), 0.0f); // touched: no page faults below
  size_t bytes = src.size() * sizeof(float);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.SetLabel("1 thread");
}

/// `hindsight`: LUQ with the max given (QuantizeArgs::maxEstimate, the
/// tensor's true max), so without the max pass.
void benchQuantize(benchmark::State &state, Format format, int64_t rows,
                   int64_t cols, bool hindsight = false) {
  waitForBlasToPark();
  Runtime &rt = Runtime::get();
  const std::vector<float> &src = randomBuffer(rows * cols, 1);
  std::vector<uint8_t> out(size_t(rows * ((cols + 1) / 2)), 0);
  lq::QuantizeArgs args;
  args.input = lq::TensorRef::f32(src.data(), rows, cols);
  args.output = lq::TensorRef::packed4(out.data(), rows, cols);
  args.format = format;
  args.seed = 0x5eed;
  args.stream = 1;
  // The first call compiles the quantizer (or loads it from the cache).
  auto warm = rt.quantize(args);
  if (!warm) {
    state.SkipWithError(("quantize failed: " + warm.error()).c_str());
    return;
  }
  if (hindsight) {
    args.maxEstimate = warm->range;
    if (!(warm = rt.quantize(args))) {
      state.SkipWithError(("quantize failed: " + warm.error()).c_str());
      return;
    }
  }
  for (auto _ : state) {
    auto status = rt.quantize(args);
    if (!status) {
      state.SkipWithError(("quantize failed: " + status.error()).c_str());
      break;
    }
    benchmark::DoNotOptimize(status);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * cols *
                          int64_t(sizeof(float)));
  state.SetLabel("lq threads=" + std::to_string(rt.threads()));
}

//===----------------------------------------------------------------------===//
// Fused GEMM vs OpenBLAS SGEMM
//===----------------------------------------------------------------------===//

enum class Role { Forward, BackwardData, WeightGrad };

const char *roleName(Role role) {
  switch (role) {
  case Role::Forward:
    return "forward";
  case Role::BackwardData:
    return "backward-data";
  case Role::WeightGrad:
    return "weight-grad";
  }
  return "?";
}

bool parseRole(const std::string &name, Role &role) {
  for (Role r : {Role::Forward, Role::BackwardData, Role::WeightGrad})
    if (name == roleName(r)) {
      role = r;
      return true;
    }
  return false;
}

GemmSpec specOf(Role role) {
  switch (role) {
  case Role::Forward:
    return GemmSpec::forward();
  case Role::BackwardData:
    return GemmSpec::backwardData();
  case Role::WeightGrad:
    return GemmSpec::weightGrad();
  }
  return GemmSpec::forward();
}

/// C[M, N] = op(A) op(B) with the operands stored as the role's GemmSpec
/// says: A is [M, K], or [K, M] when transposed; B is [K, N], or [N, K].
struct GemmCase {
  Role role;
  int64_t M, N, K;
  /// What the shape is, for the table.
  std::string what;

  std::string shape() const {
    return "m" + std::to_string(M) + "n" + std::to_string(N) + "k" +
           std::to_string(K);
  }
  std::string name(const char *impl) const {
    return std::string("gemm/") + impl + "/" + roleName(role) + "/" + shape();
  }
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  GemmSpec spec() const { return specOf(role); }
  bool lhsT() const { return spec().lhs.transposed; }
  bool rhsT() const { return spec().rhs.transposed; }
  int64_t lhsRows() const { return lhsT() ? K : M; }
  int64_t lhsCols() const { return lhsT() ? M : K; }
  int64_t rhsRows() const { return rhsT() ? N : K; }
  int64_t rhsCols() const { return rhsT() ? K : N; }
  const std::vector<float> &lhs() const {
    return randomBuffer(lhsRows() * lhsCols(), 2);
  }
  const std::vector<float> &rhs() const {
    return randomBuffer(rhsRows() * rhsCols(), 3);
  }
};

/// 2*M*N*K per iteration, shown per second with decimal prefixes.
benchmark::Counter flopRate(const GemmCase &c) {
  return benchmark::Counter(c.flops(),
                            benchmark::Counter::kIsIterationInvariantRate,
                            benchmark::Counter::OneK::kIs1000);
}

void sgemm(const GemmCase &c, const float *a, const float *b, float *out) {
  cblas_sgemm(CblasRowMajor, c.lhsT() ? CblasTrans : CblasNoTrans,
              c.rhsT() ? CblasTrans : CblasNoTrans, int(c.M), int(c.N),
              int(c.K), 1.0f, a, int(c.lhsCols()), b, int(c.rhsCols()), 0.0f,
              out, int(c.N));
}

/// The f32 product of a case's inputs, computed once with OpenBLAS.
const std::vector<float> &sgemmReference(const GemmCase &c) {
  static std::map<std::string, std::vector<float>> references;
  std::string key = c.name("reference");
  auto it = references.find(key);
  if (it != references.end())
    return it->second;
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  sgemm(c, c.lhs().data(), c.rhs().data(), out.data());
  markBlasRan();
  return references.emplace(key, std::move(out)).first->second;
}

/// ||x - ref|| / ||ref||.
double relativeError(const std::vector<float> &x,
                     const std::vector<float> &ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = double(x[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// A 4-bit GEMM is not an f32 GEMM, but it must approximate one: anything
/// this far off means wrong operands or transposes, not quantization noise
/// (an all-zero or uncorrelated output gives 1.0 or more).
constexpr double kMaxRelativeError = 0.75;

/// Launches `kernel` once and checks its output against the SGEMM product,
/// then times launches. `args` has the operands; the output is set here.
void launchLoop(benchmark::State &state, const GemmCase &c,
                const lq::Kernel &kernel, lq::LaunchArgs args,
                const std::vector<float> &reference) {
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  args.out = lq::TensorRef::f32(out.data(), c.M, c.N);
  auto warm = kernel.launch(args);
  if (!warm) {
    state.SkipWithError(("launch failed: " + warm.error()).c_str());
    return;
  }
  double error = relativeError(out, reference);
  if (!(error <= kMaxRelativeError)) {
    state.SkipWithError(("output is not an approximation of the SGEMM "
                         "product: relative error " +
                         std::to_string(error))
                            .c_str());
    return;
  }
  for (auto _ : state) {
    auto status = kernel.launch(args);
    if (!status) {
      state.SkipWithError(("launch failed: " + status.error()).c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = flopRate(c);
  state.counters["rel_err"] = error;
}

void benchGemmLq(benchmark::State &state, const GemmCase &c) {
  Runtime &rt = Runtime::get();
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  const std::vector<float> &reference = sgemmReference(c);
  waitForBlasToPark();
  auto kernel = rt.compile(c.spec());
  if (!kernel) {
    state.SkipWithError(("compile failed: " + kernel.error()).c_str());
    return;
  }
  lq::LaunchArgs args;
  args.lhs = lq::TensorRef::f32(a.data(), c.lhsRows(), c.lhsCols());
  args.rhs = lq::TensorRef::f32(b.data(), c.rhsRows(), c.rhsCols());
  args.seed = 0x5eed;
  args.stream = 7;
  launchLoop(state, c, *kernel, args, reference);
  state.SetLabel("lq threads=" + std::to_string(rt.threads()));
}

/// The same GEMM from operands quantized beforehand (Packed4 inputs): what
/// is left of the fused kernel without its quantizers.
void benchGemmLqPacked(benchmark::State &state, const GemmCase &c) {
  Runtime &rt = Runtime::get();
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  const std::vector<float> &reference = sgemmReference(c);
  waitForBlasToPark();
  GemmSpec spec = c.spec();
  spec.lhs.dtype = DType::Packed4;
  spec.rhs.dtype = DType::Packed4;
  auto kernel = rt.compile(spec);
  if (!kernel) {
    state.SkipWithError(("compile failed: " + kernel.error()).c_str());
    return;
  }
  std::vector<uint8_t> qa(size_t(c.lhsRows() * ((c.lhsCols() + 1) / 2)));
  std::vector<uint8_t> qb(size_t(c.rhsRows() * ((c.rhsCols() + 1) / 2)));
  lq::LaunchArgs args;
  args.lhs = lq::TensorRef::packed4(qa.data(), c.lhsRows(), c.lhsCols());
  args.rhs = lq::TensorRef::packed4(qb.data(), c.rhsRows(), c.rhsCols());
  float *scales[2] = {&args.lhsScale, &args.rhsScale};
  const lq::OperandSpec *ops[2] = {&spec.lhs, &spec.rhs};
  const std::vector<float> *inputs[2] = {&a, &b};
  const lq::TensorRef *packed[2] = {&args.lhs, &args.rhs};
  for (int side = 0; side < 2; ++side) {
    lq::QuantizeArgs q;
    q.input = lq::TensorRef::f32(inputs[side]->data(), packed[side]->rows,
                                 packed[side]->cols);
    q.output = *packed[side];
    q.format = ops[side]->format;
    q.seed = 0x5eed;
    q.stream = 7;
    auto status = rt.quantize(q);
    if (!status) {
      state.SkipWithError(("quantize failed: " + status.error()).c_str());
      return;
    }
    *scales[side] = status->scale;
  }
  launchLoop(state, c, *kernel, args, reference);
  state.SetLabel("pre-quantized operands, lq threads=" +
                 std::to_string(rt.threads()));
}

void benchGemmBlas(benchmark::State &state, const GemmCase &c) {
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  sgemm(c, a.data(), b.data(), out.data()); // warm-up: threads, buffers
  for (auto _ : state) {
    sgemm(c, a.data(), b.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  markBlasRan();
  state.counters["FLOP/s"] = flopRate(c);
  state.SetLabel("openblas threads=" +
                 std::to_string(openblas_get_num_threads()));
}

//===----------------------------------------------------------------------===//
// JIT: child processes
//===----------------------------------------------------------------------===//

/// What a child reports: `key=value` pairs on one stdout line.
struct ChildResult {
  std::string error; // empty on success
  std::map<std::string, double> values;
  double get(const std::string &key) const {
    auto it = values.find(key);
    return it == values.end() ? std::nan("") : it->second;
  }
};

std::string readTail(const std::string &path, size_t maxBytes) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (text.size() > maxBytes)
    text = "..." + text.substr(text.size() - maxBytes);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  return text;
}

/// Runs this executable with `args` and LQ_CACHE_DIR=`cacheDir` (disk cache
/// on, no IR dumps) and parses its report.
ChildResult runChild(const std::vector<std::string> &args,
                     const std::string &cacheDir) {
  ChildResult result;
  std::vector<std::string> env;
  for (char **e = environ; *e; ++e) {
    std::string entry(*e);
    for (const char *drop : {"LQ_CACHE_DIR=", "LQ_CACHE_DISABLE=",
                             "LQ_DUMP_DIR=", "OPENBLAS_NUM_THREADS="})
      if (entry.rfind(drop, 0) == 0)
        entry.clear();
    if (!entry.empty())
      env.push_back(entry);
  }
  env.push_back("LQ_CACHE_DIR=" + cacheDir);
  // Children run no BLAS: without this, OpenBLAS would start its worker
  // threads at load time, and they spin for a while beside the compile.
  env.push_back("OPENBLAS_NUM_THREADS=1");
  std::vector<std::string> argv = {selfExe};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char *> cargv, cenv;
  for (std::string &s : argv)
    cargv.push_back(s.data());
  cargv.push_back(nullptr);
  for (std::string &s : env)
    cenv.push_back(s.data());
  cenv.push_back(nullptr);

  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  std::string errPath = tempRoot + "/child-stderr.txt";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclose(&actions, pipeFds[0]);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipeFds[1]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, selfExe.c_str(), &actions, nullptr, cargv.data(),
                       cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  if (rc != 0) {
    close(pipeFds[0]);
    result.error = "posix_spawn " + selfExe + ": " + std::strerror(rc);
    return result;
  }
  std::string output;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(pipeFds[0], buffer, sizeof(buffer));
    if (n > 0)
      output.append(buffer, size_t(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  close(pipeFds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    result.error = "child " + argv[1] + " failed (status " +
                   std::to_string(status) + "): " + readTail(errPath, 600);
    return result;
  }
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("lq-child ", 0) != 0)
      continue;
    std::istringstream fields(line.substr(9));
    std::string field;
    while (fields >> field) {
      size_t eq = field.find('=');
      if (eq != std::string::npos)
        result.values[field.substr(0, eq)] =
            std::strtod(field.c_str() + eq + 1, nullptr);
    }
  }
  if (result.values.empty())
    result.error = "child " + argv[1] + " printed no report: " + output;
  return result;
}

/// The child mode: compile one spec and report how long compile() took and
/// what the cache did. With `warmJit`, the host JIT is set up first and
/// timed on its own; otherwise compile() is the first call into the
/// runtime's JIT and its time includes the setup.
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
  lq::CacheCounters counters = rt.cacheCounters();
  std::printf("lq-child compile_s=%.9f jit_init_s=%.9f compiles=%llu "
              "disk_hits=%llu memory_hits=%llu\n",
              compile, jitInit, (unsigned long long)counters.compiles,
              (unsigned long long)counters.diskHits,
              (unsigned long long)counters.memoryHits);
  std::fflush(stdout);
  return 0;
}

#ifdef LQ_BENCH_GPU
/// The GEMM shape of the sm_90a cold-compile rows, and the H200 it plans
/// for: the kernels a first launch compiles depend on both.
constexpr int64_t kGpuColdSize = 4096;

lq::gpu::DeviceInfo h200() {
  lq::gpu::DeviceInfo d;
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
lq::LaunchArgs planningArgs(const GemmSpec &spec) {
  auto tensor = [](const lq::OperandSpec &op, bool isLhs) {
    int64_t n = kGpuColdSize;
    (void)isLhs;
    lq::TensorRef t{reinterpret_cast<void *>(uintptr_t(1) << 32), op.dtype,
                    n, n, n, lq::Device::CUDA};
    if (op.dtype == DType::Packed4)
      t.rowStride = (n + 1) / 2;
    return t;
  };
  lq::LaunchArgs args;
  args.lhs = tensor(spec.lhs, true);
  args.rhs = tensor(spec.rhs, false);
  args.out = {reinterpret_cast<void *>(uintptr_t(2) << 32), spec.output,
              kGpuColdSize, kGpuColdSize, kGpuColdSize, lq::Device::CUDA};
  return args;
}

GemmSpec gpuSpecOf(Role role) {
  GemmSpec spec = specOf(role);
  spec.lhs.dtype = spec.rhs.dtype = DType::BF16;
  spec.target = lq::Target::CudaSm90a;
  return spec;
}

/// The child mode of the sm_90a cold compile: the kernels a first 4096^3
/// launch of the role's bf16 GEMM runs on an H200, planned as the launcher
/// plans, generated and assembled as the runtime does on that launch. The
/// assembler's one-time start-up in a process (nvJitLink's library load)
/// is timed apart: it is paid once per process, not per spec.
int childGpuCompile(const std::string &roleName) {
  Role role;
  if (!parseRole(roleName, role)) {
    std::fprintf(stderr, "lq-bench: unknown role '%s'\n", roleName.c_str());
    return 2;
  }
  const char *tiny = ".version 8.0\n.target sm_90a\n.address_size 64\n"
                     ".visible .entry lq_warm() { ret; }\n";
  Clock::time_point start = Clock::now();
  lq::Result<std::string> warm = lq::gpu::compilePtx(tiny, "sm_90a");
  double init = secondsSince(start);
  if (!warm) {
    std::fprintf(stderr, "lq-bench: %s\n", warm.error().c_str());
    return 1;
  }
  GemmSpec spec = gpuSpecOf(role);
  start = Clock::now();
  auto info = lq::gpuModuleInfo(spec, /*quantizeOnly=*/false);
  auto plan = info ? lq::gpu::planGemmLaunch(*info, planningArgs(spec), h200())
                   : lq::Result<lq::gpu::LaunchPlan>::failure(info.error());
  auto cubins = plan ? lq::compileGpuKernels(spec, false, plan->kernels,
                                             "sm_90a")
                     : lq::Result<std::vector<std::string>>::failure(
                           plan.error());
  double compile = secondsSince(start);
  if (!cubins) {
    std::fprintf(stderr, "lq-bench: %s\n", cubins.error().c_str());
    return 1;
  }
  lq::CacheCounters counters = Runtime::get().cacheCounters();
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

std::string makeTempDir(const std::string &parent, const char *prefix) {
  std::string pattern = parent + "/" + prefix + "XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (!mkdtemp(buffer.data()))
    return "";
  return buffer.data();
}

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

//===----------------------------------------------------------------------===//
// Results table
//===----------------------------------------------------------------------===//

/// Forwards to the display reporter and keeps the last result of every
/// benchmark (the median when repetitions are asked for).
class CollectingReporter : public benchmark::BenchmarkReporter {
public:
  explicit CollectingReporter(std::unique_ptr<benchmark::BenchmarkReporter> d)
      : delegate(std::move(d)) {}

  bool ReportContext(const Context &context) override {
    return delegate->ReportContext(context);
  }
  void ReportRuns(const std::vector<Run> &runs) override {
    for (const Run &run : runs) {
      const std::string &name = run.run_name.function_name;
      bool median = run.run_type == Run::RT_Aggregate &&
                    run.aggregate_name == "median";
      if (run.run_type == Run::RT_Aggregate && !median)
        continue;
      Result &r = results[name];
      if (r.final)
        continue;
      r.final = median;
      r.error = run.error_occurred ? run.error_message : "";
      r.seconds = run.iterations > 0
                      ? run.real_accumulated_time / double(run.iterations)
                      : run.real_accumulated_time;
      r.counters.clear();
      for (const auto &[key, counter] : run.counters)
        r.counters[key] = counter.value;
    }
    delegate->ReportRuns(runs);
  }
  void Finalize() override { delegate->Finalize(); }

  struct Result {
    bool final = false;
    std::string error;
    double seconds = 0.0; // real time per iteration
    std::map<std::string, double> counters;
    double counter(const std::string &key) const {
      auto it = counters.find(key);
      return it == counters.end() ? std::nan("") : it->second;
    }
  };
  /// Benchmarks that stopped with an error.
  std::vector<std::string> failures() const {
    std::vector<std::string> names;
    for (const auto &[name, r] : results)
      if (!r.error.empty())
        names.push_back(name + ": " + r.error);
    return names;
  }
  const Result *find(const std::string &name) const {
    auto it = results.find(name);
    return it == results.end() || !it->second.error.empty() ? nullptr
                                                            : &it->second;
  }

private:
  std::unique_ptr<benchmark::BenchmarkReporter> delegate;
  std::map<std::string, Result> results;
};

std::string cell(const char *format, double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, v);
  return buffer;
}

struct TableRow {
  std::string benchmark, measured, baseline, ratio, target, verdict;
};

void printTable(const CollectingReporter &reporter,
                const std::vector<std::string> &quantSizes,
                const std::vector<GemmCase> &gemms,
                const std::vector<Role> &coldRoles,
                const std::vector<Role> &diskRoles, std::FILE *out) {
  std::vector<TableRow> rows;
  auto verdict = [](bool met) { return std::string(met ? "met" : "MISSED"); };

  for (const std::string &size : quantSizes) {
    const auto *base = reporter.find("quantize/memcpy/" + size);
    for (const char *q : {"luq", "sawb", "luq-hindsight"}) {
      const auto *r = reporter.find(std::string("quantize/") + q + "/" + size);
      if (!r)
        continue;
      bool targeted = std::string(q) != "luq-hindsight";
      TableRow row;
      row.benchmark = std::string("quantize ") +
                      (q[0] == 's'    ? "SAWB"
                       : targeted     ? "LUQ"
                                      : "LUQ (max given)") +
                      " f32 " + size;
      double gbs = r->counter("bytes_per_second") * 1e-9;
      row.measured = cell("%.2f GB/s", gbs);
      row.target = targeted ? ">= 0.50x memcpy" : "-";
      if (base) {
        double b = base->counter("bytes_per_second") * 1e-9;
        row.baseline = cell("%.2f GB/s memcpy", b);
        row.ratio = cell("%.2fx", gbs / b);
        row.verdict = targeted ? verdict(gbs / b >= 0.5) : "-";
      } else {
        row.baseline = row.ratio = "n/a";
        row.verdict = targeted ? "n/a" : "-";
      }
      rows.push_back(row);
    }
  }

  for (const GemmCase &c : gemms) {
    const auto *base = reporter.find(c.name("openblas"));
    for (const char *impl : {"lq", "lq-packed"}) {
      const auto *r = reporter.find(c.name(impl));
      if (!r)
        continue;
      bool packed = std::string(impl) == "lq-packed";
      TableRow row;
      row.benchmark = "GEMM " + std::string(roleName(c.role)) + " " + c.what +
                      (packed ? ", pre-quantized" : "");
      double g = r->counter("FLOP/s") * 1e-9;
      row.measured = cell("%.1f GFLOP/s", g);
      bool targeted = !packed && c.M == 2048 && c.N == 2048 && c.K == 2048 &&
                      c.role == Role::Forward;
      row.target = targeted ? ">= 1.00x SGEMM" : "-";
      if (base) {
        double b = base->counter("FLOP/s") * 1e-9;
        row.baseline = cell("%.1f GFLOP/s SGEMM", b);
        row.ratio = cell("%.2fx", g / b);
        row.verdict = targeted ? verdict(g / b >= 1.0) : "-";
      } else {
        row.baseline = row.ratio = "n/a";
        row.verdict = targeted ? "n/a" : "-";
      }
      rows.push_back(row);
    }
  }

  for (Role role : coldRoles)
    if (const auto *r =
            reporter.find(std::string("jit/cold-compile/") + roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("cold compile: ") + roleName(role),
                      cell("%.1f ms", ms), "-", "-", "<= 150 ms",
                      verdict(ms <= 150.0)});
    }
  for (Role role : coldRoles)
    if (const auto *r = reporter.find(std::string("jit/gpu-cold-compile/") +
                                      roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("cold compile: ") + roleName(role) +
                          " sm_90a",
                      cell("%.1f ms", ms), "-", "-", "<= 300 ms",
                      verdict(ms <= 300.0)});
    }
  if (const auto *r = reporter.find("jit/memory-hit/forward")) {
    double us = r->seconds * 1e6;
    rows.push_back({"in-process cache hit: forward", cell("%.3f us", us), "-", "-",
                    "<= 2 us", verdict(us <= 2.0)});
  }
  for (Role role : diskRoles)
    if (const auto *r = reporter.find(std::string("jit/disk-hit-new-process/") +
                                      roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("disk hit, new process: ") + roleName(role),
                      cell("%.2f ms", ms), "-", "-", "<= 20 ms",
                      verdict(ms <= 20.0)});
    }
  if (const auto *r = reporter.find("jit/disk-hit-new-process-jit-ready/forward"))
    rows.push_back({"disk hit, new process, JIT ready: forward",
                    cell("%.2f ms", r->seconds * 1e3), "-", "-", "-", "-"});
  if (const auto *r = reporter.find("jit/disk-hit-in-process/forward"))
    rows.push_back({"disk hit, same process: forward",
                    cell("%.2f ms", r->seconds * 1e3), "-", "-", "-", "-"});

  if (rows.empty())
    return;
  TableRow header{"benchmark", "measured", "baseline", "ratio", "target",
                  "result"};
  size_t w[6] = {0, 0, 0, 0, 0, 0};
  auto widen = [&](const TableRow &r) {
    const std::string *cells[6] = {&r.benchmark, &r.measured, &r.baseline,
                                   &r.ratio,     &r.target,   &r.verdict};
    for (int i = 0; i < 6; ++i)
      w[i] = std::max(w[i], cells[i]->size());
  };
  widen(header);
  for (const TableRow &r : rows)
    widen(r);
  auto print = [&](const TableRow &r) {
    std::fprintf(out, "%-*s  %*s  %*s  %*s  %-*s  %s\n", int(w[0]),
                 r.benchmark.c_str(), int(w[1]), r.measured.c_str(),
                 int(w[2]), r.baseline.c_str(), int(w[3]), r.ratio.c_str(),
                 int(w[4]), r.target.c_str(), r.verdict.c_str());
  };
  std::fprintf(out, "\nlq-bench summary (ratios against baselines run in this "
                    "process)\n");
  print(header);
  std::fprintf(out, "%s\n",
               std::string(w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + 10, '-')
                   .c_str());
  for (const TableRow &r : rows)
    print(r);
}

//===----------------------------------------------------------------------===//
// Main
//===----------------------------------------------------------------------===//

std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos)
        return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown CPU";
}

std::string utcNow() {
  std::time_t t = std::time(nullptr);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S UTC",
                std::gmtime(&t));
  return buffer;
}

/// CPU seconds this process (all its threads) has used.
double selfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

/// CPUs kept busy by other processes over `seconds`, from /proc/stat; 0
/// when it cannot be read.
double busyCpus(double seconds) {
  auto sample = [](double &busy, double &total) {
    std::ifstream in("/proc/stat");
    std::string cpu;
    in >> cpu;
    if (cpu != "cpu")
      return false;
    // user nice system idle iowait irq softirq steal
    double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (double &x : v)
      in >> x;
    total = 0;
    for (double x : v)
      total += x;
    busy = total - v[3] - v[4];
    return bool(in);
  };
  double b0, t0, b1, t1;
  double self0 = selfCpuSeconds();
  Clock::time_point start = Clock::now();
  if (!sample(b0, t0))
    return 0.0;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  if (!sample(b1, t1) || t1 <= t0)
    return 0.0;
  double self = (selfCpuSeconds() - self0) / secondsSince(start);
  double all = (b1 - b0) / (t1 - t0) * std::thread::hardware_concurrency();
  return std::max(0.0, all - self);
}

void printHeader(std::FILE *out) {
  Runtime &rt = Runtime::get();
  unsigned cpus = std::thread::hardware_concurrency();
  std::fprintf(out, "lq-bench %s mode, %s\n", options.quick ? "quick" : "full",
               utcNow().c_str());
  std::fprintf(out, "host: %s, %u logical CPUs; lq JIT target: %s\n",
               cpuModel().c_str(), cpus, rt.hostDescription().c_str());
  std::fprintf(out,
               "threads: lq %u (Runtime::threads()), OpenBLAS %d "
               "(openblas_set_num_threads to match)\n",
               rt.threads(), openblas_get_num_threads());
  std::fprintf(out, "OpenBLAS: %s, core %s\n", openblas_get_config(),
               openblas_get_corename());
  std::fprintf(out,
               "env: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s "
               "OPENBLAS_NUM_THREADS=%s OMP_NUM_THREADS=%s\n",
               envOr("OPENBLAS_CORETYPE", "(unset)").c_str(),
               envOr("OPENBLAS_L2_SIZE", "(unset)").c_str(),
               envOr("OPENBLAS_NUM_THREADS", "(unset)").c_str(),
               envOr("OMP_NUM_THREADS", "(unset)").c_str());
  std::fprintf(out, "compile cache: private directory %s (removed at exit)\n",
               parentCacheDir.c_str());
  double load[1] = {0.0};
  getloadavg(load, 1);
  double busy = busyCpus(0.5);
  std::fprintf(out, "load: %.2f CPUs busy with other work over 0.5 s, load "
                    "average %.2f\n",
               busy, load[0]);
  if (busy > 0.25 * cpus)
    std::fprintf(out, "warning: other work is running: timings taken under "
                      "load are not representative\n");
  std::fflush(out);
}

void usage() {
  std::printf(
      "usage: lq-bench [--quick] [--no-lq-table] [google benchmark flags]\n"
      "  --quick        every benchmark once, small sizes (smoke test)\n"
      "  --no-lq-table  do not print the summary table at the end\n"
      "  --lq-table     print it (the default)\n"
      "Useful benchmark flags: --benchmark_filter=<regex>, "
      "--benchmark_out=<file.json>,\n"
      "  --benchmark_repetitions=<n> (the table then uses the medians).\n"
      "docs/benchmarks.md describes every benchmark.\n\n");
}

std::unique_ptr<benchmark::BenchmarkReporter>
displayReporter(const std::vector<std::string> &args, bool &console) {
  std::string format = "console";
  bool color = isatty(STDOUT_FILENO) && envOr("TERM", "dumb") != "dumb";
  for (const std::string &a : args) {
    if (a.rfind("--benchmark_format=", 0) == 0)
      format = a.substr(19);
    if (a == "--benchmark_color=false" || a == "--benchmark_color=no" ||
        a == "--benchmark_color=0")
      color = false;
  }
  console = format == "console";
  if (format == "json")
    return std::make_unique<benchmark::JSONReporter>();
  return std::make_unique<benchmark::ConsoleReporter>(
      color ? benchmark::ConsoleReporter::OO_Color
            : benchmark::ConsoleReporter::OO_None);
}

} // namespace

int main(int argc, char **argv) {
  // Child mode: one compile, reported on stdout.
  std::string childRole, childGpuRole;
  bool childWarmJit = false;
  std::vector<char *> rest = {argv[0]};
  std::vector<std::string> benchArgs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      options.quick = true;
    else if (a == "--no-lq-table")
      options.table = false;
    else if (a == "--lq-table")
      options.table = true;
    else if (a.rfind("--lq-child-compile=", 0) == 0)
      childRole = a.substr(19);
    else if (a.rfind("--lq-child-gpu-compile=", 0) == 0)
      childGpuRole = a.substr(23);
    else if (a == "--lq-child-warm-jit")
      childWarmJit = true;
    else {
      if (a == "--help" || a == "-h")
        usage();
      rest.push_back(argv[i]);
      benchArgs.push_back(a);
    }
  }
  if (!childRole.empty())
    return childCompile(childRole, childWarmJit);
#ifdef LQ_BENCH_GPU
  if (!childGpuRole.empty())
    return childGpuCompile(childGpuRole);
#endif

  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    std::fprintf(stderr, "lq-bench: cannot find its own executable\n");
    return 1;
  }
  selfExe.assign(exe, size_t(n));

  // The full run repeats the throughput benchmarks and interleaves the
  // repetitions of all benchmarks in random order, so that a slow spell of
  // the machine hits a measurement and its baseline alike. The command line
  // can ask otherwise.
  bool userRepetitions = false, userInterleaving = false;
  for (const std::string &a : benchArgs) {
    userRepetitions |= a.rfind("--benchmark_repetitions", 0) == 0;
    userInterleaving |= a.rfind("--benchmark_enable_random_interleaving", 0) == 0;
  }
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  if (!options.quick && !userInterleaving)
    rest.push_back(interleave.data());

  int benchArgc = int(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&benchArgc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(benchArgc, rest.data()))
    return 1;

  // A private compile cache, set before the runtime reads the environment.
  const char *tmp = std::getenv("TMPDIR");
  tempRoot = makeTempDir(tmp && *tmp ? tmp : "/tmp", "lq-bench.");
  if (tempRoot.empty()) {
    std::fprintf(stderr, "lq-bench: cannot create a temporary directory\n");
    return 1;
  }
  parentCacheDir = tempRoot + "/cache";
  setenv("LQ_CACHE_DIR", parentCacheDir.c_str(), 1);
  unsetenv("LQ_CACHE_DISABLE");

  Runtime &rt = Runtime::get();
  openblas_set_num_threads(int(rt.threads()));

  bool quick = options.quick;
  // Throughput benchmarks: 5 repetitions, the table takes the medians.
  auto repeat = [&](benchmark::internal::Benchmark *b) {
    if (!quick && !userRepetitions)
      b->Repetitions(5)->DisplayAggregatesOnly(true);
  };
  // Quantizer sizes: a large tensor and a training-sized one.
  std::vector<std::pair<int64_t, int64_t>> quantShapes =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{128, 512}}
            : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096},
                                                       {128, 512}};
  std::vector<std::string> quantSizes;
  for (auto [rows, cols] : quantShapes) {
    std::string size = std::to_string(rows) + "x" + std::to_string(cols);
    quantSizes.push_back(size);
    bool big = rows * cols >= (int64_t(1) << 20);
    auto tune = [&](benchmark::internal::Benchmark *b) {
      b->UseRealTime()->Unit(big ? benchmark::kMillisecond
                                 : benchmark::kMicrosecond);
      if (quick)
        b->Iterations(1);
      else
        b->MinTime(0.2);
      repeat(b);
    };
    tune(benchmark::RegisterBenchmark(
        ("quantize/memcpy/" + size).c_str(),
        [=](benchmark::State &s) { benchMemcpy(s, rows, cols); }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/luq/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::Log4, rows, cols);
        }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/sawb/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::SInt4, rows, cols);
        }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/luq-hindsight/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::Log4, rows, cols, /*hindsight=*/true);
        }));
  }

  // GEMMs: square sizes with the forward kernel, then the three GEMMs of a
  // 784 -> 512 linear layer at batch 128.
  std::vector<GemmCase> gemms;
  if (quick)
    gemms.push_back({Role::Forward, 64, 64, 64, "64^3"});
  else {
    gemms.push_back({Role::Forward, 512, 512, 512, "512^3"});
    gemms.push_back({Role::Forward, 2048, 2048, 2048, "2048^3"});
  }
  gemms.push_back({Role::Forward, 128, 512, 784, "y[128,512] 784->512"});
  gemms.push_back({Role::BackwardData, 128, 784, 512, "dx[128,784] 784->512"});
  gemms.push_back({Role::WeightGrad, 512, 784, 128, "dW[512,784] 784->512"});
  for (const GemmCase &c : gemms) {
    bool big = c.flops() > 1e10;
    auto tune = [&](benchmark::internal::Benchmark *b) {
      b->UseRealTime()->Unit(benchmark::kMillisecond);
      if (quick)
        b->Iterations(1);
      else if (big)
        b->Iterations(2);
      else
        b->MinTime(0.2);
      repeat(b);
    };
    tune(benchmark::RegisterBenchmark(
        c.name("lq").c_str(),
        [c](benchmark::State &s) { benchGemmLq(s, c); }));
    tune(benchmark::RegisterBenchmark(
        c.name("lq-packed").c_str(),
        [c](benchmark::State &s) { benchGemmLqPacked(s, c); }));
    tune(benchmark::RegisterBenchmark(
        c.name("openblas").c_str(),
        [c](benchmark::State &s) { benchGemmBlas(s, c); }));
  }

  // JIT.
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

  bool console = true;
  CollectingReporter reporter(displayReporter(benchArgs, console));
  printHeader(console ? stdout : stderr);
  size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (options.table)
    printTable(reporter, quantSizes, gemms, coldRoles, diskRoles,
               console ? stdout : stderr);

  std::error_code ec;
  std::filesystem::remove_all(tempRoot, ec);
  if (ran == 0) {
    std::fprintf(stderr, "lq-bench: no benchmark matched\n");
    return 1;
  }
  std::vector<std::string> failures = reporter.failures();
  for (const std::string &f : failures)
    std::fprintf(stderr, "lq-bench: error: %s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}
