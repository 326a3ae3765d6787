//===- PtxCompiler.h - PTX to cubin, and ptxas resource reports -*- C++ -*-===//
//
// Generated GPU kernels are PTX. Before a launch they are assembled for the
// device's architecture, by nvJitLink (libnvJitLink, loaded with dlopen)
// when it is present, else by the toolkit's ptxas run as a subprocess. The
// assembler's identity and version belong in every cache key of a cubin.
//
// ptxasReport() runs `ptxas -v` and parses its resource report per kernel:
// registers, spills, stack, shared and local memory. Tests use it to prove
// that generated kernels assemble cleanly (no spills, no local memory).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_PTXCOMPILER_H
#define LQ_RUNTIME_PTXCOMPILER_H

#include "lq/Runtime/Runtime.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lq::cuda {

enum class PtxAssembler { NvJitLink, Ptxas };

/// nvJitLink if libnvJitLink loads (libnvJitLink.so.13, libnvJitLink.so, or
/// either under /usr/local/cuda/lib64), else ptxas if it is found (PATH,
/// then /usr/local/cuda/bin); an error naming both otherwise.
Result<PtxAssembler> defaultAssembler();

/// Assembles `ptx` into a cubin for `arch` ("sm_80", "sm_90a", "sm_90",
/// ...) with the default assembler. The assembler's log is in the error.
Result<std::string> compilePtx(std::string_view ptx, std::string_view arch);
Result<std::string> compilePtx(std::string_view ptx, std::string_view arch,
                               PtxAssembler assembler);

/// What produced a cubin, for cache keys: "nvJitLink <major>.<minor>" or
/// "ptxas <last line of ptxas --version>".
Result<std::string> assemblerIdentity(PtxAssembler assembler);
/// assemblerIdentity(defaultAssembler()).
Result<std::string> ptxCompilerIdentity();

/// The path of the ptxas executable: the first on PATH, else
/// /usr/local/cuda/bin/ptxas.
Result<std::string> findPtxas();

/// Resources of one kernel as `ptxas -v` reports them; a quantity ptxas
/// does not print is 0.
struct KernelResources {
  std::string name;
  int registers = 0;
  int64_t spillStores = 0;
  int64_t spillLoads = 0;
  /// The kernel's own stack frame.
  int64_t stackBytes = 0;
  /// Static shared memory (dynamic shared memory is a launch argument).
  int64_t sharedBytes = 0;
  /// Local memory ("lmem"), where the ptxas version reports it.
  int64_t localBytes = 0;
};

struct PtxasOptions {
  /// --warn-on-spills: a kernel that spills registers is a warning.
  bool warnOnSpills = true;
  /// --warning-as-error: every warning fails the run.
  bool warningsAsErrors = true;
};

struct PtxasReport {
  /// Entry functions in the order ptxas compiled them.
  std::vector<KernelResources> kernels;
  /// Everything ptxas printed.
  std::string log;
};

/// Runs `ptxas -v -arch=<arch>` (with the flags of `options`) on `ptx` and
/// parses the report. A failed run (a PTX error, or with the default
/// options any spill or other warning) is an error holding ptxas's log.
Result<PtxasReport> ptxasReport(std::string_view ptx, std::string_view arch,
                                const PtxasOptions &options = {});

/// The per-kernel resources in the log of a `ptxas -v` run.
std::vector<KernelResources> parsePtxasLog(std::string_view log);

} // namespace lq::cuda

#endif // LQ_RUNTIME_PTXCOMPILER_H
