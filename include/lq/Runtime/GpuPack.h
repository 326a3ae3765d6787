//===- GpuPack.h - ahead-of-time packs of generated GPU modules -*- C++ -*-===//
//
// A kernel pack is a directory of generated GPU modules, made where the
// generator (and LLVM) lives and carried to GPU machines that have only the
// CUDA driver:
//
//   index.txt     one module name per line
//   NAME.ptx      the module's kernels (GpuAbi.h)
//   NAME.info     writeModuleInfo() text: chip, spec, tiles
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUPACK_H
#define LQ_RUNTIME_GPUPACK_H

#include "lq/Runtime/GpuAbi.h"
#include "lq/Runtime/GpuLauncher.h"

#include <memory>
#include <string>
#include <vector>

namespace lq::gpu {

struct PackModule {
  std::string name;
  GpuModuleInfo info;
  std::string ptx;
};

/// Reads every module index.txt of `dir` names; an error names the file
/// and the problem (a missing file, bad module info, an empty index).
Result<std::vector<PackModule>> readPack(const std::string &dir);

/// How a pack module's PTX reaches the device.
enum class PtxLoading {
  /// Assembled by compilePtx() for deviceArch(): what the runtime does.
  Assemble,
  /// Handed to the driver, which JIT-compiles it.
  DriverJit,
};

/// Loads `module` into the current context.
Result<std::unique_ptr<GpuLauncher>> loadPackModule(const PackModule &module,
                                                    PtxLoading loading);

} // namespace lq::gpu

#endif // LQ_RUNTIME_GPUPACK_H
