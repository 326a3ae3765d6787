//===- PackRuntime.cpp - the Runtime API over a kernel pack ---------------===//
//
// The Runtime of a build without LLVM (LQ_GPU_ONLY): GPU machines that have
// the CUDA driver but not the compiler serve the public Runtime API
// (Runtime.h) from a kernel pack made by lq-gpu-pack where the compiler
// lives. Runtime::compile of a CUDA spec finds the pack module of that spec
// and chip; its PTX is assembled and loaded on first launch in each
// context, as the JIT runtime does with PTX it generates. Host kernels and
// lq programs need the compiler: they are errors that say so.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Checks.h"
#include "lq/Runtime/ContextLauncher.h"
#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/Runtime.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>

using namespace lq;

namespace {

constexpr const char *kNoCompiler =
    "this lq is the GPU-only build (no LLVM): it has no host kernels and no "
    "compiler; host tensors and lq programs need the full build";

/// The pack directory: $LQ_GPU_PACK.
Result<std::string> packDirectory() {
  const char *dir = std::getenv("LQ_GPU_PACK");
  if (!dir || !*dir)
    return Result<std::string>::failure(
        "this lq is the GPU-only build (no LLVM): it serves GPU kernels from "
        "a kernel pack; set LQ_GPU_PACK to a directory made by lq-gpu-pack");
  return std::string(dir);
}

std::string moduleKey(const GemmSpec &spec, bool quantizeOnly) {
  return (quantizeOnly ? "quantize " : "") + spec.describe() + " " +
         targetName(spec.target);
}

} // namespace

namespace lq {

/// One pack module, loaded into each context that launches it.
class KernelImpl {
public:
  explicit KernelImpl(const cuda::PackModule &module)
      : spec(module.info.spec), launcher([&module](const cuda::DeviceInfo &) {
          return cuda::loadPackModule(module, cuda::PtxLoading::Assemble);
        }) {}

  Result<LaunchStatus> launch(const LaunchArgs &args) const {
    Result<cuda::GpuLauncher *> loaded = launcher.get();
    if (!loaded)
      return loaded.takeError();
    return (*loaded)->launch(args, static_cast<CUstream>(args.cudaStream));
  }

  Result<QuantizeStatus> quantize(const QuantizeArgs &args) const {
    Result<cuda::GpuLauncher *> loaded = launcher.get();
    if (!loaded)
      return loaded.takeError();
    return (*loaded)->quantize(args, static_cast<CUstream>(args.cudaStream));
  }

  GemmSpec spec;

private:
  cuda::ContextLauncher launcher;
};

class RuntimeImpl {
public:
  Result<std::shared_ptr<const KernelImpl>> compile(const GemmSpec &spec,
                                                    bool quantizeOnly);

  std::mutex mutex;
  /// The pack, read on first use (modules live as long as the runtime).
  std::string packDir;
  std::vector<cuda::PackModule> modules;
  std::unordered_map<std::string, std::shared_ptr<const KernelImpl>> loaded;
  CacheCounters counters;

private:
  Status readPack();
};

} // namespace lq

Status RuntimeImpl::readPack() {
  if (!modules.empty())
    return Done{};
  Result<std::string> dir = packDirectory();
  if (!dir)
    return dir.takeError();
  Result<std::vector<cuda::PackModule>> read = cuda::readPack(*dir);
  if (!read)
    return Error{"kernel pack " + *dir + " (LQ_GPU_PACK): " + read.error()};
  packDir = *dir;
  modules = std::move(*read);
  return Done{};
}

Result<std::shared_ptr<const KernelImpl>>
RuntimeImpl::compile(const GemmSpec &spec, bool quantizeOnly) {
  using R = Result<std::shared_ptr<const KernelImpl>>;
  if (spec.target == Target::HostCPU)
    return R::failure(kNoCompiler);
  std::lock_guard<std::mutex> lock(mutex);
  std::string key = moduleKey(spec, quantizeOnly);
  if (auto it = loaded.find(key); it != loaded.end()) {
    ++counters.memoryHits;
    return it->second;
  }
  LQ_TRY(readPack());
  for (const cuda::PackModule &module : modules) {
    if (moduleKey(module.info.spec, module.info.quantizeOnly) != key)
      continue;
    ++counters.compiles;
    auto impl = std::make_shared<const KernelImpl>(module);
    loaded.emplace(key, impl);
    return std::shared_ptr<const KernelImpl>(impl);
  }
  return R::failure("the kernel pack " + packDir + " holds no module of " +
                    key + ": make a pack that does (lq-gpu-pack PROGRAM "
                    "packs the lq.matmul ops of an lq program)");
}

const GemmSpec &Kernel::spec() const { return impl->spec; }

Result<LaunchStatus> Kernel::launch(const LaunchArgs &args) const {
  return impl->launch(args);
}

Runtime::Runtime() : impl(std::make_unique<RuntimeImpl>()) {}
Runtime::~Runtime() = default;

Runtime &Runtime::get() {
  static Runtime runtime;
  return runtime;
}

Result<Kernel> Runtime::compile(const GemmSpec &spec) {
  LQ_TRY(validateSpec(spec));
  auto impl = this->impl->compile(spec, /*quantizeOnly=*/false);
  if (!impl)
    return impl.takeError();
  return Kernel(*impl);
}

Result<Kernel> Runtime::compileForCpu(const GemmSpec &, std::string_view) {
  return Error{kNoCompiler};
}

Result<Kernel> Runtime::compileProgram(std::string_view) {
  return Error{kNoCompiler};
}

Result<TensorStatistics> Runtime::statistics(const TensorRef &) {
  return Error{kNoCompiler};
}

Result<QuantizeStatus> Runtime::quantize(const QuantizeArgs &args) {
  if (args.input.device != Device::CUDA || args.output.device != Device::CUDA)
    return Error{kNoCompiler};
  // The spec of Runtime::quantize's quantizer modules (lq-gpu-pack's
  // quant_* entries).
  Result<Target> target = cuda::currentTarget();
  if (!target)
    return target.takeError();
  GemmSpec spec;
  spec.lhs = {args.format, args.input.dtype, false};
  spec.rhs = {Format::SInt4, DType::F32, false};
  spec.hindsight = args.maxEstimate.has_value();
  spec.target = *target;
  auto kernel = impl->compile(spec, /*quantizeOnly=*/true);
  if (!kernel)
    return kernel.takeError();
  return (*kernel)->quantize(args);
}

CacheCounters Runtime::cacheCounters() const {
  std::lock_guard<std::mutex> lock(impl->mutex);
  return impl->counters;
}

void Runtime::clearMemoryCache() {
  std::lock_guard<std::mutex> lock(impl->mutex);
  impl->loaded.clear();
}

Result<Target> Runtime::cudaTarget() const { return cuda::currentTarget(); }

std::string Runtime::hostDescription() const {
  return std::string("unavailable: ") + kNoCompiler;
}

Result<std::string> Runtime::cpuDotProduct(std::string_view) const {
  return Error{kNoCompiler};
}

unsigned Runtime::threads() const { return 1; }

// No host kernels, so no worker team: the calling thread does it all.
void Runtime::parallelFor(
    int64_t count, int64_t,
    const std::function<void(int64_t begin, int64_t end)> &body) {
  if (count > 0)
    body(0, count);
}
