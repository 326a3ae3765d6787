//===- HostLaunch.h - host kernels run as one parallel region ---*- C++ -*-===//
//
// A host GEMM launch runs the generated stages (CpuAbi.h) of both operands
// and the product in four phases of one region of the WorkerTeam:
// statistics, quantization, packing, the GEMM, with a barrier between
// phases and every stage's work split into items that threads claim.
// Small launches run on the calling thread alone. Scratch memory comes
// from a WorkspacePool. Runtime::quantize and Runtime::statistics run
// the same way.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_JIT_HOSTLAUNCH_H
#define LQ_JIT_HOSTLAUNCH_H

#include "WorkerTeam.h"
#include "Workspace.h"
#include "lq/Runtime/Checks.h"
#include "lq/Runtime/Runtime.h"
#include "lq/Spec/CpuAbi.h"

#include <memory>

namespace lq::runtime {

class LoadedObject;

/// Stage entry points of one loaded host kernel object.
struct HostStages {
  std::shared_ptr<LoadedObject> object;
  cpu::StatsFn maxAbs[2] = {nullptr, nullptr};
  cpu::StatsFn moments[2] = {nullptr, nullptr};
  cpu::QuantFn quant[2] = {nullptr, nullptr};
  cpu::Pack4Fn pack4 = nullptr;
  cpu::PackAFn packA = nullptr;
  cpu::PackBFn packB = nullptr;
  cpu::GemmFn gemm = nullptr;
};

/// What every host launch of a runtime shares.
struct HostResources {
  explicit HostResources(unsigned threads) : team(threads) {}
  WorkerTeam team;
  WorkspacePool workspaces;
};

/// A launch of the GEMM kernel `stages` of `spec`, whose arguments
/// checkGemmLaunch accepted as `problem`.
Result<LaunchStatus> launchHostGemm(const GemmSpec &spec,
                                    const HostStages &stages,
                                    HostResources &resources,
                                    const LaunchArgs &args,
                                    const GemmProblem &problem);

/// Runtime::quantize of checked arguments with the quantize-only kernel
/// `stages` of its operand.
Result<QuantizeStatus> quantizeOnHost(const HostStages &stages,
                                      HostResources &resources,
                                      const QuantizeArgs &args);

/// Runtime::statistics of a checked f32 or bf16 tensor with the stages of
/// a SAWB quantizer of its dtype (which hold the moments stage).
Result<TensorStatistics> statisticsOnHost(const HostStages &stages,
                                          HostResources &resources,
                                          const TensorRef &input);

} // namespace lq::runtime

#endif // LQ_JIT_HOSTLAUNCH_H
