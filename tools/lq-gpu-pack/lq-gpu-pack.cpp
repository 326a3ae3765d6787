//===- lq-gpu-pack.cpp - ahead-of-time packs of generated GPU kernels ------===//
//
// Generates GPU modules and writes them as a kernel pack (see
// lq/Runtime/GpuPack.h) that a machine with only the CUDA driver can load:
//
//   lq-gpu-pack -o pack                         the test and benchmark set
//   lq-gpu-pack -o pack --chip=sm_90a model.mlir  every lq.matmul of a program
//
// With --cubin each module is also assembled (nvJitLink or ptxas) to
// NAME.<chip>.cubin. With --dump-stages the named stages of the pipeline
// (kernels, nvvm, ptx) are written next to each module.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/GpuCompiler.h"
#include "lq/Runtime/PtxCompiler.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <vector>

using namespace lq;
namespace cl = llvm::cl;

namespace {

cl::opt<std::string> input(cl::Positional, cl::desc("[lq program]"),
                           cl::init(""));
cl::opt<std::string> outDir("o", cl::desc("Output directory of the pack"),
                            cl::value_desc("dir"), cl::Required);
cl::list<std::string> chips("chip", cl::desc("Targets: sm_80, sm_90a"),
                            cl::CommaSeparated);
cl::opt<bool> cubin("cubin", cl::desc("Also assemble each module to cubin"));
cl::opt<bool> dumpStages("dump-stages",
                         cl::desc("Write each module's pipeline stages"));

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
      !writeFile(inDir(name + ".info"), gpu::writeModuleInfo(image->info)))
    return false;
  if (cubin) {
    Result<std::string> binary = gpu::compilePtx(image->ptx, chipName);
    if (!binary)
      return fail(name + ": " + binary.error());
    if (!writeFile(inDir(name + ".cubin"), *binary))
      return false;
  }
  index += name + "\n";
  llvm::outs() << name << "\n";
  return true;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv,
                              "lq-gpu-pack: generated GPU kernels as a pack\n");
  if (chips.empty())
    chips.push_back("sm_80"), chips.push_back("sm_90a");

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
    Target target;
    if (chip == "sm_80")
      target = Target::CudaSm80;
    else if (chip == "sm_90a")
      target = Target::CudaSm90a;
    else
      return fail("unknown chip '" + chip + "': expected sm_80 or sm_90a"), 1;
    for (const GpuModuleEntry &entry : entries)
      if (!emit(entry, target, chip.c_str(), index))
        return 1;
  }
  return writeFile(inDir("index.txt"), index) ? 0 : 1;
}
