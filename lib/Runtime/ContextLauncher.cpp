//===- ContextLauncher.cpp - a GPU module per CUDA context ----------------===//

#include "lq/Runtime/ContextLauncher.h"

using namespace lq;
using namespace lq::cuda;

Result<CUcontext> lq::cuda::currentOrPrimaryContext(CudaDriver &driver) {
  Result<CUcontext> context = driver.currentContext();
  if (context && *context)
    return context;
  return driver.usePrimaryContext(0);
}

Result<Target> lq::cuda::currentTarget() {
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return Result<Target>::failure(driver.error());
  LQ_TRY(currentOrPrimaryContext(**driver));
  Result<DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return Result<Target>::failure(device.error());
  if (device->computeMajor == 9 && device->computeMinor == 0)
    return Target::CudaSm90a;
  if (device->computeMajor >= 8)
    return Target::CudaSm80;
  return Result<Target>::failure("CUDA device " + device->name +
                                 " (compute capability " +
                                 std::to_string(device->computeMajor) + "." +
                                 std::to_string(device->computeMinor) +
                                 ") is older than sm_80");
}

Result<GpuLauncher *> ContextLauncher::get() const {
  using R = Result<GpuLauncher *>;
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return R::failure(driver.error());
  Result<CUcontext> context = currentOrPrimaryContext(**driver);
  if (!context)
    return R::failure(context.error());
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded && loadedContext == *context)
    return loaded.get();
  Result<DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return R::failure(device.error());
  Result<std::unique_ptr<GpuLauncher>> launcher = loader(*device);
  if (!launcher)
    return R::failure(launcher.error());
  loaded = std::move(*launcher);
  loadedContext = *context;
  return loaded.get();
}
