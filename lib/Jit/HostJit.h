//===- HostJit.h - MLIR kernel modules to host machine code -----*- C++ -*-===//
//
// Internal to the runtime. Compilation and loading are separate steps that
// meet at an ELF object: a cold compile lowers MLIR to LLVM IR, optimizes
// and emits an object; a cache hit (memory or disk) only loads the object.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_RUNTIME_HOSTJIT_H
#define LQ_LIB_RUNTIME_HOSTJIT_H

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Runtime/Runtime.h"

#include "mlir/IR/MLIRContext.h"

#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lq::runtime {


/// Symbols of one loaded object; keeps its code alive.
class LoadedObject {
public:
  /// The address of the C interface of stage `name` (e.g. "lq_gemm").
  Result<void *> lookup(llvm::StringRef name) const;

private:
  friend class HostJit;
  LoadedObject(llvm::orc::LLJIT &jit, llvm::orc::JITDylib &dylib)
      : jit(jit), dylib(dylib) {}
  llvm::orc::LLJIT &jit;
  llvm::orc::JITDylib &dylib;
};

class HostJit {
public:
  /// A JIT for this machine's CPU ("host"), or for the CPU named `cpu`
  /// (an LLVM CPU name such as "x86-64-v3", "znver3"): objects then run on
  /// every machine with that CPU's features. Feature flags may follow the
  /// name ("x86-64-v3,+avxvnni"). The kernels need AVX2: a CPU without it
  /// is an error.
  static Result<std::unique_ptr<HostJit>> create(llvm::StringRef cpu = "host");

  /// The CPU kernel module of a GEMM (or, with `quantizeOnly`, of the
  /// standalone quantizer of `spec.lhs`), in its own context, with the
  /// micro-kernel this JIT's CPU runs best.
  struct KernelModule {
    std::unique_ptr<mlir::MLIRContext> context;
    mlir::OwningOpRef<mlir::ModuleOp> module;
    /// The module printed: what the cache key hashes.
    std::string text;
  };
  KernelModule build(const GemmSpec &spec, bool quantizeOnly) const;

  /// Lowers and compiles a kernel module to an object. With `dumpDir`,
  /// every stage's IR is written there.
  Result<std::string> compile(KernelModule &kernels, llvm::StringRef dumpDir,
                              llvm::StringRef name);

  Result<std::shared_ptr<LoadedObject>>
  load(std::shared_ptr<const std::string> object, llvm::StringRef name);

  /// The compilation options an object depends on (part of the cache key).
  static std::string options();

  /// Host CPU name and feature string the objects are compiled for.
  const std::string &cpu() const { return cpuName; }
  const std::string &features() const { return featureString; }
  const std::string &triple() const { return tripleString; }
  /// The GEMM micro-kernel's dot product, from the CPU's features: VNNI
  /// where it has it (AVX-512 VNNI first), else AVX2.
  CpuDotProduct dotProduct() const { return dot; }
  /// Success when objects of this JIT run on this machine: its CPU has no
  /// feature this machine lacks.
  Status checkRunsHere() const;

private:
  HostJit() = default;
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::unique_ptr<llvm::TargetMachine> targetMachine;
  std::string cpuName, featureString, tripleString;
  CpuDotProduct dot = CpuDotProduct::Avx2;
  std::mutex mutex;
  unsigned dylibCount = 0;
  /// Loaded objects refer to their cached blobs until linked.
  std::vector<std::shared_ptr<const std::string>> keepAlive;
};

} // namespace lq::runtime

#endif // LQ_LIB_RUNTIME_HOSTJIT_H
