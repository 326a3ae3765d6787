//===- Aot.h - ahead-of-time host kernel objects ----------------*- C++ -*-===//
//
// The host CPU kernel stages of a GEMM as a relocatable ELF object that a
// program links like any other: no LLVM at run time. lq-compile writes them
// with a C header and a JSON manifest.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_AOT_H
#define LQ_RUNTIME_AOT_H

#include "lq/Runtime/Runtime.h"

#include <string>
#include <vector>

namespace lq {

/// One stage function of a host object: its C symbol and parameters
/// ("memref<i8>" for a memref descriptor pointer, "i64", "i32", "f32").
struct HostStage {
  std::string symbol;
  std::vector<std::string> params;
};

struct HostObject {
  std::string object;
  std::string triple, cpu, features;
  std::vector<HostStage> stages;
};

/// The CPU host objects target unless told otherwise: x86-64 with AVX2
/// (x86-64-v3: Haswell, Zen and later), so that an object built on one
/// machine runs on the others lq supports.
constexpr const char *kPortableCpu = "x86-64-v3";

/// The stages of `spec` (docs/runtime.md, "Host kernels") compiled for
/// `cpu` (an LLVM CPU name, or "host" for this machine's CPU and features),
/// each stage's C interface named `_mlir_ciface_<prefix>_<stage>` (e.g.
/// `_mlir_ciface_lq_gemm0_quant_lhs`).
Result<HostObject> compileHostObject(const GemmSpec &spec,
                                     const std::string &prefix,
                                     const std::string &cpu = kPortableCpu);

} // namespace lq

#endif // LQ_RUNTIME_AOT_H
