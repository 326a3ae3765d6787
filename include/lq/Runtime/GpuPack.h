//===- GpuPack.h - ahead-of-time packs of generated GPU modules -*- C++ -*-===//
//
// A kernel pack is a directory of generated GPU modules, made where the
// generator (and LLVM) lives and carried to GPU machines that have only the
// CUDA driver:
//
//   index.txt     one module name per line
//   NAME.ptx      the module's kernels (GpuAbi.h)
//   NAME.info     writeModuleInfo() text: chip, spec, tiles
//   STAMP         writePackStamp() text: what made the pack (source commit,
//                 uncommitted changes, ABI version, chips, date)
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUPACK_H
#define LQ_RUNTIME_GPUPACK_H

#include "lq/Spec/GpuAbi.h"
#include "lq/Runtime/GpuLauncher.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lq::cuda {

/// Where a pack comes from, so that a run on another machine can name the
/// source it tested and refuse a pack of another ABI.
struct PackStamp {
  /// `git rev-parse HEAD` of the generator's source tree, or "unknown".
  std::string commit = "unknown";
  /// "1" when tracked files of that tree had uncommitted changes, "0" when
  /// not, "unknown" without git.
  std::string dirty = "unknown";
  /// kAbiVersion of the generator.
  int abi = 0;
  /// The targets the pack holds modules for ("sm_80", "sm_90a").
  std::vector<std::string> chips;
  /// When the pack was made: UTC, ISO 8601 ("2025-01-31T12:00:00Z").
  std::string date;
};

/// key=value lines: commit, dirty, abi, chips (comma-separated), date.
std::string writePackStamp(const PackStamp &stamp);
/// The stamp of writePackStamp() text; an error names the line and the
/// problem (a missing, repeated or unknown key, a bad value). The ABI
/// version is not compared here.
Result<PackStamp> parsePackStamp(std::string_view text);
/// Reads DIR/STAMP: an error when it is missing (a pack of an older
/// lq-gpu-pack), malformed, or of another ABI version than kAbiVersion.
Result<PackStamp> readPackStamp(const std::string &dir);

struct PackModule {
  std::string name;
  GpuModuleInfo info;
  std::string ptx;
};

/// Reads every module index.txt of `dir` names; an error names the file
/// and the problem (a missing file or STAMP, a pack of another ABI, bad
/// module info, a module of a chip the stamp does not list, an empty
/// index).
Result<std::vector<PackModule>> readPack(const std::string &dir);

/// How a pack module's PTX reaches the device.
enum class PtxLoading {
  /// Assembled by compilePtx() for deviceArch(): what the runtime does.
  Assemble,
  /// Handed to the driver, which JIT-compiles it.
  DriverJit,
};

/// The cubin of `module` for `device`: its PTX assembled by compilePtx()
/// for deviceArch(). No context needed, so that callers may assemble
/// several modules at once.
Result<std::string> assemblePackModule(const PackModule &module,
                                       const DeviceInfo &device);

/// Loads `module` into the current context.
Result<std::unique_ptr<GpuLauncher>> loadPackModule(const PackModule &module,
                                                    PtxLoading loading);

} // namespace lq::cuda

#endif // LQ_RUNTIME_GPUPACK_H
