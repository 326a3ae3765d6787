//===- CudaKernel.cpp - CUDA kernels of the runtime ------------------------===//

#include "CudaKernel.h"
#include "lq/Runtime/Checks.h"

#include "lq/Runtime/Cache.h"
#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/ParallelFor.h"
#include "lq/Runtime/PtxCompiler.h"

#include "lq/Conversion/Gpu/GpuKernels.h"

#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Error.h"

#include <mutex>

using namespace lq;
using namespace lq::runtime;

namespace lq::runtime {

/// A CUDA target's kernels of one spec. Nothing is generated up front: a
/// launch asks for the two or three kernels it runs, and each is generated,
/// lowered to PTX and assembled for the device on its first use, in
/// parallel with the others of the same launch, each cached on its own.
class CudaKernel {
public:
  CudaKernel(GemmSpec spec, bool quantizeOnly, cuda::GpuModuleInfo info)
      : spec(std::move(spec)), quantizeOnly(quantizeOnly),
        info(std::move(info)) {}

  /// The kernels loaded into the current context (on first use in it).
  Result<cuda::GpuLauncher *> launcher() const;

  GemmSpec spec;
  bool quantizeOnly;
  cuda::GpuModuleInfo info;

private:
  mutable std::mutex mutex;
  mutable std::unique_ptr<cuda::GpuLauncher> loaded;
  mutable CUcontext loadedContext = nullptr;
};

} // namespace lq::runtime

namespace {

/// The current context, or device 0's primary context made current.
Result<CUcontext> currentContext(cuda::CudaDriver &driver) {
  Result<CUcontext> context = driver.currentContext();
  if (context && *context)
    return context;
  return driver.usePrimaryContext(0);
}


/// The PTX of kernel `name` of the module of `spec` (or of its
/// quantizer), from the compile cache or generated. The generated IR is in
/// the key: a generator change changes it even where the spec and the
/// versions do not.
Result<std::shared_ptr<const std::string>>
kernelPtx(const GemmSpec &spec, bool quantizeOnly, const std::string &name) {
  using R = Result<std::shared_ptr<const std::string>>;
  Result<GpuKernelBuild> build =
      GpuKernelBuild::create(spec, quantizeOnly, {name});
  if (!build)
    return R::failure(build.error());
  std::string key = makeCacheKey(
      {{"gpu-kernel",
        (quantizeOnly ? "quantize " : "") + spec.describe() + " " + name},
       {"ir", build->source()},
       {"chip", targetName(spec.target)},
       {"ptx-isa", gpuPtxFeatures(Target::CudaSm80)},
       {"lq", lqVersion()},
       {"llvm", LLVM_VERSION_STRING}});
  auto entry = CompileCache::global().getOrCompile(
      key, [&]() -> Result<CompileResult> {
        Result<std::string> ptx = build->ptx();
        if (!ptx)
          return ptx.takeError();
        return CompileResult{std::move(*ptx), name};
      });
  if (!entry)
    return entry.takeError();
  return entry->blob;
}

/// Kernel `name` assembled for `arch` by `assembler`.
Result<std::string> kernelCubin(const GemmSpec &spec, bool quantizeOnly,
                                const std::string &name,
                                const std::string &arch,
                                const std::string &assembler) {
  Result<std::shared_ptr<const std::string>> ptx =
      kernelPtx(spec, quantizeOnly, name);
  if (!ptx)
    return Result<std::string>::failure(ptx.error());
  // The cubin depends on the PTX, the architecture and the assembler.
  std::string key = makeCacheKey({{"cubin", spec.describe() + " " + name},
                                  {"ptx", **ptx},
                                  {"arch", arch},
                                  {"assembler", assembler}});
  auto entry = CompileCache::global().getOrCompile(
      key, [&]() -> Result<CompileResult> {
        Result<std::string> cubin = cuda::compilePtx(**ptx, arch);
        if (!cubin)
          return cubin.takeError();
        return CompileResult{std::move(*cubin), arch};
      });
  if (!entry)
    return entry.takeError();
  return *entry->blob;
}

} // namespace

Result<cuda::GpuLauncher *> CudaKernel::launcher() const {
  using R = Result<cuda::GpuLauncher *>;
  Result<cuda::CudaDriver *> driver = cuda::CudaDriver::get();
  if (!driver)
    return R::failure(driver.error());
  Result<CUcontext> context = currentContext(**driver);
  if (!context)
    return R::failure(context.error());
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded && loadedContext == *context)
    return loaded.get();
  Result<cuda::DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return R::failure(device.error());
  Result<std::string> arch = cuda::deviceArch(info, *device);
  if (!arch)
    return R::failure(arch.error());
  Result<std::unique_ptr<cuda::GpuLauncher>> launcher = cuda::GpuLauncher::load(
      info, [this, arch = *arch](const std::vector<std::string> &names) {
        return compileGpuKernels(spec, quantizeOnly, names, arch);
      });
  if (!launcher)
    return R::failure(launcher.error());
  loaded = std::move(*launcher);
  loadedContext = *context;
  return loaded.get();
}

Result<std::vector<std::string>>
lq::compileGpuKernels(const GemmSpec &spec, bool quantizeOnly,
                      const std::vector<std::string> &names,
                      const std::string &arch) {
  using R = Result<std::vector<std::string>>;
  Result<std::string> assembler = cuda::ptxCompilerIdentity();
  if (!assembler)
    return R::failure(assembler.error());
  // One thread per kernel: a launch's kernels cost the slowest of them,
  // not their sum.
  std::vector<Result<std::string>> results(
      names.size(), Result<std::string>::failure("not compiled"));
  parallelFor(names.size(), unsigned(names.size()), [&](size_t i) {
    results[i] = kernelCubin(spec, quantizeOnly, names[i], arch, *assembler);
  });
  std::vector<std::string> cubins;
  for (Result<std::string> &r : results) {
    if (!r)
      return R::failure(r.error());
    cubins.push_back(std::move(*r));
  }
  return cubins;
}

Result<std::shared_ptr<const CudaKernel>>
lq::runtime::compileCudaKernel(const GemmSpec &spec, bool quantizeOnly) {
  using R = Result<std::shared_ptr<const CudaKernel>>;
  // Checks the spec and gives the launcher its tiles; the kernels
  // themselves are made when a launch first needs them.
  Result<cuda::GpuModuleInfo> info = gpuModuleInfo(spec, quantizeOnly);
  if (!info)
    return R::failure(info.error());
  return std::shared_ptr<const CudaKernel>(
      std::make_shared<CudaKernel>(spec, quantizeOnly, std::move(*info)));
}

Result<LaunchStatus> lq::runtime::launchCudaKernel(const CudaKernel &kernel,
                                                   const LaunchArgs &args) {
  Result<cuda::GpuLauncher *> launcher = kernel.launcher();
  if (!launcher)
    return Result<LaunchStatus>::failure(launcher.error());
  return (*launcher)->launch(args, static_cast<CUstream>(args.cudaStream));
}

Result<QuantizeStatus>
lq::runtime::quantizeWithCudaKernel(const CudaKernel &kernel,
                                    const QuantizeArgs &args) {
  Result<cuda::GpuLauncher *> launcher = kernel.launcher();
  if (!launcher)
    return Result<QuantizeStatus>::failure(launcher.error());
  return (*launcher)->quantize(args, static_cast<CUstream>(args.cudaStream));
}

Result<Target> lq::runtime::currentCudaTarget() {
  Result<cuda::CudaDriver *> driver = cuda::CudaDriver::get();
  if (!driver)
    return Result<Target>::failure(driver.error());
  Result<CUcontext> context = currentContext(**driver);
  if (!context)
    return Result<Target>::failure(context.error());
  Result<cuda::DeviceInfo> device = (*driver)->currentDevice();
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
