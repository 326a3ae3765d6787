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
//   launch/...    a compiled kernel launched on 16x16x16 again and again,
//                 against a plain C++ function computing the same product;
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
// Each family has a file of its own (QuantizeBench, GemmBench, LaunchBench,
// JitBench); Harness has what they share, Table the summary; this file the
// command line, the header of the report and the run.
//
//===----------------------------------------------------------------------===//

#include "GemmBench.h"
#include "Harness.h"
#include "JitBench.h"
#include "LaunchBench.h"
#include "QuantizeBench.h"
#include "Table.h"

#include <cblas.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace lq;
using namespace lq::bench;

namespace {

//===----------------------------------------------------------------------===//
// The header
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

/// The machine, threads and load the numbers are taken on, so that a
/// report can be read without the run that made it.
void printHeader(std::FILE *out) {
  Runtime &rt = Runtime::get();
  unsigned cpus = std::thread::hardware_concurrency();
  std::fprintf(out, "lq-bench %s mode, %s\n", options.quick ? "quick" : "full",
               utcNow().c_str());
  std::fprintf(out, "host: %s, %u logical CPUs; lq JIT target: %s\n",
               cpuModel().c_str(), cpus, rt.hostDescription().c_str());
  std::fprintf(out, "cpu dot product: %s (GEMM kernels compiled for %s)\n",
               gemmDotProduct().c_str(),
               options.cpu.empty() ? "this machine's CPU"
                                   : ("CPU " + options.cpu).c_str());
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

//===----------------------------------------------------------------------===//
// Command line
//===----------------------------------------------------------------------===//

void usage() {
  std::printf(
      "usage: lq-bench [--quick] [--no-lq-table] [--cpu=NAME] [google "
      "benchmark flags]\n"
      "  --quick        every benchmark once, small sizes (smoke test)\n"
      "  --no-lq-table  do not print the summary table at the end\n"
      "  --lq-table     print it (the default)\n"
      "  --cpu=NAME     GEMM kernels for an LLVM CPU, not this machine's: e.g.\n"
      "                 x86-64-v3 (AVX2), x86-64-v3,+avxvnni (AVX-VNNI)\n"
      "Useful benchmark flags: --benchmark_filter=<regex>, "
      "--benchmark_out=<file.json>,\n"
      "  --benchmark_repetitions=<n> (the table then uses the medians).\n"
      "docs/benchmarks.md describes every benchmark.\n\n"
      "Google Benchmark's flags, which lq-bench passes on:\n");
}

struct CommandLine {
  /// The child modes' flags.
  std::string childRole, childGpuRole;
  bool childWarmJit = false;
  /// argv[0] and the flags that are not lq-bench's, for Google Benchmark.
  std::vector<char *> rest;
  std::vector<std::string> benchArgs;
};

/// Takes lq-bench's own flags into `options` and the returned child-mode
/// flags; the rest is for Google Benchmark.
CommandLine parseCommandLine(int argc, char **argv) {
  CommandLine cl;
  cl.rest.push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      options.quick = true;
    else if (a == "--no-lq-table")
      options.table = false;
    else if (a == "--lq-table")
      options.table = true;
    else if (a.rfind("--cpu=", 0) == 0)
      options.cpu = a.substr(6);
    else if (a.rfind("--lq-child-compile=", 0) == 0)
      cl.childRole = a.substr(19);
    else if (a.rfind("--lq-child-gpu-compile=", 0) == 0)
      cl.childGpuRole = a.substr(23);
    else if (a == "--lq-child-warm-jit")
      cl.childWarmJit = true;
    else if (a == "--help" || a == "-h") {
      // Google Benchmark lists its flags after lq-bench's and exits; it
      // knows only the long spelling.
      usage();
      static char help[] = "--help";
      cl.rest.push_back(help);
      cl.benchArgs.push_back(help);
    } else {
      cl.rest.push_back(argv[i]);
      cl.benchArgs.push_back(a);
    }
  }
  return cl;
}

/// Hands the remaining flags to Google Benchmark; false when it does not
/// know one of them (it says which).
bool initBenchmark(CommandLine &cl) {
  // The full run repeats the throughput benchmarks and interleaves the
  // repetitions of all benchmarks in random order, so that a slow spell of
  // the machine hits a measurement and its baseline alike. The command line
  // can ask otherwise.
  bool userInterleaving = false;
  for (const std::string &a : cl.benchArgs) {
    options.userRepetitions |= a.rfind("--benchmark_repetitions", 0) == 0;
    userInterleaving |=
        a.rfind("--benchmark_enable_random_interleaving", 0) == 0;
  }
  static std::string interleave = "--benchmark_enable_random_interleaving=true";
  if (!options.quick && !userInterleaving)
    cl.rest.push_back(interleave.data());

  int benchArgc = int(cl.rest.size());
  cl.rest.push_back(nullptr);
  benchmark::Initialize(&benchArgc, cl.rest.data());
  return !benchmark::ReportUnrecognizedArguments(benchArgc, cl.rest.data());
}

/// Finds this executable, which children re-run.
bool findSelfExe() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    return false;
  selfExe.assign(exe, size_t(n));
  return true;
}

/// Makes the run's private directory and points the compile cache into
/// it, before the runtime reads the environment.
bool makeRunDirectory() {
  const char *tmp = std::getenv("TMPDIR");
  tempRoot = makeTempDir(tmp && *tmp ? tmp : "/tmp", "lq-bench.");
  if (tempRoot.empty())
    return false;
  parentCacheDir = tempRoot + "/cache";
  setenv("LQ_CACHE_DIR", parentCacheDir.c_str(), 1);
  unsetenv("LQ_CACHE_DISABLE");
  return true;
}

} // namespace

int main(int argc, char **argv) {
  CommandLine cl = parseCommandLine(argc, argv);
  // Child mode: one compile, reported on stdout.
  if (!cl.childRole.empty())
    return childCompile(cl.childRole, cl.childWarmJit);
#ifdef LQ_BENCH_GPU
  if (!cl.childGpuRole.empty())
    return childGpuCompile(cl.childGpuRole);
#endif

  if (!findSelfExe()) {
    std::fprintf(stderr, "lq-bench: cannot find its own executable\n");
    return 1;
  }
  if (!initBenchmark(cl))
    return 1;
  if (!makeRunDirectory()) {
    std::fprintf(stderr, "lq-bench: cannot create a temporary directory\n");
    return 1;
  }

  Runtime &rt = Runtime::get();
  openblas_set_num_threads(int(rt.threads()));
  std::vector<std::string> quantSizes = registerQuantizeBenchmarks();
  std::vector<GemmCase> gemms = registerGemmBenchmarks();
  std::vector<Role> launches = registerLaunchBenchmarks();
  JitRoles jit = registerJitBenchmarks();

  bool console = true;
  CollectingReporter reporter(displayReporter(cl.benchArgs, console));
  printHeader(console ? stdout : stderr);
  size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (options.table)
    printTable(reporter, quantSizes, gemms, launches, jit.cold, jit.disk,
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
