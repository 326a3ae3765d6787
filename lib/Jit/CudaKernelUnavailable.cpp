//===- CudaKernelUnavailable.cpp - CUDA targets in a build without CUDA ---===//
//
// Built instead of CudaKernel.cpp when cuda.h was not found at configure
// time: CUDA targets and tensors are then errors that say why.
//
//===----------------------------------------------------------------------===//

#include "CudaKernel.h"

#include "lq/Jit/GpuCompiler.h"

using namespace lq;
using namespace lq::runtime;

namespace {
constexpr const char *kNoCuda =
    "this lq was built without the CUDA driver header (cuda.h): reconfigure "
    "with LQ_CUDA_INCLUDE set to its directory for sm_80/sm_90a kernels";
} // namespace

namespace lq::runtime {
class CudaKernel {};
} // namespace lq::runtime

Result<std::shared_ptr<const CudaKernel>>
lq::runtime::compileCudaKernel(const GemmSpec &, bool) {
  return Result<std::shared_ptr<const CudaKernel>>::failure(kNoCuda);
}

Result<std::vector<std::string>>
lq::compileGpuKernels(const GemmSpec &, bool, const std::vector<std::string> &,
                      const std::string &) {
  return Result<std::vector<std::string>>::failure(kNoCuda);
}

Result<LaunchStatus> lq::runtime::launchCudaKernel(const CudaKernel &,
                                                   const LaunchArgs &) {
  return Result<LaunchStatus>::failure(kNoCuda);
}

Result<QuantizeStatus>
lq::runtime::quantizeWithCudaKernel(const CudaKernel &, const QuantizeArgs &) {
  return Result<QuantizeStatus>::failure(kNoCuda);
}

Result<Target> lq::runtime::currentCudaTarget() {
  return Result<Target>::failure(kNoCuda);
}
