//===- PtxCompiler.cpp - PTX to cubin, and ptxas resource reports ---------===//

#include "lq/Runtime/PtxCompiler.h"

#include <nvJitLink.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

using namespace lq;
using namespace lq::cuda;

namespace {

//===----------------------------------------------------------------------===//
// nvJitLink
//===----------------------------------------------------------------------===//

/// The nvJitLink entry points, by their unversioned names: every release
/// exports those, while the versioned ones nvJitLink.h calls
/// (__nvJitLinkCreate_13_0, ...) change with the toolkit.
struct NvJitLink {
  decltype(&nvJitLinkCreate) create = nullptr;
  decltype(&nvJitLinkDestroy) destroy = nullptr;
  decltype(&nvJitLinkAddData) addData = nullptr;
  decltype(&nvJitLinkComplete) complete = nullptr;
  decltype(&nvJitLinkGetLinkedCubinSize) cubinSize = nullptr;
  decltype(&nvJitLinkGetLinkedCubin) cubin = nullptr;
  decltype(&nvJitLinkGetErrorLogSize) errorLogSize = nullptr;
  decltype(&nvJitLinkGetErrorLog) errorLog = nullptr;
  decltype(&nvJitLinkGetInfoLogSize) infoLogSize = nullptr;
  decltype(&nvJitLinkGetInfoLog) infoLog = nullptr;
  decltype(&nvJitLinkVersion) version = nullptr;
};

Result<NvJitLink> loadNvJitLink() {
  using R = Result<NvJitLink>;
  const char *candidates[] = {"libnvJitLink.so.13", "libnvJitLink.so",
                              "/usr/local/cuda/lib64/libnvJitLink.so.13",
                              "/usr/local/cuda/lib64/libnvJitLink.so"};
  void *library = nullptr;
  std::string tried;
  for (const char *name : candidates) {
    // Kept loaded for the life of the process, like the CUDA driver.
    if ((library = dlopen(name, RTLD_NOW | RTLD_LOCAL)))
      break;
    const char *why = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (why ? why : name);
  }
  if (!library)
    return R::failure("nvJitLink not found (" + tried + ")");
  NvJitLink api;
  std::string missing;
  auto resolve = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
        dlsym(library, name));
    if (!fn)
      missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  resolve(api.create, "nvJitLinkCreate");
  resolve(api.destroy, "nvJitLinkDestroy");
  resolve(api.addData, "nvJitLinkAddData");
  resolve(api.complete, "nvJitLinkComplete");
  resolve(api.cubinSize, "nvJitLinkGetLinkedCubinSize");
  resolve(api.cubin, "nvJitLinkGetLinkedCubin");
  resolve(api.errorLogSize, "nvJitLinkGetErrorLogSize");
  resolve(api.errorLog, "nvJitLinkGetErrorLog");
  resolve(api.infoLogSize, "nvJitLinkGetInfoLogSize");
  resolve(api.infoLog, "nvJitLinkGetInfoLog");
  resolve(api.version, "nvJitLinkVersion");
  if (!missing.empty())
    return R::failure("nvJitLink lacks " + missing);
  return api;
}

const Result<NvJitLink> &nvJitLinkApi() {
  static const Result<NvJitLink> api = loadNvJitLink();
  return api;
}

std::string nvJitLinkResultName(nvJitLinkResult result) {
  switch (result) {
  case NVJITLINK_SUCCESS:
    return "NVJITLINK_SUCCESS";
  case NVJITLINK_ERROR_UNRECOGNIZED_OPTION:
    return "NVJITLINK_ERROR_UNRECOGNIZED_OPTION";
  case NVJITLINK_ERROR_MISSING_ARCH:
    return "NVJITLINK_ERROR_MISSING_ARCH";
  case NVJITLINK_ERROR_INVALID_INPUT:
    return "NVJITLINK_ERROR_INVALID_INPUT";
  case NVJITLINK_ERROR_PTX_COMPILE:
    return "NVJITLINK_ERROR_PTX_COMPILE";
  case NVJITLINK_ERROR_NVVM_COMPILE:
    return "NVJITLINK_ERROR_NVVM_COMPILE";
  case NVJITLINK_ERROR_INTERNAL:
    return "NVJITLINK_ERROR_INTERNAL";
  default:
    return "nvJitLink error " + std::to_string(int(result));
  }
}

/// One link: the handle, destroyed when the link goes away.
class Link {
public:
  explicit Link(const NvJitLink &api) : api(api) {}
  ~Link() {
    if (handle)
      api.destroy(&handle);
  }
  Link(const Link &) = delete;
  Link &operator=(const Link &) = delete;

  /// The error and info logs, for a failure message.
  std::string logs() const {
    std::string text;
    for (auto [sizeFn, logFn] :
         {std::pair(api.errorLogSize, api.errorLog),
          std::pair(api.infoLogSize, api.infoLog)}) {
      size_t size = 0;
      if (sizeFn(handle, &size) != NVJITLINK_SUCCESS || size <= 1)
        continue;
      std::string log(size, '\0');
      if (logFn(handle, log.data()) == NVJITLINK_SUCCESS)
        text += "\n" + std::string(log.c_str());
    }
    return text;
  }

  const NvJitLink &api;
  nvJitLinkHandle handle = nullptr;
};

Result<std::string> compileWithNvJitLink(std::string_view ptx,
                                         std::string_view arch) {
  using R = Result<std::string>;
  const Result<NvJitLink> &api = nvJitLinkApi();
  if (!api)
    return R::failure(api.error());
  Link link(*api);
  std::string archOption = "-arch=" + std::string(arch);
  const char *options[] = {archOption.c_str()};
  auto fail = [&](const char *call, nvJitLinkResult result) {
    return R::failure(std::string(call) + " (" + archOption + "): " +
                      nvJitLinkResultName(result) + link.logs());
  };
  if (nvJitLinkResult r = api->create(&link.handle, 1, options))
    return fail("nvJitLinkCreate", r);
  if (nvJitLinkResult r = api->addData(link.handle, NVJITLINK_INPUT_PTX,
                                       ptx.data(), ptx.size(), "lq.ptx"))
    return fail("nvJitLinkAddData", r);
  if (nvJitLinkResult r = api->complete(link.handle))
    return fail("nvJitLinkComplete", r);
  size_t size = 0;
  if (nvJitLinkResult r = api->cubinSize(link.handle, &size))
    return fail("nvJitLinkGetLinkedCubinSize", r);
  std::string cubin(size, '\0');
  if (nvJitLinkResult r = api->cubin(link.handle, cubin.data()))
    return fail("nvJitLinkGetLinkedCubin", r);
  return cubin;
}

//===----------------------------------------------------------------------===//
// ptxas
//===----------------------------------------------------------------------===//

/// A private directory under $TMPDIR (or /tmp), removed with the files
/// this process put in it.
class TempDir {
public:
  static Result<TempDir> create() {
    const char *base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base && *base ? base : "/tmp") + "/lq-ptxas-XXXXXX";
    if (!mkdtemp(pattern.data()))
      return Result<TempDir>::failure("cannot create a temporary directory " +
                                      pattern + ": " + std::strerror(errno));
    TempDir dir;
    dir.path = pattern;
    return dir;
  }
  TempDir() = default;
  TempDir(TempDir &&other) noexcept
      : path(std::move(other.path)), files(std::move(other.files)) {
    other.path.clear();
  }
  TempDir &operator=(TempDir &&) = delete;
  ~TempDir() {
    if (path.empty())
      return;
    for (const std::string &file : files)
      unlink(file.c_str());
    rmdir(path.c_str());
  }

  /// A path inside the directory, removed with it.
  std::string file(const char *name) {
    files.push_back(path + "/" + name);
    return files.back();
  }

  std::string path;

private:
  std::vector<std::string> files;
};

Result<std::string> readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Result<std::string>::failure("cannot read " + path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string writeFile(const std::string &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  return out ? "" : "cannot write " + path;
}

/// Runs `argv` with stdout and stderr into `logPath`; its exit status, or
/// an error when it could not run or was killed.
Result<int> run(const std::vector<std::string> &argv,
                const std::string &logPath) {
  using R = Result<int>;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, logPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int error = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr,
                          args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0)
    return R::failure("cannot run " + argv[0] + ": " + std::strerror(error));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return R::failure("waiting for " + argv[0] + ": " + std::strerror(errno));
  if (!WIFEXITED(status))
    return R::failure(argv[0] + " was killed by signal " +
                      std::to_string(WTERMSIG(status)));
  return WEXITSTATUS(status);
}

bool isExecutable(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

/// Why `arch` is not "sm_" then digits, then at most one of 'a' / 'f' (the
/// only spelling the assemblers take), or "".
std::string checkArch(std::string_view arch) {
  std::string_view rest =
      arch.substr(0, 3) == "sm_" ? arch.substr(3) : std::string_view();
  if (!rest.empty() && (rest.back() == 'a' || rest.back() == 'f'))
    rest.remove_suffix(1);
  bool digits = rest.size() >= 2;
  for (char c : rest)
    digits &= c >= '0' && c <= '9';
  if (digits)
    return "";
  return "invalid GPU architecture '" + std::string(arch) +
         "' (expected sm_<digits>, optionally followed by 'a' or 'f')";
}

/// The output of one ptxas run: its exit status, log and cubin.
struct PtxasRun {
  int exitStatus = 0;
  std::string log;
  std::string cubin;
};

/// Runs ptxas with `flags`, and when `ptx` is given, on it (with
/// `-o <cubin> <input>` appended), in a private temporary directory.
Result<PtxasRun> runPtxas(std::vector<std::string> flags,
                          std::optional<std::string_view> ptx) {
  using R = Result<PtxasRun>;
  Result<std::string> ptxas = findPtxas();
  if (!ptxas)
    return R::failure(ptxas.error());
  Result<TempDir> dir = TempDir::create();
  if (!dir)
    return R::failure(dir.error());
  std::string output = dir->file("kernels.cubin");
  std::string logPath = dir->file("ptxas.log");
  std::vector<std::string> argv = {*ptxas};
  argv.insert(argv.end(), flags.begin(), flags.end());
  if (ptx) {
    std::string input = dir->file("kernels.ptx");
    if (std::string error = writeFile(input, *ptx); !error.empty())
      return R::failure(error);
    argv.insert(argv.end(), {"-o", output, input});
  }
  Result<int> status = run(argv, logPath);
  if (!status)
    return R::failure(status.error());
  PtxasRun result;
  result.exitStatus = *status;
  if (Result<std::string> log = readFile(logPath))
    result.log = *log;
  if (ptx && result.exitStatus == 0) {
    Result<std::string> cubin = readFile(output);
    if (!cubin)
      return R::failure("ptxas succeeded but wrote no cubin: " + cubin.error());
    result.cubin = std::move(*cubin);
  }
  return result;
}

Result<std::string> compileWithPtxas(std::string_view ptx,
                                     std::string_view arch) {
  Result<PtxasRun> ran = runPtxas({"-arch=" + std::string(arch)}, ptx);
  if (!ran)
    return Result<std::string>::failure(ran.error());
  if (ran->exitStatus != 0)
    return Result<std::string>::failure(
        "ptxas -arch=" + std::string(arch) + " failed (exit status " +
        std::to_string(ran->exitStatus) + "):\n" + ran->log);
  return std::move(ran->cubin);
}

/// The number just before `suffix` in `line` (as in "64 bytes stack
/// frame"), or -1 when the line does not hold one.
int64_t numberBefore(std::string_view line, std::string_view suffix) {
  size_t at = line.find(suffix);
  if (at == std::string_view::npos)
    return -1;
  size_t end = at;
  while (end > 0 && line[end - 1] == ' ')
    --end;
  size_t begin = end;
  while (begin > 0 && line[begin - 1] >= '0' && line[begin - 1] <= '9')
    --begin;
  int64_t value = -1;
  std::from_chars(line.data() + begin, line.data() + end, value);
  return value;
}

/// The text between the first pair of single quotes after `marker`.
std::string_view quotedAfter(std::string_view line, std::string_view marker) {
  size_t at = line.find(marker);
  if (at == std::string_view::npos)
    return {};
  size_t open = line.find('\'', at + marker.size());
  size_t close = open == std::string_view::npos
                     ? open
                     : line.find('\'', open + 1);
  if (close == std::string_view::npos)
    return {};
  return line.substr(open + 1, close - open - 1);
}

} // namespace

Result<std::string> lq::cuda::findPtxas() {
  if (const char *path = std::getenv("PATH")) {
    std::string_view dirs(path);
    while (!dirs.empty()) {
      size_t colon = dirs.find(':');
      std::string_view dir = dirs.substr(0, colon);
      dirs = colon == std::string_view::npos ? std::string_view()
                                             : dirs.substr(colon + 1);
      if (dir.empty())
        continue;
      std::string candidate = std::string(dir) + "/ptxas";
      if (isExecutable(candidate))
        return candidate;
    }
  }
  std::string fallback = "/usr/local/cuda/bin/ptxas";
  if (isExecutable(fallback))
    return fallback;
  return Result<std::string>::failure(
      "ptxas not found on PATH or in /usr/local/cuda/bin");
}

Result<PtxAssembler> lq::cuda::defaultAssembler() {
  const Result<NvJitLink> &api = nvJitLinkApi();
  if (api)
    return PtxAssembler::NvJitLink;
  Result<std::string> ptxas = findPtxas();
  if (ptxas)
    return PtxAssembler::Ptxas;
  return Result<PtxAssembler>::failure("no PTX assembler: " + api.error() +
                                       "; " + ptxas.error());
}

Result<std::string> lq::cuda::compilePtx(std::string_view ptx,
                                        std::string_view arch,
                                        PtxAssembler assembler) {
  if (std::string error = checkArch(arch); !error.empty())
    return Result<std::string>::failure(error);
  return assembler == PtxAssembler::NvJitLink ? compileWithNvJitLink(ptx, arch)
                                              : compileWithPtxas(ptx, arch);
}

Result<std::string> lq::cuda::compilePtx(std::string_view ptx,
                                        std::string_view arch) {
  Result<PtxAssembler> assembler = defaultAssembler();
  if (!assembler)
    return Result<std::string>::failure(assembler.error());
  return compilePtx(ptx, arch, *assembler);
}

Result<std::string> lq::cuda::assemblerIdentity(PtxAssembler assembler) {
  using R = Result<std::string>;
  if (assembler == PtxAssembler::NvJitLink) {
    const Result<NvJitLink> &api = nvJitLinkApi();
    if (!api)
      return R::failure(api.error());
    unsigned major = 0, minor = 0;
    if (nvJitLinkResult r = api->version(&major, &minor))
      return R::failure("nvJitLinkVersion: " + nvJitLinkResultName(r));
    return "nvJitLink " + std::to_string(major) + "." + std::to_string(minor);
  }
  Result<PtxasRun> ran = runPtxas({"--version"}, std::nullopt);
  if (!ran)
    return R::failure(ran.error());
  if (ran->exitStatus != 0)
    return R::failure("ptxas --version failed: " + ran->log);
  // The last non-empty line names the build, e.g.
  // "Build cuda_13.0.r13.0/compiler.36424714_0".
  std::string last;
  std::istringstream lines(ran->log);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty())
      last = line;
  if (last.empty())
    return R::failure("ptxas --version printed nothing");
  return "ptxas " + last;
}

Result<std::string> lq::cuda::ptxCompilerIdentity() {
  Result<PtxAssembler> assembler = defaultAssembler();
  if (!assembler)
    return Result<std::string>::failure(assembler.error());
  return assemblerIdentity(*assembler);
}

std::vector<KernelResources> lq::cuda::parsePtxasLog(std::string_view log) {
  std::vector<KernelResources> kernels;
  // "Function properties for X" precedes the stack and spill line of X,
  // which may be an entry or a device function it calls.
  std::string propertiesOf;
  auto kernelNamed = [&](std::string_view name) -> KernelResources * {
    for (KernelResources &k : kernels)
      if (k.name == name)
        return &k;
    return nullptr;
  };
  std::istringstream lines{std::string(log)};
  for (std::string text; std::getline(lines, text);) {
    std::string_view line = text;
    if (std::string_view name =
            quotedAfter(line, "Compiling entry function");
        !name.empty()) {
      kernels.push_back({});
      kernels.back().name = std::string(name);
      continue;
    }
    if (size_t at = line.find("Function properties for ");
        at != std::string_view::npos) {
      propertiesOf = std::string(line.substr(at + 24));
      while (!propertiesOf.empty() &&
             (propertiesOf.back() == ' ' || propertiesOf.back() == '\r'))
        propertiesOf.pop_back();
      continue;
    }
    if (numberBefore(line, "bytes stack frame") >= 0) {
      if (KernelResources *k = kernelNamed(propertiesOf)) {
        k->stackBytes = numberBefore(line, "bytes stack frame");
        k->spillStores = std::max<int64_t>(0, numberBefore(line, "bytes spill stores"));
        k->spillLoads = std::max<int64_t>(0, numberBefore(line, "bytes spill loads"));
      }
      continue;
    }
    if (int64_t registers = numberBefore(line, "registers");
        registers >= 0 && line.find("Used ") != std::string_view::npos &&
        !kernels.empty()) {
      KernelResources &k = kernels.back();
      k.registers = int(registers);
      k.sharedBytes = std::max<int64_t>(0, numberBefore(line, "bytes smem"));
      k.localBytes = std::max<int64_t>(0, numberBefore(line, "bytes lmem"));
    }
  }
  return kernels;
}

Result<PtxasReport> lq::cuda::ptxasReport(std::string_view ptx,
                                         std::string_view arch,
                                         const PtxasOptions &options) {
  using R = Result<PtxasReport>;
  if (std::string error = checkArch(arch); !error.empty())
    return R::failure(error);
  std::vector<std::string> flags = {"-arch=" + std::string(arch), "-v"};
  if (options.warnOnSpills)
    flags.push_back("--warn-on-spills");
  if (options.warningsAsErrors)
    flags.push_back("--warning-as-error");
  Result<PtxasRun> ran = runPtxas(flags, ptx);
  if (!ran)
    return R::failure(ran.error());
  std::string command = "ptxas";
  for (const std::string &flag : flags)
    command += " " + flag;
  if (ran->exitStatus != 0)
    return R::failure(command + " failed (exit status " +
                      std::to_string(ran->exitStatus) + "):\n" + ran->log);
  PtxasReport report;
  report.kernels = parsePtxasLog(ran->log);
  report.log = std::move(ran->log);
  return report;
}
