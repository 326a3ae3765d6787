//===- CudaKernel.cpp - CUDA kernels of the runtime ------------------------===//

#include "CudaKernel.h"

#include "lq/Runtime/Cache.h"
#include "lq/Runtime/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/PtxCompiler.h"

#include "lq/Conversion/GpuKernels.h"

#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Error.h"

#include <mutex>

using namespace lq;
using namespace lq::runtime;

namespace lq::runtime {

class CudaKernel {
public:
  CudaKernel(std::shared_ptr<const std::string> ptx, gpu::GpuModuleInfo info)
      : ptx(std::move(ptx)), info(std::move(info)) {}

  /// The module loaded into the current context, assembled for its device
  /// on first use.
  Result<gpu::GpuLauncher *> launcher() const;

  std::shared_ptr<const std::string> ptx;
  gpu::GpuModuleInfo info;

private:
  mutable std::mutex mutex;
  mutable std::unique_ptr<gpu::GpuLauncher> loaded;
  mutable CUcontext loadedContext = nullptr;
};

} // namespace lq::runtime

namespace {

llvm::Error asError(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The current context, or device 0's primary context made current.
Result<CUcontext> currentContext(gpu::CudaDriver &driver) {
  Result<CUcontext> context = driver.currentContext();
  if (context && *context)
    return context;
  return driver.usePrimaryContext(0);
}

} // namespace

Result<gpu::GpuLauncher *> CudaKernel::launcher() const {
  using R = Result<gpu::GpuLauncher *>;
  Result<gpu::CudaDriver *> driver = gpu::CudaDriver::get();
  if (!driver)
    return R::failure(driver.error());
  Result<CUcontext> context = currentContext(**driver);
  if (!context)
    return R::failure(context.error());
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded && loadedContext == *context)
    return loaded.get();
  Result<gpu::DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return R::failure(device.error());
  Result<std::string> arch = gpu::deviceArch(info, *device);
  if (!arch)
    return R::failure(arch.error());
  Result<std::string> assembler = gpu::ptxCompilerIdentity();
  if (!assembler)
    return R::failure(assembler.error());
  // The cubin depends on the PTX, the architecture and the assembler.
  std::string key = makeCacheKey({{"cubin", info.spec.describe()},
                                  {"ptx", *ptx},
                                  {"arch", *arch},
                                  {"assembler", *assembler}});
  auto entry = CompileCache::global().getOrCompile(
      key, [&]() -> llvm::Expected<CompileResult> {
        Result<std::string> cubin = gpu::compilePtx(*ptx, *arch);
        if (!cubin)
          return asError(cubin.error());
        return CompileResult{std::move(*cubin), *arch};
      });
  if (!entry)
    return R::failure(llvm::toString(entry.takeError()));
  Result<std::unique_ptr<gpu::GpuLauncher>> launcher =
      gpu::GpuLauncher::load(*entry->blob, info);
  if (!launcher)
    return R::failure(launcher.error());
  loaded = std::move(*launcher);
  loadedContext = *context;
  return loaded.get();
}

Result<std::shared_ptr<const CudaKernel>>
lq::runtime::compileCudaKernel(const GemmSpec &spec, bool quantizeOnly,
                               const std::string &lqVersion) {
  using R = Result<std::shared_ptr<const CudaKernel>>;
  const char *chip = spec.target == Target::CudaSm90a ? "sm_90a" : "sm_80";
  Result<std::string> source = gpuKernelSource(spec, quantizeOnly);
  if (!source)
    return R::failure(source.error());
  // The kernel IR is in the key: a generator change changes it even where
  // the spec and the versions do not.
  std::string key = makeCacheKey(
      {{"gpu-kernel", (quantizeOnly ? "quantize " : "") + spec.describe()},
       {"ir", *source},
       {"chip", chip},
       {"ptx-isa", gpuChipFeatures(GpuChip::Sm80)},
       {"lq", lqVersion},
       {"llvm", LLVM_VERSION_STRING}});
  gpu::GpuModuleInfo info;
  auto entry = CompileCache::global().getOrCompile(
      key, [&]() -> llvm::Expected<CompileResult> {
        Result<GpuModuleImage> image =
            quantizeOnly ? compileGpuQuantize(spec.lhs.format, spec.lhs.dtype,
                                              spec.target)
                         : compileGpuGemm(spec);
        if (!image)
          return asError(image.error());
        return CompileResult{std::move(image->ptx),
                             gpu::writeModuleInfo(image->info)};
      });
  if (!entry)
    return R::failure(llvm::toString(entry.takeError()));
  Result<gpu::GpuModuleInfo> parsed = gpu::parseModuleInfo(entry->metadata);
  if (!parsed)
    return R::failure("cached GPU module info: " + parsed.error());
  return std::shared_ptr<const CudaKernel>(
      std::make_shared<CudaKernel>(entry->blob, std::move(*parsed)));
}

Result<LaunchStatus> lq::runtime::launchCudaKernel(const CudaKernel &kernel,
                                                   const LaunchArgs &args) {
  Result<gpu::GpuLauncher *> launcher = kernel.launcher();
  if (!launcher)
    return Result<LaunchStatus>::failure(launcher.error());
  return (*launcher)->launch(args, static_cast<CUstream>(args.cudaStream));
}

Result<QuantizeStatus>
lq::runtime::quantizeWithCudaKernel(const CudaKernel &kernel,
                                    const QuantizeArgs &args) {
  Result<gpu::GpuLauncher *> launcher = kernel.launcher();
  if (!launcher)
    return Result<QuantizeStatus>::failure(launcher.error());
  return (*launcher)->quantize(args, static_cast<CUstream>(args.cudaStream));
}

Result<Target> lq::runtime::currentCudaTarget() {
  Result<gpu::CudaDriver *> driver = gpu::CudaDriver::get();
  if (!driver)
    return Result<Target>::failure(driver.error());
  Result<CUcontext> context = currentContext(**driver);
  if (!context)
    return Result<Target>::failure(context.error());
  Result<gpu::DeviceInfo> device = (*driver)->currentDevice();
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
