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

#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/ThreadPool.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lq::runtime {

struct Part;

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
  };
  KernelModule build(const GemmSpec &spec, bool quantizeOnly) const;

  /// Lowers and compiles a kernel module to objects: its stage functions
  /// split into at most `maxParts` parts (and at most two per hardware
  /// thread), each lowered, optimized and compiled to one object on a
  /// thread of its own. The module's stage functions move into the parts.
  /// With `dumpDir`, every stage's IR is written there.
  Result<std::vector<std::string>> compile(KernelModule &kernels,
                                           llvm::StringRef dumpDir,
                                           llvm::StringRef name,
                                           unsigned maxParts = ~0u);

  /// The objects of one kernel as one blob (what the compile cache holds),
  /// and back.
  static std::string packObjects(llvm::ArrayRef<std::string> objects);
  static Result<std::vector<llvm::StringRef>>
  unpackObjects(llvm::StringRef blob);

  /// Loads the objects of a blob of packObjects' into one JIT dylib.
  Result<std::shared_ptr<LoadedObject>>
  load(std::shared_ptr<const std::string> blob, llvm::StringRef name);

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
  explicit HostJit(llvm::orc::JITTargetMachineBuilder builder)
      : machineBuilder(std::move(builder)) {}
  /// The stages of `module` moved into parts, each with a target machine.
  Result<std::vector<Part>> makeParts(mlir::ModuleOp module,
                                      unsigned maxParts);
  std::unique_ptr<llvm::orc::LLJIT> jit;
  /// Describes this JIT's CPU; each part compiles with a target machine of
  /// its own, made by `machineBuilder`.
  std::unique_ptr<llvm::TargetMachine> targetMachine;
  llvm::orc::JITTargetMachineBuilder machineBuilder;
  /// The threads that compile parts, and those that MLIR's own parallel
  /// work in the kernels' context runs on (one each per hardware thread,
  /// made on first use). Apart, so that a part waiting for MLIR's work
  /// never runs another part meanwhile.
  std::unique_ptr<llvm::DefaultThreadPool> threads, mlirThreads;
  std::string cpuName, featureString, tripleString;
  CpuDotProduct dot = CpuDotProduct::Avx2;
  std::mutex mutex;
  unsigned dylibCount = 0;
  /// Loaded objects refer to their cached blobs until linked.
  std::vector<std::shared_ptr<const std::string>> keepAlive;
};

} // namespace lq::runtime

#endif // LQ_LIB_RUNTIME_HOSTJIT_H
