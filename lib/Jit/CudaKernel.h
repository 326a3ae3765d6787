//===- CudaKernel.h - CUDA kernels of the runtime --------------*- C++ -*-===//
//
// Internal to LQRuntime: what Runtime::compile and Runtime::quantize do for
// CUDA targets and tensors, behind an interface without cuda.h. PTX is
// generated once per spec (compile cache); on first launch it is assembled
// for the current context's device (compile cache again) and loaded.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_RUNTIME_CUDAKERNEL_H
#define LQ_LIB_RUNTIME_CUDAKERNEL_H

#include "lq/Runtime/Runtime.h"

#include <memory>
#include <string>

namespace lq::runtime {

class CudaKernel;

/// The kernels of `spec` for its CUDA target (with `quantizeOnly`, those
/// that quantize spec.lhs): checks the spec; each kernel is generated and
/// assembled when a launch first needs it (compileGpuKernels).
Result<std::shared_ptr<const CudaKernel>>
compileCudaKernel(const GemmSpec &spec, bool quantizeOnly);

Result<LaunchStatus> launchCudaKernel(const CudaKernel &kernel,
                                      const LaunchArgs &args);
Result<QuantizeStatus> quantizeWithCudaKernel(const CudaKernel &kernel,
                                              const QuantizeArgs &args);

/// The target of the current CUDA context's device (or device 0): sm_90a
/// on compute capability 9.0, sm_80 from 8.0 up; an error without one.
Result<Target> currentCudaTarget();

} // namespace lq::runtime

#endif // LQ_LIB_RUNTIME_CUDAKERNEL_H
