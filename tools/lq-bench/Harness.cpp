//===- Harness.cpp - what every lq-bench benchmark shares -----------------===//

#include "Harness.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <thread>

extern char **environ;

namespace lq::bench {

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

//===----------------------------------------------------------------------===//
// Options and process-wide state
//===----------------------------------------------------------------------===//

Options options;

Result<Kernel> compileGemm(const GemmSpec &spec) {
  Runtime &rt = Runtime::get();
  return options.cpu.empty() ? rt.compile(spec)
                             : rt.compileForCpu(spec, options.cpu);
}

std::string gemmDotProduct() {
  Result<std::string> dot =
      Runtime::get().cpuDotProduct(options.cpu.empty() ? "host" : options.cpu);
  return dot ? *dot : "unavailable: " + dot.error();
}
std::string tempRoot;
std::string parentCacheDir;
std::string selfExe;

void repeatThroughput(benchmark::internal::Benchmark *b) {
  if (!options.quick && !options.userRepetitions)
    b->Repetitions(5)->DisplayAggregatesOnly(true);
}

namespace {
bool blasRanRecently = false;
} // namespace

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

std::string makeTempDir(const std::string &parent, const char *prefix) {
  std::string pattern = parent + "/" + prefix + "XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (!mkdtemp(buffer.data()))
    return "";
  return buffer.data();
}

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
// GEMM roles
//===----------------------------------------------------------------------===//

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

//===----------------------------------------------------------------------===//
// Child processes
//===----------------------------------------------------------------------===//

namespace {

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

/// This process's environment, with the compile cache at `cacheDir`.
std::vector<std::string> childEnvironment(const std::string &cacheDir) {
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
  return env;
}

/// Runs `argv` with `env`, reads its stdout into `output`, writes its
/// stderr to `errPath` and waits for it (its wait status in `status`).
/// Returns why it could not be started, or "".
std::string spawnAndWait(std::vector<std::string> &argv,
                         std::vector<std::string> &env,
                         const std::string &errPath, std::string &output,
                         int &status) {
  std::vector<char *> cargv, cenv;
  for (std::string &s : argv)
    cargv.push_back(s.data());
  cargv.push_back(nullptr);
  for (std::string &s : env)
    cenv.push_back(s.data());
  cenv.push_back(nullptr);

  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0)
    return std::string("pipe: ") + std::strerror(errno);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclose(&actions, pipeFds[0]);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipeFds[1]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr,
                       cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  if (rc != 0) {
    close(pipeFds[0]);
    return "posix_spawn " + argv[0] + ": " + std::strerror(rc);
  }
  char buffer[4096];
  for (;;) {
    ssize_t n = read(pipeFds[0], buffer, sizeof(buffer));
    if (n > 0)
      output.append(buffer, size_t(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  close(pipeFds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return "";
}

/// The `key=value` fields of the `lq-child ` lines of `output`.
void parseReport(const std::string &output,
                 std::map<std::string, double> &values) {
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
        values[field.substr(0, eq)] =
            std::strtod(field.c_str() + eq + 1, nullptr);
    }
  }
}

} // namespace

ChildResult runChild(const std::vector<std::string> &args,
                     const std::string &cacheDir) {
  ChildResult result;
  std::vector<std::string> env = childEnvironment(cacheDir);
  std::vector<std::string> argv = {selfExe};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string errPath = tempRoot + "/child-stderr.txt";
  std::string output;
  int status = 0;
  result.error = spawnAndWait(argv, env, errPath, output, status);
  if (!result.error.empty())
    return result;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    result.error = "child " + argv[1] + " failed (status " +
                   std::to_string(status) + "): " + readTail(errPath, 600);
    return result;
  }
  parseReport(output, result.values);
  if (result.values.empty())
    result.error = "child " + argv[1] + " printed no report: " + output;
  return result;
}

//===----------------------------------------------------------------------===//
// Results
//===----------------------------------------------------------------------===//

void CollectingReporter::ReportRuns(const std::vector<Run> &runs) {
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

std::vector<std::string> CollectingReporter::failures() const {
  std::vector<std::string> names;
  for (const auto &[name, r] : results)
    if (!r.error.empty())
      names.push_back(name + ": " + r.error);
  return names;
}

const CollectingReporter::Result *
CollectingReporter::find(const std::string &name) const {
  auto it = results.find(name);
  return it == results.end() || !it->second.error.empty() ? nullptr
                                                          : &it->second;
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

} // namespace lq::bench
