//===- CudaKernel.cpp - CUDA kernels of the runtime ------------------------===//

#include "CudaKernel.h"
#include "lq/Runtime/Checks.h"

#include "lq/Runtime/Cache.h"
#include "lq/Jit/CompilerIdentity.h"
#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/ContextLauncher.h"
#include "lq/Runtime/ParallelFor.h"
#include "lq/Runtime/PtxCompiler.h"

#include "lq/Conversion/Gpu/GpuKernels.h"

#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Error.h"

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
        info(std::move(info)), launcher([this](const cuda::DeviceInfo &d) {
          return load(d);
        }) {}

  GemmSpec spec;
  bool quantizeOnly;
  cuda::GpuModuleInfo info;
  /// The kernels loaded into the current context (on first use in it).
  cuda::ContextLauncher launcher;

private:
  Result<std::unique_ptr<cuda::GpuLauncher>>
  load(const cuda::DeviceInfo &device) const;
};

} // namespace lq::runtime

namespace {

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
  std::string description =
      (quantizeOnly ? "quantize " : "") + spec.describe() + " " + name;
  std::string key = makeCompilerCacheKey(
      {{"gpu-kernel", description},
       {"ir", build->source()},
       {"chip", targetName(spec.target)},
       {"ptx-isa", gpuPtxFeatures(Target::CudaSm80)}});
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

Result<std::unique_ptr<cuda::GpuLauncher>>
CudaKernel::load(const cuda::DeviceInfo &device) const {
  Result<std::string> arch = cuda::deviceArch(info, device);
  if (!arch)
    return arch.takeError();
  return cuda::GpuLauncher::load(
      info, [this, arch = *arch](const std::vector<std::string> &names) {
        return compileGpuKernels(spec, quantizeOnly, names, arch);
      });
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
  Result<cuda::GpuLauncher *> launcher = kernel.launcher.get();
  if (!launcher)
    return Result<LaunchStatus>::failure(launcher.error());
  return (*launcher)->launch(args, static_cast<CUstream>(args.cudaStream));
}

Result<QuantizeStatus>
lq::runtime::quantizeWithCudaKernel(const CudaKernel &kernel,
                                    const QuantizeArgs &args) {
  Result<cuda::GpuLauncher *> launcher = kernel.launcher.get();
  if (!launcher)
    return Result<QuantizeStatus>::failure(launcher.error());
  return (*launcher)->quantize(args, static_cast<CUstream>(args.cudaStream));
}

Result<Target> lq::runtime::currentCudaTarget() {
  return cuda::currentTarget();
}
