//===- lq-gpu-pack.cpp - ahead-of-time packs of generated GPU kernels ------===//
//
// Generates GPU modules and writes them as a kernel pack (see
// lq/Runtime/GpuPack.h) that a machine with only the CUDA driver can load:
//
//   lq-gpu-pack -o pack                         the test and benchmark set
//                                               (and linear-step.*: one
//                                               lq.torch.Linear step by the
//                                               host kernels, LinearGolden.h)
//   lq-gpu-pack -o pack --chip=sm_90a model.mlir  every lq.matmul of a program
//
// With --cubin each module is also assembled (nvJitLink or ptxas) to
// NAME.<chip>.cubin. With --dump-stages the named stages of the pipeline
// (kernels, nvvm, ptx) are written next to each module. Every pack gets a
// STAMP (the source commit, uncommitted changes, ABI version, chips, date)
// so that a run elsewhere names what it tested.
//
//===----------------------------------------------------------------------===//

#include "LinearGolden.h"

#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/PtxCompiler.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <ctime>
#include <optional>
#include <vector>

using namespace lq;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory kCategory("lq-gpu-pack options");

cl::opt<std::string> input(cl::Positional, cl::desc("[lq program]"),
                           cl::init(""),
    cl::cat(kCategory));
cl::opt<std::string> outDir("o", cl::desc("Output directory of the pack"),
                            cl::value_desc("dir"), cl::Required,
    cl::cat(kCategory));
cl::list<std::string> chips("chip", cl::desc("Targets: sm_80, sm_90a"),
                            cl::CommaSeparated,
    cl::cat(kCategory));
cl::opt<bool> cubin("cubin", cl::desc("Also assemble each module to cubin"),
    cl::cat(kCategory));
cl::opt<bool> dumpStages("dump-stages",
                         cl::desc("Write each module's pipeline stages"),
    cl::cat(kCategory));

bool fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "lq-gpu-pack") << message << "\n";
  return false;
}

/// Writes `contents` to `path` atomically (a temporary file renamed).
bool writeFile(const std::string &path, std::string_view contents) {
  llvm::Error error = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
    os << contents;
    return llvm::Error::success();
  });
  if (error)
    return fail("cannot write " + path + ": " +
                llvm::toString(std::move(error)));
  return true;
}

std::string inDir(const std::string &name) {
  llvm::SmallString<256> path(outDir);
  llvm::sys::path::append(path, name);
  return std::string(path);
}

bool emit(const GpuModuleEntry &entry, Target target, const char *chipName,
          std::string &index) {
  std::string name = entry.name + "." + chipName;
  GpuStageCallback stage;
  if (dumpStages)
    stage = [&](std::string_view stageName, std::string_view text) {
      writeFile(inDir(name + "." + std::string(stageName) + ".stage"), text);
    };
  GemmSpec spec = entry.spec;
  spec.target = target;
  Result<GpuModuleImage> image =
      entry.quantize
          ? compileGpuQuantize(spec.lhs.format, spec.lhs.dtype, target, stage)
          : compileGpuGemm(spec, stage);
  if (!image)
    return fail(name + ": " + image.error());
  if (!writeFile(inDir(name + ".ptx"), image->ptx) ||
      !writeFile(inDir(name + ".info"), cuda::writeModuleInfo(image->info)))
    return false;
  if (cubin) {
    Result<std::string> binary = cuda::compilePtx(image->ptx, chipName);
    if (!binary)
      return fail(name + ": " + binary.error());
    if (!writeFile(inDir(name + ".cubin"), *binary))
      return false;
  }
  index += name + "\n";
  llvm::outs() << name << "\n";
  return true;
}

/// The source tree this tool was built from: the compiler names this file
/// by its path there. Empty when that path is relative or was remapped.
std::string sourceTree() {
  llvm::StringRef file(__FILE__);
  llvm::StringRef self("tools/lq-gpu-pack/lq-gpu-pack.cpp");
  if (!file.ends_with(self) || !llvm::sys::path::is_absolute(file))
    return "";
  return file.drop_back(self.size()).str();
}

/// What `git -C <tree> <args...>` prints, trimmed; nullopt when git is
/// missing or fails (not a repository, a tree owned by someone else).
std::optional<std::string> git(const std::string &tree,
                               llvm::ArrayRef<llvm::StringRef> args) {
  llvm::ErrorOr<std::string> program = llvm::sys::findProgramByName("git");
  llvm::SmallString<128> output;
  if (!program || tree.empty() ||
      llvm::sys::fs::createTemporaryFile("lq-gpu-pack-git", "txt", output))
    return std::nullopt;
  llvm::FileRemover remover(output);
  std::vector<llvm::StringRef> argv = {*program, "-C", tree};
  argv.insert(argv.end(), args.begin(), args.end());
  // An empty redirect is /dev/null: git must not wait on a terminal.
  std::optional<llvm::StringRef> redirects[] = {
      llvm::StringRef(""), llvm::StringRef(output), llvm::StringRef("")};
  if (llvm::sys::ExecuteAndWait(*program, argv, std::nullopt, redirects,
                                /*SecondsToWait=*/60) != 0)
    return std::nullopt;
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> text =
      llvm::MemoryBuffer::getFile(output);
  if (!text)
    return std::nullopt;
  return (*text)->getBuffer().trim().str();
}

/// The pack's STAMP: the commit and state of the source tree now (a
/// generator built from other sources than these is the caller's to
/// avoid), the ABI, the chips and the time.
cuda::PackStamp makeStamp() {
  cuda::PackStamp stamp;
  std::string tree = sourceTree();
  if (std::optional<std::string> head = git(tree, {"rev-parse", "HEAD"}))
    stamp.commit = *head;
  if (std::optional<std::string> changes =
          git(tree, {"status", "--porcelain", "--untracked-files=no"}))
    stamp.dirty = changes->empty() ? "0" : "1";
  stamp.abi = cuda::kAbiVersion;
  stamp.chips.assign(chips.begin(), chips.end());
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  char date[32] = "unknown";
  if (gmtime_r(&now, &utc))
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &utc);
  stamp.date = date;
  return stamp;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // Only the tool\'s own options in --help, not LLVM\'s internal ones.
  cl::HideUnrelatedOptions(kCategory);
  cl::ParseCommandLineOptions(argc, argv,
                              "lq-gpu-pack: generated GPU kernels as a pack\n");
  if (chips.empty())
    for (Target target : cudaTargets())
      chips.push_back(targetName(target));

  std::vector<GpuModuleEntry> entries;
  if (input.empty()) {
    entries = standardGpuModules();
  } else {
    llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> file =
        llvm::MemoryBuffer::getFileOrSTDIN(input);
    if (!file)
      return fail("cannot read " + input + ": " + file.getError().message()), 1;
    Result<std::vector<GemmSpec>> specs =
        GemmSpec::allFromProgram((*file)->getBuffer().str());
    if (!specs)
      return fail(input + ": " + specs.error()), 1;
    if (specs->empty())
      return fail(input + ": the program has no lq.matmul"), 1;
    for (size_t i = 0; i < specs->size(); ++i)
      entries.push_back({"lq_gemm" + std::to_string(i), (*specs)[i]});
  }

  if (std::error_code ec = llvm::sys::fs::create_directories(outDir))
    return fail("cannot create " + outDir + ": " + ec.message()), 1;
  std::string index;
  for (const std::string &chip : chips) {
    std::optional<Target> target = parseTarget(chip);
    if (!target || !isCudaTarget(*target))
      return fail("unknown chip '" + chip + "': expected " + cudaTargetNames()),
             1;
    for (const GpuModuleEntry &entry : entries)
      if (!emit(entry, *target, chip.c_str(), index))
        return 1;
  }
  if (input.empty())
    if (Status golden = writeLinearGolden(outDir); !golden)
      return fail(golden.error()), 1;
  bool written = writeFile(inDir("index.txt"), index) &&
                 writeFile(inDir("STAMP"), cuda::writePackStamp(makeStamp()));
  return written ? 0 : 1;
}
