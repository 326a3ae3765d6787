//===- Plot.cpp - training curves as a PNG, drawn by matplotlib -----------===//
//
// lq-train hands its CSV to lq-plot, a matplotlib script that the build puts
// next to the lq-train binary (build/bin, and the install's bin): the plot
// is then a maintained library's, and it can be redrawn from a kept CSV.
//
//===----------------------------------------------------------------------===//

#include "Plot.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"

#include <optional>

namespace lq::train {
namespace {

// lq-plot's exit status when matplotlib cannot be imported.
constexpr int kNoMatplotlib = 3;

// Debian's python3-matplotlib is installed for /usr/bin/python3, and a
// python3 found first on PATH (a virtual environment, say) may not see it:
// /usr/bin comes first.
std::optional<std::string> findPython() {
  llvm::StringRef debian[] = {"/usr/bin"};
  if (llvm::ErrorOr<std::string> p =
          llvm::sys::findProgramByName("python3", debian))
    return *p;
  if (llvm::ErrorOr<std::string> p = llvm::sys::findProgramByName("python3"))
    return *p;
  return std::nullopt;
}

std::string missingNote(llvm::StringRef what, const std::string &csvPath) {
  return (what + " not found (Debian: apt install python3-matplotlib); the "
                 "curves are in " + csvPath)
      .str();
}

} // namespace

Result<PlotOutcome> writePlot(const std::string &csvPath,
                              const std::string &pngPath) {
  // lq-plot sits next to this binary; the address of a function in it lets
  // getMainExecutable find the binary where argv[0] is not a path.
  static int anchor;
  std::string self = llvm::sys::fs::getMainExecutable("lq-train", &anchor);
  llvm::SmallString<256> script(llvm::sys::path::parent_path(self));
  llvm::sys::path::append(script, "lq-plot");
  if (self.empty() || !llvm::sys::fs::exists(script))
    return Result<PlotOutcome>::failure(
        "plot: " + std::string(script) +
        " not found: lq-plot belongs next to lq-train (the build and the "
        "install put it there); the curves are in " + csvPath);

  std::optional<std::string> python = findPython();
  if (!python)
    return PlotOutcome{false, missingNote("python3", csvPath)};

  // lq-plot's messages are kept apart so that a missing matplotlib becomes
  // one note of lq-train's and another failure becomes lq-train's error.
  llvm::SmallString<128> errPath;
  if (llvm::sys::fs::createTemporaryFile("lq-plot", "txt", errPath))
    return Result<PlotOutcome>::failure(
        "plot: cannot create a temporary file for lq-plot's messages");
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, std::nullopt,
                                                llvm::StringRef(errPath)};
  llvm::StringRef args[] = {*python, script, csvPath, pngPath};
  std::string execError;
  int rc = llvm::sys::ExecuteAndWait(*python, args, /*Env=*/std::nullopt,
                                     redirects, /*SecondsToWait=*/0,
                                     /*MemoryLimit=*/0, &execError);
  std::string messages;
  if (llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> buf =
          llvm::MemoryBuffer::getFile(errPath))
    messages = llvm::StringRef((*buf)->getBuffer()).trim().str();
  llvm::sys::fs::remove(errPath);

  if (rc == 0)
    return PlotOutcome{true, ""};
  if (rc == kNoMatplotlib)
    return PlotOutcome{false, missingNote("matplotlib", csvPath)};
  if (rc < 0)
    return Result<PlotOutcome>::failure("plot: cannot run " + *python + " " +
                                        std::string(script) + ": " +
                                        execError);
  return Result<PlotOutcome>::failure(
      "plot: " + std::string(script) + " failed (exit status " +
      std::to_string(rc) + ")" + (messages.empty() ? "" : ":\n" + messages));
}

} // namespace lq::train
