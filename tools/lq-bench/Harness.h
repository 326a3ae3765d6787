//===- Harness.h - what every lq-bench benchmark shares ---------*- C++ -*-===//
//
// The run's options and private directory, the GEMM roles the benchmarks
// are named by, deterministic inputs, OpenBLAS thread parking, child
// processes (this binary re-run in a child mode), and the reporter that
// keeps each benchmark's result for the summary table.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_BENCH_HARNESS_H
#define LQ_BENCH_HARNESS_H

#include "lq/Runtime/Runtime.h"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lq::bench {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start);

//===----------------------------------------------------------------------===//
// Options and process-wide state
//===----------------------------------------------------------------------===//

struct Options {
  bool quick = false;
  bool table = true;
  /// The command line sets --benchmark_repetitions itself.
  bool userRepetitions = false;
  /// --cpu: the CPU the GEMM kernels are compiled for (Runtime's
  /// compileForCpu names); empty for this machine's.
  std::string cpu;
};

/// Compiles the GEMM kernel of `spec` for --cpu.
Result<Kernel> compileGemm(const GemmSpec &spec);
/// The dot product of the GEMM micro-kernel the --cpu kernels run.
std::string gemmDotProduct();
extern Options options;

/// Private temporary directory of this run: the parent's compile cache
/// (`cache/`), fresh cold-compile caches, children's stderr.
extern std::string tempRoot;
extern std::string parentCacheDir;
/// This executable, which children re-run.
extern std::string selfExe;

/// Throughput benchmarks: 5 repetitions, the table takes the medians
/// (unless --quick, or the command line asks for repetitions itself).
void repeatThroughput(benchmark::internal::Benchmark *b);

/// OpenBLAS worker threads keep spinning for a while after a call; an lq
/// measurement that follows one waits for them to park.
void markBlasRan();
void waitForBlasToPark();

std::string envOr(const char *name, const char *fallback);

/// A new directory `<parent>/<prefix>XXXXXX`, or "" when it cannot be made.
std::string makeTempDir(const std::string &parent, const char *prefix);

/// A deterministic N(0, 1) buffer of `count` floats, made once per (count,
/// seed) and shared by every benchmark that asks for it.
const std::vector<float> &randomBuffer(int64_t count, uint32_t seed);

//===----------------------------------------------------------------------===//
// GEMM roles
//===----------------------------------------------------------------------===//

enum class Role { Forward, BackwardData, WeightGrad };

/// "forward", "backward-data", "weight-grad": the spelling of benchmark
/// names and child-mode flags.
const char *roleName(Role role);
bool parseRole(const std::string &name, Role &role);
GemmSpec specOf(Role role);

//===----------------------------------------------------------------------===//
// Child processes
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

/// Runs this executable with `args` and LQ_CACHE_DIR=`cacheDir` (disk cache
/// on, no IR dumps) and parses its report.
ChildResult runChild(const std::vector<std::string> &args,
                     const std::string &cacheDir);

//===----------------------------------------------------------------------===//
// Results
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
  void ReportRuns(const std::vector<Run> &runs) override;
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
  std::vector<std::string> failures() const;
  /// The result of `name`; null when it did not run or failed.
  const Result *find(const std::string &name) const;

private:
  std::unique_ptr<benchmark::BenchmarkReporter> delegate;
  std::map<std::string, Result> results;
};

/// The reporter that --benchmark_format and --benchmark_color in `args`
/// ask for; `console` says whether it is the console one.
std::unique_ptr<benchmark::BenchmarkReporter>
displayReporter(const std::vector<std::string> &args, bool &console);

} // namespace lq::bench

#endif // LQ_BENCH_HARNESS_H
