//===- Runtime.cpp - compile, cache and launch lq kernels -----------------===//

#include "lq/Runtime/Runtime.h"

#include "CudaKernel.h"
#include "HostJit.h"
#include "HostLaunch.h"
#include "lq/Jit/CompilerIdentity.h"
#include "lq/Runtime/Checks.h"
#include "lq/Spec/CpuAbi.h"
#include "lq/Numerics/Types.h"
#include "lq/Runtime/Cache.h"

#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Threading.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

using namespace lq;
using namespace lq::runtime;

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

namespace lq {

class KernelImpl {
public:
  KernelImpl(GemmSpec spec, HostStages stages, HostResources &host)
      : spec(std::move(spec)), stages(std::move(stages)), host(host) {}
  /// A kernel of a CUDA target.
  KernelImpl(GemmSpec spec, std::shared_ptr<const CudaKernel> cuda,
             HostResources &host)
      : spec(std::move(spec)), host(host), cuda(std::move(cuda)) {}

  Result<LaunchStatus> launch(const LaunchArgs &args) const;

  GemmSpec spec;
  HostStages stages;
  HostResources &host;
  /// Set for CUDA targets (the host stages are then empty).
  std::shared_ptr<const CudaKernel> cuda;
};

} // namespace lq

Result<LaunchStatus> KernelImpl::launch(const LaunchArgs &args) const {
  if (cuda)
    return launchCudaKernel(*cuda, args);
  Result<GemmProblem> problem = checkGemmLaunch(spec, args, Device::CPU);
  if (!problem)
    return Result<LaunchStatus>::failure(problem.error());
  return launchHostGemm(spec, stages, host, args, *problem);
}

const GemmSpec &Kernel::spec() const { return impl->spec; }

Result<LaunchStatus> Kernel::launch(const LaunchArgs &args) const {
  return impl->launch(args);
}

//===----------------------------------------------------------------------===//
// Runtime
//===----------------------------------------------------------------------===//

namespace lq {

class RuntimeImpl {
public:
  RuntimeImpl()
      : threads(
            std::max(1u, llvm::hardware_concurrency().compute_thread_count())),
        hostResources(threads) {}

  /// Host kernels are compiled for `cpu` (HostJit::create's names).
  Result<std::shared_ptr<const KernelImpl>>
  compile(const GemmSpec &spec, bool quantizeOnly,
          const std::string &cpu = "host");
  /// The JIT of `cpu`, made on first use; mutex held.
  Result<HostJit *> hostJit(const std::string &cpu = "host");

  unsigned threads;
  HostResources hostResources;
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<const KernelImpl>> loaded;
  std::unordered_map<std::string, std::unique_ptr<HostJit>> jits;
};

} // namespace lq

Result<HostJit *> RuntimeImpl::hostJit(const std::string &cpu) {
  std::unique_ptr<HostJit> &jit = jits[cpu];
  if (!jit) {
    auto created = HostJit::create(cpu);
    if (!created) {
      jits.erase(cpu);
      return created.takeError();
    }
    // Another CPU's code must still run here: a launch must not fault on
    // an instruction this machine lacks.
    if (cpu != "host")
      if (Status runs = (*created)->checkRunsHere(); !runs) {
        jits.erase(cpu);
        return runs.takeError();
      }
    jit = std::move(*created);
  }
  return jit.get();
}

Result<std::shared_ptr<const KernelImpl>>
RuntimeImpl::compile(const GemmSpec &spec, bool quantizeOnly,
                     const std::string &cpu) {
  using R = Result<std::shared_ptr<const KernelImpl>>;
  std::string description = (quantizeOnly ? "quantize " : "") + spec.describe();
  if (cpu != "host" && spec.target == Target::HostCPU)
    description += " cpu=" + cpu;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = loaded.find(description); it != loaded.end())
    return it->second;
  if (spec.target != Target::HostCPU) {
    auto cuda = compileCudaKernel(spec, quantizeOnly);
    if (!cuda)
      return R::failure(cuda.error());
    auto impl = std::make_shared<const KernelImpl>(spec, *cuda,
                                                   hostResources);
    loaded.emplace(description, impl);
    return std::shared_ptr<const KernelImpl>(impl);
  }

  auto host = hostJit(cpu);
  if (!host)
    return host.takeError();
  const GemmSpec &cpuSpec = spec;
  std::string name = quantizeOnly ? "lq_quantize" : "lq_gemm";
  // The generated IR is a function of what the key holds: the spec (the
  // kernel's description), the dot product, and the generator's sources,
  // which the compiler identity hashes with the rest of lq's (lowering and
  // post-processing included). So the key needs no IR, and a cache hit
  // generates none.
  std::string key = makeCompilerCacheKey({{"kernel", description},
                                          {"options", HostJit::options()},
                                          {"triple", (*host)->triple()},
                                          {"cpu", (*host)->cpu()},
                                          {"features", (*host)->features()},
                                          {"dot-product",
                                           cpuDotProductName(
                                               (*host)->dotProduct())}});
  std::string dumpDir;
  if (std::optional<std::string> dir = llvm::sys::Process::GetEnv("LQ_DUMP_DIR"))
    dumpDir = *dir;
  auto compileObject = [&]() -> Result<CompileResult> {
    HostJit::KernelModule kernels = (*host)->build(cpuSpec, quantizeOnly);
    auto objects =
        (*host)->compile(kernels, dumpDir, name + "." + key.substr(0, 16));
    if (!objects)
      return objects.takeError();
    return CompileResult{HostJit::packObjects(*objects), description};
  };
  // A dump asks to see the compilation: compile even when the cache holds
  // the object.
  std::shared_ptr<const std::string> blob;
  if (!dumpDir.empty()) {
    auto compiled = compileObject();
    if (!compiled)
      return compiled.takeError();
    blob = std::make_shared<const std::string>(std::move(compiled->blob));
  } else {
    auto entry = CompileCache::global().getOrCompile(key, compileObject);
    if (!entry)
      return entry.takeError();
    blob = entry->blob;
  }
  auto object = (*host)->load(blob, name);
  if (!object)
    return object.takeError();

  HostStages stages;
  stages.object = *object;
  std::string error;
  auto lookup = [&](const char *stage, auto &fn) {
    auto address = (*object)->lookup(stage);
    if (!address) {
      error = address.error();
      return;
    }
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(*address);
  };
  const char *sideNames[2] = {"lhs", "rhs"};
  const OperandSpec *ops[2] = {&spec.lhs, &spec.rhs};
  for (int side = 0; side < (quantizeOnly ? 1 : 2); ++side) {
    if (ops[side]->dtype == DType::Packed4)
      continue;
    std::string suffix = sideNames[side];
    if (ops[side]->format == Format::Log4)
      lookup(("lq_maxabs_" + suffix).c_str(), stages.maxAbs[side]);
    else
      lookup(("lq_moments_" + suffix).c_str(), stages.moments[side]);
    lookup(("lq_quant_" + suffix).c_str(), stages.quant[side]);
  }
  if (quantizeOnly) {
    lookup("lq_pack4", stages.pack4);
  } else {
    lookup("lq_pack_a", stages.packA);
    lookup("lq_pack_b", stages.packB);
    lookup("lq_gemm", stages.gemm);
  }
  if (!error.empty())
    return R::failure("loading the kernel object failed: " + error);
  auto impl = std::make_shared<const KernelImpl>(spec, std::move(stages),
                                                 hostResources);
  loaded.emplace(description, impl);
  return std::shared_ptr<const KernelImpl>(impl);
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
    return Result<Kernel>::failure(impl.error());
  return Kernel(*impl);
}

Result<Kernel> Runtime::compileForCpu(const GemmSpec &spec,
                                      std::string_view cpu) {
  LQ_TRY(validateSpec(spec));
  if (spec.target != Target::HostCPU)
    return Error{"compileForCpu makes host CPU kernels; the spec's target "
                 "is " + std::string(targetName(spec.target))};
  auto impl =
      this->impl->compile(spec, /*quantizeOnly=*/false, std::string(cpu));
  if (!impl)
    return Result<Kernel>::failure(impl.error());
  return Kernel(*impl);
}

Result<std::string> Runtime::cpuDotProduct(std::string_view cpu) const {
  std::lock_guard<std::mutex> lock(impl->mutex);
  auto host = impl->hostJit(std::string(cpu));
  if (!host)
    return host.takeError();
  return std::string(cpuDotProductName((*host)->dotProduct()));
}

Result<QuantizeStatus> Runtime::quantize(const QuantizeArgs &args) {
  using R = Result<QuantizeStatus>;
  GemmSpec spec;
  spec.lhs = {args.format, args.input.dtype, false};
  spec.rhs = {Format::SInt4, DType::F32, false};
  spec.hindsight = args.maxEstimate.has_value();
  if (args.input.device != args.output.device)
    return R::failure(std::string("input and output: quantize takes tensors "
                                  "of one device, got input in ") +
                      (args.input.device == Device::CUDA ? "CUDA" : "host") +
                      " memory and output in " +
                      (args.output.device == Device::CUDA ? "CUDA" : "host") +
                      " memory");
  if (args.input.device == Device::CUDA) {
    // The GPU launcher checks the arguments against device memory.
    Result<Target> target = currentCudaTarget();
    if (!target)
      return R::failure(target.error());
    spec.target = *target;
    auto kernel = impl->compile(spec, /*quantizeOnly=*/true);
    if (!kernel)
      return R::failure(kernel.error());
    return quantizeWithCudaKernel(*(*kernel)->cuda, args);
  }
  LQ_TRY(checkQuantize(args, Device::CPU));
  auto kernel = impl->compile(spec, /*quantizeOnly=*/true);
  if (!kernel)
    return R::failure(kernel.error());
  return quantizeOnHost((*kernel)->stages, impl->hostResources, args);
}

Result<TensorStatistics> Runtime::statistics(const TensorRef &input) {
  using R = Result<TensorStatistics>;
  if (input.dtype != DType::F32 && input.dtype != DType::BF16)
    return R::failure("input: statistics take f32 or bf16 values");
  LQ_TRY(checkTensor("input", input, input.dtype, Device::CPU));
  // The SAWB quantizer of this dtype holds the moments stage.
  GemmSpec spec;
  spec.lhs = {Format::SInt4, input.dtype, false};
  auto kernel = impl->compile(spec, /*quantizeOnly=*/true);
  if (!kernel)
    return R::failure(kernel.error());
  return statisticsOnHost((*kernel)->stages, impl->hostResources, input);
}

CacheCounters Runtime::cacheCounters() const {
  CacheStats stats = CompileCache::global().stats();
  return {stats.memoryHits, stats.diskHits, stats.misses};
}

void Runtime::clearMemoryCache() {
  std::lock_guard<std::mutex> lock(impl->mutex);
  impl->loaded.clear();
  CompileCache::global().clearMemory();
}

Result<Target> Runtime::cudaTarget() const { return currentCudaTarget(); }

std::string Runtime::hostDescription() const {
  std::lock_guard<std::mutex> lock(impl->mutex);
  auto host = impl->hostJit();
  if (!host) {
    std::string message = host.error();
    return "unavailable: " + message;
  }
  return (*host)->triple() + " " + (*host)->cpu();
}

unsigned Runtime::threads() const { return impl->threads; }

void Runtime::parallelFor(
    int64_t count, int64_t grain,
    const std::function<void(int64_t begin, int64_t end)> &body) {
  if (count <= 0)
    return;
  WorkerTeam &team = impl->hostResources.team;
  int64_t wanted = count / std::max<int64_t>(grain, 1);
  team.run(unsigned(std::clamp<int64_t>(wanted, 1, team.size())),
           [&](Region &region) {
             // Contiguous ranges, in thread order: how many threads took
             // part decides only where the ranges split.
             int64_t n = region.participants(), t = region.thread();
             int64_t begin = count * t / n, end = count * (t + 1) / n;
             if (begin < end)
               body(begin, end);
           });
}
