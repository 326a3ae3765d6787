//===- Runtime.cpp - compile, cache and launch lq kernels -----------------===//

#include "lq/Runtime/Runtime.h"

#include "CudaKernel.h"
#include "HostJit.h"
#include "lq/Jit/CompilerIdentity.h"
#include "lq/Runtime/Checks.h"
#include "lq/Spec/CpuAbi.h"
#include "lq/Numerics/Types.h"
#include "lq/Runtime/Cache.h"

#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/Threading.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

using namespace lq;
using namespace lq::runtime;

namespace {

/// The memref descriptor of a 1-D memref as the C interface passes it.
using MemRefDesc = cpu::MemRef1D;

/// Kernel memrefs have an identity layout: their offset is always 0, so a
/// view into a buffer starts at its own pointer.
MemRefDesc memref(const void *data, int64_t size) {
  void *p = const_cast<void *>(data);
  return {p, p, 0, size, 1};
}

// C interfaces of the generated stages: their types come from the
// signature table the generator builds them from (CpuAbi.h).
using MaxAbsFn = cpu::StatsFn;
using QuantFn = cpu::QuantFn;
using Pack4Fn = cpu::Pack4Fn;
using PackAFn = cpu::PackAFn;
using PackBFn = cpu::PackBFn;
using GemmFn = cpu::GemmFn;

/// Rows per statistics chunk: fixed, so that f64 sums do not depend on the
/// number of threads.
constexpr int64_t kMomentRows = 32;
/// Bytes of A panels a GEMM keeps hot while B panels stream past: about half
/// of a per-core L2 cache.
constexpr int64_t kPanelGroupBytes = 192 * 1024;
/// Float operands with fewer elements than this (both together) are
/// quantized side by side, one thread each.
constexpr int64_t kSideBySideElements = int64_t(1) << 21;


/// Runs body(part, begin, end) over [0, count) split into at most
/// `maxParts` ranges of at least `grain` items each, on the pool, and
/// waits. Work too small to pay for a thread hand-off runs inline.
void parallelFor(llvm::ThreadPoolInterface &pool, int64_t count,
                 int64_t maxParts, int64_t grain,
                 llvm::function_ref<void(int64_t, int64_t, int64_t)> body) {
  if (count <= 0)
    return;
  int64_t parts =
      std::clamp<int64_t>(count / std::max<int64_t>(1, grain), 1, maxParts);
  if (parts == 1) {
    body(0, 0, count);
    return;
  }
  llvm::ThreadPoolTaskGroup group(pool);
  int64_t step = (count + parts - 1) / parts;
  for (int64_t part = 1; part * step < count; ++part) {
    int64_t begin = part * step, end = std::min(count, begin + step);
    group.async([=] { body(part, begin, end); });
  }
  body(0, 0, std::min(count, step));
  group.wait();
}

/// Items per thread below which handing work to another thread costs more
/// than it saves: about 16K elements of a quantizer's rows, or 256K
/// multiply-adds of GEMM tiles.
int64_t rowGrain(int64_t cols) {
  return (16384 + std::max<int64_t>(1, cols) - 1) / std::max<int64_t>(1, cols);
}
int64_t tileGrain(int64_t macsPerItem) {
  return (262144 + std::max<int64_t>(1, macsPerItem) - 1) /
         std::max<int64_t>(1, macsPerItem);
}

} // namespace

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

namespace lq {

/// Stage entry points of one loaded kernel object.
struct Stages {
  std::shared_ptr<LoadedObject> object;
  MaxAbsFn maxAbs[2] = {nullptr, nullptr};
  MaxAbsFn moments[2] = {nullptr, nullptr};
  QuantFn quant[2] = {nullptr, nullptr};
  Pack4Fn pack4 = nullptr;
  PackAFn packA = nullptr;
  PackBFn packB = nullptr;
  GemmFn gemm = nullptr;
};

class KernelImpl {
public:
  KernelImpl(GemmSpec spec, Stages stages, llvm::ThreadPoolInterface &pool,
             unsigned threads)
      : spec(std::move(spec)), stages(std::move(stages)), pool(pool),
        threads(threads) {}
  /// A kernel of a CUDA target.
  KernelImpl(GemmSpec spec, std::shared_ptr<const CudaKernel> cuda,
             llvm::ThreadPoolInterface &pool)
      : spec(std::move(spec)), pool(pool), threads(1), cuda(std::move(cuda)) {}

  Result<LaunchStatus> launch(const LaunchArgs &args) const;

  struct Quantized {
    std::unique_ptr<int8_t[]> codes; // float operands: one code per byte
    float scale = 0.0f;
    bool nonfinite = false;
    uint64_t overflow = 0;
    float max = 0.0f;   // LUQ: max |x| over the finite elements
    float range = 0.0f; // the LUQ max or estimate, or the SAWB clip
  };
  struct SawbStats {
    float clip = 0.0f; // the SAWB clip rule on the kernel's moments
    float max = 0.0f;  // max |x| over the finite elements
    bool nonfinite = false;
  };
  /// The SAWB statistics of a float operand (moments in fixed row chunks),
  /// on at most `maxParts` threads.
  SawbStats sawbStatistics(int side, const TensorRef &t,
                           int64_t maxParts) const;

  /// Statistics, scale and codes of a float operand on at most `maxParts`
  /// threads; SMP sample ids are firstSample, firstSample + 1, ...
  Quantized quantizeOperand(int side, const OperandSpec &op,
                            const TensorRef &t, unsigned samples,
                            uint32_t firstSample, const LaunchArgs &args,
                            int64_t maxParts) const;

  GemmSpec spec;
  Stages stages;
  llvm::ThreadPoolInterface &pool;
  unsigned threads;
  /// Set for CUDA targets (the host stages are then empty).
  std::shared_ptr<const CudaKernel> cuda;
};

} // namespace lq

namespace {

/// A launch whose workspace (codes, panels) does not fit in memory.
std::string workspaceError(int64_t bytes) {
  return "cannot allocate " + std::to_string(bytes) +
         " bytes of workspace for the operands' codes and panels";
}

} // namespace

KernelImpl::SawbStats KernelImpl::sawbStatistics(int side, const TensorRef &t,
                                                 int64_t maxParts) const {
  int64_t rows = t.rows, cols = t.cols;
  int64_t chunks = (rows + kMomentRows - 1) / kMomentRows;
  std::vector<double> partial(4 * chunks, 0.0);
  MemRefDesc in = memref(t.data, rows * t.rowStride);
  parallelFor(pool, chunks, maxParts, rowGrain(cols) / kMomentRows,
              [&](int64_t, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      MemRefDesc out = memref(&partial[4 * c], 4);
      MemRefDesc input = in;
      stages.moments[side](&input, rows, cols, t.rowStride, c * kMomentRows,
                           std::min(rows, (c + 1) * kMomentRows), &out);
    }
  });
  SawbStats stats;
  double sumSquares = 0.0, sumMagnitudes = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    sumSquares += partial[4 * c];
    sumMagnitudes += partial[4 * c + 1];
    stats.max = std::max(stats.max, float(partial[4 * c + 2]));
    stats.nonfinite |=
        !(partial[4 * c + 3] < double(numerics::bitsToFloat(kF32InfBits)));
  }
  stats.clip = sawbClipFromSums(sumSquares, sumMagnitudes, rows * cols,
                                stats.max, stats.nonfinite);
  return stats;
}

KernelImpl::Quantized
KernelImpl::quantizeOperand(int side, const OperandSpec &op,
                            const TensorRef &t, unsigned samples,
                            uint32_t firstSample, const LaunchArgs &args,
                            int64_t maxParts) const {
  Quantized q;
  int64_t rows = t.rows, cols = t.cols, count = rows * cols;
  // Every code is written by the quantizer, or zeroed below. A shape too
  // large for memory is an error of the launch (null codes), not an abort.
  q.codes.reset(new (std::nothrow) int8_t[size_t(count) * samples]);
  if (!q.codes)
    return q;
  MemRefDesc in = memref(t.data, rows * t.rowStride);
  int64_t parts = maxParts;
  OperandQuantizer quantizer;
  if (op.format == Format::Log4) {
    float m = args.maxEstimate;
    bool nonfinite;
    if (!spec.hindsight) {
      std::vector<int32_t> partial(2 * parts, 0);
      parallelFor(pool, rows, parts, rowGrain(cols), [&](int64_t part,
                                                         int64_t r0, int64_t r1) {
        MemRefDesc out = memref(&partial[2 * part], 2);
        MemRefDesc input = in;
        stages.maxAbs[side](&input, rows, cols, t.rowStride, r0, r1, &out);
      });
      uint32_t finite = 0, raw = 0;
      for (int64_t i = 0; i < parts; ++i) {
        finite = std::max(finite, uint32_t(partial[2 * i]));
        raw = std::max(raw, uint32_t(partial[2 * i + 1]));
      }
      m = numerics::bitsToFloat(finite);
      q.max = m;
      nonfinite = raw >= kF32InfBits;
    } else {
      nonfinite = !std::isfinite(m);
    }
    quantizer = luqQuantizer(m, nonfinite);
  } else {
    SawbStats stats = sawbStatistics(side, t, maxParts);
    quantizer = sawbQuantizer(stats.clip, stats.nonfinite, op.format);
  }
  q.nonfinite = quantizer.nonfinite;
  q.range = quantizer.range;
  q.scale = quantizer.scale;
  bool zero = quantizer.zero;
  float inv = quantizer.inv;
  if (zero) {
    std::memset(q.codes.get(), 0, size_t(count) * samples);
    return q;
  }

  std::vector<int32_t> stats(2 * parts * samples, 0);
  for (unsigned s = 0; s < samples; ++s) {
    parallelFor(pool, rows, parts, rowGrain(cols), [&](int64_t part, int64_t r0,
                                                       int64_t r1) {
      int64_t slot = s * parts + part;
      MemRefDesc input = in;
      MemRefDesc codes = memref(q.codes.get() + s * count, count);
      MemRefDesc out = memref(&stats[2 * slot], 2);
      stages.quant[side](&input, rows, cols, t.rowStride, r0, r1, &codes, inv,
                         args.seed, args.stream, firstSample + s, &out);
    });
  }
  uint32_t raw = 0;
  for (size_t i = 0; i < stats.size(); i += 2) {
    q.overflow += uint32_t(stats[i]);
    raw = std::max(raw, uint32_t(stats[i + 1]));
  }
  if (spec.hindsight && side == 0) {
    q.nonfinite |= raw >= kF32InfBits;
    q.max = q.nonfinite ? 0.0f : numerics::bitsToFloat(raw);
    if (q.nonfinite) {
      std::memset(q.codes.get(), 0, size_t(count) * samples);
      q.scale = 0.0f;
      q.overflow = 0;
    }
  }
  return q;
}

Result<LaunchStatus> KernelImpl::launch(const LaunchArgs &args) const {
  if (cuda)
    return launchCudaKernel(*cuda, args);
  const GemmSpec &s = spec;
  unsigned samples = s.samples;
  Result<GemmProblem> problem = checkGemmLaunch(s, args, Device::CPU);
  if (!problem)
    return Result<LaunchStatus>::failure(problem.error());
  int64_t M = problem->m, N = problem->n, K = problem->k;
  int64_t lhsRows = problem->lhsRows;

  LaunchStatus status;
  if (M == 0 || N == 0)
    return status;

  bool lhsFloat = s.lhs.dtype != DType::Packed4;
  bool rhsFloat = s.rhs.dtype != DType::Packed4;
  // Codes of each operand: quantized here (float) or the caller's bytes.
  // Small operands are quantized side by side, one per thread: one thread
  // hand-off instead of two per operand.
  Quantized lhs, rhs;
  int64_t floatElements = (lhsFloat ? lhsRows * args.lhs.cols * samples : 0) +
                          (rhsFloat ? args.rhs.rows * args.rhs.cols : 0);
  bool sideBySide = lhsFloat && rhsFloat && threads > 1 &&
                    floatElements < kSideBySideElements;
  int64_t parts = sideBySide ? 1 : threads;
  {
    llvm::ThreadPoolTaskGroup group(pool);
    auto quantizeRhs = [&] {
      rhs = quantizeOperand(1, s.rhs, args.rhs, 1, 0, args, parts);
    };
    if (rhsFloat && sideBySide)
      group.async(quantizeRhs);
    if (lhsFloat)
      lhs = quantizeOperand(0, s.lhs, args.lhs, samples, 0, args, parts);
    if (rhsFloat && !sideBySide)
      quantizeRhs();
    group.wait();
  }
  if ((lhsFloat && !lhs.codes) || (rhsFloat && !rhs.codes))
    return Result<LaunchStatus>::failure(
        workspaceError(floatElements));
  const void *lhsSrc = args.lhs.data, *rhsSrc = args.rhs.data;
  int64_t lhsStride = args.lhs.rowStride, rhsStride = args.rhs.rowStride;
  int64_t lhsSampleStride = lhsRows * args.lhs.rowStride;
  if (lhsFloat) {
    lhsSrc = lhs.codes.get();
    lhsStride = args.lhs.cols;
    lhsSampleStride = args.lhs.rows * args.lhs.cols;
  } else {
    lhs.scale = args.lhsScale;
  }
  if (rhsFloat) {
    rhsSrc = rhs.codes.get();
    rhsStride = args.rhs.cols;
  } else {
    rhs.scale = args.rhsScale;
  }

  int64_t Kp = (K + 1) / 2;
  int64_t rowBlocks = (M + kCpuTileRows - 1) / kCpuTileRows;
  int64_t colBlocks = (N + kCpuTileCols - 1) / kCpuTileCols;
  // Packing writes every element of both panels (padding included).
  size_t panelASize = size_t(rowBlocks) * samples * Kp * kCpuTileRows;
  size_t panelBSize = size_t(colBlocks) * Kp * kCpuTileCols * 2;
  std::unique_ptr<int32_t[]> panelA(new (std::nothrow) int32_t[panelASize]);
  std::unique_ptr<int16_t[]> panelB(new (std::nothrow) int16_t[panelBSize]);
  if (!panelA || !panelB)
    return Result<LaunchStatus>::failure(workspaceError(
        int64_t(panelASize * sizeof(int32_t) + panelBSize * sizeof(int16_t))));
  int64_t lhsBytes = lhsSampleStride * samples;
  int64_t rhsBytes = args.rhs.rows * rhsStride;
  // Both operands in one hand-off: row blocks of A, then column blocks of B.
  int64_t packItems = rowBlocks + colBlocks;
  parallelFor(pool, packItems, threads,
              rowGrain(std::max(kCpuTileRows * samples, kCpuTileCols) * K),
              [&](int64_t, int64_t i0, int64_t i1) {
    if (i0 < rowBlocks) {
      MemRefDesc src = memref(lhsSrc, lhsBytes);
      MemRefDesc panel = memref(panelA.get(), int64_t(panelASize));
      stages.packA(&src, M, K, samples, lhsStride, lhsSampleStride, i0,
                   std::min(i1, rowBlocks), &panel);
    }
    if (i1 > rowBlocks) {
      MemRefDesc src = memref(rhsSrc, rhsBytes);
      MemRefDesc panel = memref(panelB.get(), int64_t(panelBSize));
      stages.packB(&src, K, N, rhsStride, std::max(i0, rowBlocks) - rowBlocks,
                   i1 - rowBlocks, &panel);
    }
  });

  float scale = lhs.scale * rhs.scale;
  if (samples > 1)
    scale = scale * (1.0f / float(samples));
  // Row blocks per group: as many A panels as fit the cache budget.
  int64_t panelBytes = int64_t(samples) * Kp * kCpuTileRows * 4;
  int64_t group = std::max<int64_t>(1, kPanelGroupBytes / std::max<int64_t>(1, panelBytes));
  parallelFor(pool, rowBlocks, threads,
              tileGrain(kCpuTileRows * N * K * int64_t(samples)),
              [&](int64_t, int64_t b0, int64_t b1) {
    MemRefDesc a = memref(panelA.get(), int64_t(panelASize));
    MemRefDesc b = memref(panelB.get(), int64_t(panelBSize));
    MemRefDesc bias = memref(args.bias, s.bias ? N : 0);
    MemRefDesc out = memref(args.out.data, M * args.out.rowStride);
    stages.gemm(&a, &b, M, N, Kp, samples, b0, b1, scale, &bias, &out,
                args.out.rowStride, group);
  });

  status.nonfinite = lhs.nonfinite || rhs.nonfinite;
  status.overflow = lhs.overflow;
  status.lhsMax = lhs.max;
  status.lhsScale = lhs.scale;
  status.rhsScale = rhs.scale;
  status.lhsRange = lhs.range;
  status.rhsRange = rhs.range;
  return status;
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
      : pool(llvm::hardware_concurrency()),
        threads(std::max(1u, llvm::hardware_concurrency().compute_thread_count())) {
  }

  Result<std::shared_ptr<const KernelImpl>> compile(const GemmSpec &spec,
                                                    bool quantizeOnly);
  Result<HostJit *> hostJit();

  llvm::DefaultThreadPool pool;
  unsigned threads;
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<const KernelImpl>> loaded;
  std::unique_ptr<HostJit> jit;
};

} // namespace lq

Result<HostJit *> RuntimeImpl::hostJit() {
  if (!jit) {
    auto created = HostJit::create();
    if (!created)
      return created.takeError();
    jit = std::move(*created);
  }
  return jit.get();
}

Result<std::shared_ptr<const KernelImpl>>
RuntimeImpl::compile(const GemmSpec &spec, bool quantizeOnly) {
  using R = Result<std::shared_ptr<const KernelImpl>>;
  std::string description = (quantizeOnly ? "quantize " : "") + spec.describe();
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = loaded.find(description); it != loaded.end())
    return it->second;
  if (spec.target != Target::HostCPU) {
    auto cuda = compileCudaKernel(spec, quantizeOnly);
    if (!cuda)
      return R::failure(cuda.error());
    auto impl = std::make_shared<const KernelImpl>(spec, *cuda, pool);
    loaded.emplace(description, impl);
    return std::shared_ptr<const KernelImpl>(impl);
  }

  auto host = hostJit();
  if (!host)
    return host.takeError();
  const GemmSpec &cpuSpec = spec;
  std::string name = quantizeOnly ? "lq_quantize" : "lq_gemm";
  // The generated IR is part of the key: a change of the generator changes
  // the key even where the spec and versions do not.
  HostJit::KernelModule kernels = HostJit::build(cpuSpec, quantizeOnly);
  // The compiler identity covers lq's own lowering and post-processing,
  // which the IR text does not.
  std::string key = makeCompilerCacheKey({{"kernel", description},
                                          {"ir", kernels.text},
                                          {"options", HostJit::options()},
                                          {"triple", (*host)->triple()},
                                          {"cpu", (*host)->cpu()},
                                          {"features", (*host)->features()}});
  std::string dumpDir;
  if (std::optional<std::string> dir = llvm::sys::Process::GetEnv("LQ_DUMP_DIR"))
    dumpDir = *dir;
  auto compileObject = [&]() -> Result<CompileResult> {
    auto object =
        (*host)->compile(kernels, dumpDir, name + "." + key.substr(0, 16));
    if (!object)
      return object.takeError();
    return CompileResult{std::move(*object), description};
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

  Stages stages;
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
  auto impl = std::make_shared<const KernelImpl>(spec, std::move(stages), pool,
                                                 threads);
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

  LaunchArgs launch;
  launch.seed = args.seed;
  launch.stream = args.stream;
  launch.maxEstimate = args.maxEstimate.value_or(0.0f);
  const KernelImpl &k = **kernel;
  KernelImpl::Quantized q =
      k.quantizeOperand(0, spec.lhs, args.input, 1, args.sample, launch,
                        k.threads);
  if (!q.codes)
    return R::failure(workspaceError(args.input.rows * args.input.cols));
  const TensorRef &out = args.output;
  parallelFor(k.pool, out.rows, k.threads, rowGrain(out.cols),
              [&](int64_t, int64_t r0, int64_t r1) {
    MemRefDesc codes = memref(q.codes.get(), out.rows * out.cols);
    MemRefDesc bytes = memref(out.data, out.rows * out.rowStride);
    k.stages.pack4(&codes, out.rows, out.cols, r0, r1, &bytes, out.rowStride);
  });
  QuantizeStatus status;
  status.scale = q.scale;
  status.nonfinite = q.nonfinite;
  status.overflow = q.overflow;
  status.range = args.format == Format::Log4 ? q.max : q.range;
  return status;
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
  KernelImpl::SawbStats stats =
      (*kernel)->sawbStatistics(0, input, (*kernel)->threads);
  TensorStatistics result;
  result.maxAbs = stats.max;
  result.sawbClip = stats.clip;
  result.nonfinite = stats.nonfinite;
  return result;
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
  auto host = impl->hostJit();
  if (!host) {
    std::string message = host.error();
    return "unavailable: " + message;
  }
  return (*host)->triple() + " " + (*host)->cpu();
}

unsigned Runtime::threads() const { return impl->threads; }
