//===- GpuLauncher.cpp - launch generated GPU GEMM modules ----------------===//
//
// The orchestration of GpuAbi.h with the semantics of Runtime.cpp: the same
// argument checks (Checks.h), the same quantizer rules from the statistics
// (luqQuantizer, sawbQuantizer, sawbClipFromSums), the same status fields.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/GpuLauncher.h"

#include "lq/Numerics/Types.h"

#include "lq/Runtime/Checks.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

using namespace lq;
using namespace lq::cuda;
using namespace lq::runtime;

namespace {

/// Kernels above this much dynamic shared memory must opt in to it.
constexpr int64_t kDefaultSharedBytes = 48 * 1024;
/// Column tiles from which a float LUQ left operand is quantized once into
/// packed codes (one more pass over A) rather than in every column tile of
/// the GEMM: Philox costs about three times the tensor-core work it feeds,
/// so repeating it in three or more column tiles costs more than the pass.
constexpr int64_t kPackedLhsColumnTiles = 3;
/// The int8 placement's smallest problem (multiply-adds): below it the
/// two extra launches cost more than the repeated quantization saves.
constexpr double kInt8MinMacs = double(1 << 24);
/// Row pitch of packed codes the launcher writes for the `_pa` GEMMs.
constexpr int64_t kPackedPitchAlign = 16;
static_assert(sizeof(CUtensorMap) == kTensorMapBytes &&
                  alignof(CUtensorMap) % kTensorMapAlign == 0,
              "the `_tma` GEMMs take CUtensorMap parameters by value");
constexpr int kMaxThreads = 1024;

CUdeviceptr address(const void *p) { return reinterpret_cast<CUdeviceptr>(p); }

const char *sideName(Operand side) {
  return side == Operand::Lhs ? "lhs" : "rhs";
}

/// Bytes from a tensor's first element to just past its last.
size_t extentBytes(const TensorRef &t) {
  size_t element = elementBytes(t.dtype);
  size_t rowBytes = t.dtype == DType::Packed4 ? size_t(t.cols + 1) / 2
                                              : size_t(t.cols) * element;
  return size_t(t.rows - 1) * size_t(t.rowStride) * element + rowBytes;
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

/// A tensor's base and row pitch allow 16-byte chunks (the `vec` kernels).
bool vecLayout(const TensorRef &t) {
  return address(t.data) % 16 == 0 &&
         (t.rowStride * int64_t(elementBytes(t.dtype))) % 16 == 0;
}

/// The extent of a stored row as a tensor map counts it: elements, bytes
/// for packed codes.
int64_t tmaInner(DType dtype, int64_t cols) {
  return dtype == DType::Packed4 ? (cols + 1) / 2 : cols;
}

/// A tensor map of the matrix works: cuTensorMapEncodeTiled takes every
/// dimension in [1, 2^32] and the row pitch below 2^40 bytes (its 16-byte
/// multiple is vecLayout's condition), and the kernels' box coordinates
/// are signed 32-bit, so dimensions stay within 2^31.
bool tmaShape(int64_t rows, int64_t inner, int64_t pitchBytes) {
  constexpr int64_t kMaxDim = int64_t(1) << 31, kMaxPitch = int64_t(1) << 40;
  return rows >= 1 && rows <= kMaxDim && inner >= 1 && inner <= kMaxDim &&
         pitchBytes < kMaxPitch;
}

bool tmaShape(const TensorRef &t) {
  return tmaShape(t.rows, tmaInner(t.dtype, t.cols),
                  t.rowStride * int64_t(elementBytes(t.dtype)));
}

/// Writes to `map` the tensor map GpuAbi.h specifies for one GEMM operand
/// as stored: `rows` counts stacked SMP samples, `pitchBytes` is the row
/// pitch.
Status operandMap(CUtensorMap &map, const CudaDriver &driver,
                  const GemmTile &tile, bool lhs, bool transposed, DType dtype,
                  CUdeviceptr base, int64_t rows, int64_t cols,
                  int64_t pitchBytes) {
  TmaBox box = tmaBox(tile, lhs, transposed, dtype == DType::Packed4);
  cuuint64_t dims[2] = {cuuint64_t(tmaInner(dtype, cols)), cuuint64_t(rows)};
  cuuint64_t strides[1] = {cuuint64_t(pitchBytes)};
  cuuint32_t boxDims[2] = {box.inner, box.outer};
  cuuint32_t elementStrides[2] = {1, 1};
  // bf16 is moved as its bits: the kernels convert, TMA only copies.
  CUtensorMapDataType type =
      dtype == DType::F32    ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
      : dtype == DType::BF16 ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                             : CU_TENSOR_MAP_DATA_TYPE_UINT8;
  // FLOAT_OOB_FILL_NONE fills out-of-bound elements with zeros: the edges
  // of the matrix read as zero codes, as the `vec` kernels' predicated
  // copies leave them.
  return driver.encodeTiled(
      map, type, 2, base, dims, strides, boxDims, elementStrides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
      CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

/// `tiles` sorted by area, small first.
std::vector<GemmTile> smallFirst(std::vector<GemmTile> tiles) {
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const GemmTile &a, const GemmTile &b) {
                     return int64_t(a.bm) * a.bn < int64_t(b.bm) * b.bn;
                   });
  return tiles;
}

/// sm_90a modules have the `_tma` GEMMs.
bool tmaModule(const GpuModuleInfo &info) {
  return info.spec.target == Target::CudaSm90a;
}

/// The fused GEMMs of one tile, every one of which a module has: both copy
/// variants, and on sm_90a the TMA one.
std::vector<std::string> fusedGemms(const GpuModuleInfo &info,
                                    const GemmTile &t) {
  std::vector<std::string> names = {gemmKernel(t, true), gemmKernel(t, false)};
  if (tmaModule(info))
    names.push_back(gemmTmaKernel(t));
  return names;
}

/// Records `event` on `stream` when it goes out of scope: the end of a
/// launch's use of the scratch, on every way out of the launch. A failed
/// record has no caller to report to; the context is broken, and the
/// launch's own calls report that.
class ScratchRelease {
public:
  ScratchRelease(const CudaDriver &driver, CUevent event, CUstream stream)
      : driver(driver), event(event), stream(stream) {}
  ScratchRelease(const ScratchRelease &) = delete;
  ScratchRelease &operator=(const ScratchRelease &) = delete;
  ~ScratchRelease() { (void)driver.record(event, stream); }

private:
  const CudaDriver &driver;
  CUevent event;
  CUstream stream;
};

/// The statistics of one float operand, as read back from the scratch.
struct Statistics {
  float maxFinite = 0.0f;
  bool nonfinite = false;
  double sumSquares = 0.0, sumMagnitudes = 0.0;
};

/// Reads the StatsHeader at `stats` and, for SAWB, sums the per-block f64
/// partials in block order (so that the sums depend only on the shape).
Statistics readStatistics(const unsigned char *stats, int64_t rows, bool sawb) {
  Statistics s;
  StatsHeader header;
  std::memcpy(&header, stats, sizeof(header));
  s.maxFinite = numerics::bitsToFloat(header.maxFiniteBits);
  s.nonfinite = header.maxAnyBits >= kF32InfBits;
  if (sawb)
    for (int64_t b = 0; b < statsBlocks(rows); ++b) {
      StatsPartial partial;
      std::memcpy(&partial,
                  stats + sizeof(StatsHeader) + sizeof(StatsPartial) * b,
                  sizeof(partial));
      s.sumSquares += partial.sumSquares;
      s.sumMagnitudes += partial.sumMagnitudes;
    }
  return s;
}

} // namespace

//===----------------------------------------------------------------------===//
// Module contents
//===----------------------------------------------------------------------===//

std::vector<std::string> lq::cuda::requiredKernels(const GpuModuleInfo &info) {
  const GemmSpec &s = info.spec;
  if (info.quantizeOnly)
    return {statsKernel(true), quantKernel(true)};
  std::vector<std::string> names;
  for (const GemmTile &t : info.tiles)
    for (std::string &name : fusedGemms(info, t))
      names.push_back(std::move(name));
  if (s.lhs.dtype != DType::Packed4 && !s.hindsight)
    names.push_back(statsKernel(true));
  if (s.rhs.dtype != DType::Packed4)
    names.push_back(statsKernel(false));
  if (s.hindsight)
    names.push_back(kFillKernel);
  return names;
}

Result<std::string> lq::cuda::deviceArch(const GpuModuleInfo &info,
                                        const DeviceInfo &device) {
  using R = Result<std::string>;
  std::string cc = std::to_string(device.computeMajor) + "." +
                   std::to_string(device.computeMinor);
  if (info.spec.target == Target::CudaSm90a) {
    if (device.computeMajor != 9 || device.computeMinor != 0)
      return R::failure("sm_90a kernels run on compute capability 9.0 only; " +
                        device.name + " is " + cc);
    return std::string("sm_90a");
  }
  if (info.spec.target == Target::CudaSm80) {
    if (device.computeMajor < 8)
      return R::failure("sm_80 kernels need compute capability 8.0 or "
                        "newer; " +
                        device.name + " is " + cc);
    return "sm_" + std::to_string(device.computeMajor) +
           std::to_string(device.computeMinor);
  }
  return R::failure(std::string("unknown chip '") +
                    targetName(info.spec.target) + "' (" + cudaTargetNames() +
                    ")");
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

Result<std::unique_ptr<GpuLauncher>> GpuLauncher::create(GpuModuleInfo info) {
  using R = Result<std::unique_ptr<GpuLauncher>>;
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return driver.takeError();
  Result<DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return device.takeError();
  if (Result<std::string> arch = deviceArch(info, *device); !arch)
    return arch.takeError();
  Result<CUcontext> context = (*driver)->currentContext();
  if (!context)
    return context.takeError();
  for (const GemmTile &t : info.tiles) {
    if (t.threads > kMaxThreads)
      return R::failure("tile " + gemmKernel(t, true) + " has " +
                        std::to_string(t.threads) + " threads, above " +
                        std::to_string(kMaxThreads));
    if (t.smemBytes > device->maxSharedOptin)
      return R::failure("tile " + gemmKernel(t, true) + " needs " +
                        std::to_string(t.smemBytes) +
                        " bytes of shared memory; " + device->name +
                        " allows " + std::to_string(device->maxSharedOptin));
  }

  std::unique_ptr<GpuLauncher> launcher(new GpuLauncher);
  launcher->driver = *driver;
  launcher->deviceInfo = *device;
  launcher->context = *context;
  Result<CUevent> event = (*driver)->createEvent(/*timing=*/false);
  if (!event)
    return event.takeError();
  launcher->scratchDone = *event;
  for (const GemmTile &t : info.tiles)
    for (bool packed : {false, true})
      for (std::string name : {gemmKernel(t, true, packed),
                               gemmKernel(t, false, packed),
                               gemmTmaKernel(t, packed)})
        launcher->gemmTiles.emplace(std::move(name), t);
  // The int8 placement's GEMMs need their ring's shared memory; a device
  // with less runs the fused GEMMs only.
  launcher->int8Variant = !info.quantizeOnly && hasInt8Gemm(info.spec) &&
                          wsTiles().back().smemBytes() <= device->maxSharedOptin;
  for (const WsTile &t : wsTiles())
    launcher->gemmTiles.emplace(
        gemmWsKernel(t),
        GemmTile{t.bm, t.bn, kWsBK, t.stages, kWsThreads, t.smemBytes()});
  launcher->tiles = smallFirst(info.tiles);
  launcher->moduleInfo = std::move(info);
  return R(std::move(launcher));
}

Result<std::unique_ptr<GpuLauncher>>
GpuLauncher::load(std::string_view image, GpuModuleInfo info) {
  using R = Result<std::unique_ptr<GpuLauncher>>;
  R created = create(std::move(info));
  if (!created)
    return created;
  GpuLauncher &l = **created;
  const GpuModuleInfo &mi = l.moduleInfo;
  Result<CUmodule> module = l.driver->loadModule(image.data(), image.size());
  if (!module)
    return R::failure("loading the module of " + mi.spec.describe() +
                      " failed: " + module.error());
  l.modules.push_back(*module);
  for (const std::string &name : requiredKernels(mi))
    if (Result<CUfunction> fn = l.resolve(name); !fn)
      return R::failure("the module of " + mi.spec.describe() +
                        " lacks a kernel it needs: " + fn.error());
  // The quantize-once GEMMs are optional: a module without them runs the
  // fused ones only. An sm_90a module that has them has their TMA variant
  // too.
  l.packedLhsVariant = mi.spec.lhs.format == Format::Log4 &&
                       mi.spec.lhs.dtype != DType::Packed4;
  for (const GemmTile &t : mi.tiles) {
    std::string name = gemmKernel(t, true, /*packedLhs=*/true);
    if (!l.packedLhsVariant || !l.resolve(name)) {
      l.packedLhsVariant = false;
      break;
    }
    if (!tmaModule(mi))
      continue;
    std::string tmaName = gemmTmaKernel(t, /*packedLhs=*/true);
    if (Result<CUfunction> fn = l.resolve(tmaName); !fn)
      return R::failure("the module of " + mi.spec.describe() + " has " +
                        name + " but lacks " + tmaName +
                        " (sm_90a modules have both): " + fn.error());
  }
  return created;
}

Result<std::unique_ptr<GpuLauncher>>
GpuLauncher::load(GpuModuleInfo info, KernelImages images) {
  using R = Result<std::unique_ptr<GpuLauncher>>;
  if (!images)
    return R::failure("a lazily loading launcher needs a source of kernels");
  R created = create(std::move(info));
  if (!created)
    return created;
  GpuLauncher &l = **created;
  l.kernelImages = std::move(images);
  // The generator gives every module with a float LUQ left operand its
  // quantize-once GEMMs (and their TMA variants on sm_90a).
  l.packedLhsVariant = !l.moduleInfo.quantizeOnly &&
                       l.moduleInfo.spec.lhs.format == Format::Log4 &&
                       l.moduleInfo.spec.lhs.dtype != DType::Packed4;
  return created;
}

GpuLauncher::~GpuLauncher() {
  // Device memory goes before the modules; a failed unload has no caller
  // to report to (the context is gone or broken, and takes the modules
  // with it).
  scratch = DeviceBuffer();
  if (scratchDone)
    (void)driver->destroyEvent(scratchDone);
  for (CUmodule module : modules)
    (void)driver->unloadModule(module);
}

Result<CUfunction> GpuLauncher::resolve(const std::string &name) {
  if (auto it = functions.find(name); it != functions.end())
    return it->second;
  Result<CUfunction> fn = Result<CUfunction>::failure("no module loaded");
  for (CUmodule module : modules)
    if ((fn = driver->function(module, name)))
      break;
  if (!fn)
    return fn;
  auto tile = gemmTiles.find(name);
  if (tile != gemmTiles.end() && tile->second.smemBytes > kDefaultSharedBytes)
    if (Status s = driver->setMaxDynamicSharedMemory(
            *fn, int(tile->second.smemBytes));
        !s)
      return Result<CUfunction>::failure(name + ": " + s.error());
  functions.emplace(name, *fn);
  return fn;
}

Status GpuLauncher::ensureKernels(const std::vector<std::string> &names) {
  std::vector<std::string> missing;
  for (const std::string &name : names)
    if (!functions.count(name) &&
        std::find(missing.begin(), missing.end(), name) == missing.end())
      missing.push_back(name);
  if (missing.empty())
    return Done{};
  if (kernelImages) {
    Result<std::vector<std::string>> images = kernelImages(missing);
    if (!images)
      return images.takeError();
    for (const std::string &image : *images) {
      Result<CUmodule> module = driver->loadModule(image.data(), image.size());
      if (!module)
        return Status::failure("loading kernels of " +
                               moduleInfo.spec.describe() +
                               " failed: " + module.error());
      modules.push_back(*module);
    }
  }
  for (const std::string &name : missing)
    if (Result<CUfunction> fn = resolve(name); !fn)
      return Status::failure("the module of " + moduleInfo.spec.describe() +
                             " lacks kernel " + name + ": " + fn.error());
  return Done{};
}

Result<CUfunction> GpuLauncher::function(const std::string &name) {
  if (auto it = functions.find(name); it != functions.end())
    return it->second;
  if (Status s = ensureKernels({name}); !s)
    return s.takeError();
  return functions.at(name);
}

//===----------------------------------------------------------------------===//
// Checks
//===----------------------------------------------------------------------===//

Status GpuLauncher::checkContext() const {
  Result<CUcontext> current = driver->currentContext();
  if (!current)
    return current.takeError();
  if (*current != context)
    return Status::failure(
        "the current CUDA context is not the one the module was loaded "
        "into: make that context current on this thread first");
  return Done{};
}

Status GpuLauncher::checkPointer(const char *name, const void *data,
                                 size_t bytes) const {
  std::string prefix = std::string(name) + ": ";
  Result<PointerInfo> info = driver->pointerInfo(data);
  if (!info)
    return Status::failure(prefix + info.error());
  if (!info->device)
    return Status::failure(prefix + "not CUDA device memory (host or "
                                    "unregistered memory); the GPU kernels "
                                    "read and write device memory only");
  // The device, not the context: memory from stream-ordered pools and
  // virtual memory mappings has no owning context.
  if (info->deviceOrdinal != int(deviceInfo.device))
    return Status::failure(prefix + "memory of device " +
                           std::to_string(info->deviceOrdinal) +
                           ", but the current context is on device " +
                           std::to_string(int(deviceInfo.device)));
  CUdeviceptr begin = address(data);
  if (info->rangeSize > 0 &&
      (begin < info->rangeStart ||
       begin - info->rangeStart + bytes > info->rangeSize))
    return Status::failure(
        prefix + "the tensor spans " + std::to_string(bytes) +
        " bytes, past the end of its allocation of " +
        std::to_string(info->rangeSize) + " bytes");
  return Done{};
}

Status GpuLauncher::checkTensorMemory(const char *name,
                                      const TensorRef &t) const {
  if (t.rows == 0 || t.cols == 0)
    return Done{};
  return checkPointer(name, t.data, extentBytes(t));
}

Status GpuLauncher::ensureScratch(size_t bytes, size_t mirrored) {
  if (hostScratch.size() < mirrored)
    hostScratch.resize(mirrored);
  if (scratch.size() >= bytes)
    return Done{};
  // The old buffer may still be the counters argument of a GEMM in flight
  // on another stream (that launch read nothing back from it); free it only
  // when the context is idle.
  if (scratch.size() > 0)
    if (Status s = driver->synchronizeContext(); !s)
      return s;
  size_t doubled = 2 * scratch.size();
  scratch = DeviceBuffer();
  Result<DeviceBuffer> grown = DeviceBuffer::allocate(std::max(bytes, doubled));
  if (!grown)
    return grown.takeError();
  scratch = std::move(*grown);
  return Done{};
}

//===----------------------------------------------------------------------===//
// Launches
//===----------------------------------------------------------------------===//

namespace {

/// The quantizer of one operand of a launch, from its statistics (or the
/// in-hindsight estimate), by the host runtime's rules.
OperandQuantizer quantizerOf(const OperandSpec &op, const TensorRef &t,
                             const Statistics &stats, bool hindsight,
                             float estimate) {
  if (op.format == Format::Log4)
    return hindsight ? luqQuantizer(estimate, !std::isfinite(estimate))
                     : luqQuantizer(stats.maxFinite, stats.nonfinite);
  float clip = sawbClipFromSums(stats.sumSquares, stats.sumMagnitudes,
                                t.rows * t.cols, stats.maxFinite,
                                stats.nonfinite);
  return sawbQuantizer(clip, stats.nonfinite, op.format);
}

} // namespace

Result<GemmChoice> GpuLauncher::chooseGemm(const LaunchArgs &args) const {
  if (moduleInfo.quantizeOnly)
    return Result<GemmChoice>::failure(
        "this module quantizes only: it has no GEMM to launch");
  Result<GemmProblem> problem =
      checkGemmLaunch(moduleInfo.spec, args, Device::CUDA);
  if (!problem)
    return problem.takeError();
  return pick(*problem, args);
}

namespace {

/// The int8 placement can run the launch: K > 0 (a tensor map needs every
/// dimension), 32-bit box coordinates over A's stacked samples, and B's
/// codes shared by every sample (a LUQ right operand draws per sample).
bool int8Fits(const GemmSpec &s, const GemmProblem &p) {
  constexpr int64_t kMaxCoordinate = (int64_t(1) << 31) - 1;
  bool perSampleB = s.rhs.format == Format::Log4 && s.samples > 1;
  return p.k > 0 && p.k <= kMaxCoordinate && p.n <= kMaxCoordinate &&
         int64_t(s.samples) * p.m <= kMaxCoordinate && !perSampleB;
}

/// The cost model of the int8 placement (docs/gpu.md). It pays two
/// quantizer launches and one write and one read of a byte per operand
/// element; the fused GEMMs quantize A once per column tile and B once per
/// row tile, and LUQ's Philox costs about three times the tensor-core work
/// it feeds. So it wins once either operand would be quantized twice, on
/// problems large enough that the extra launches do not dominate.
bool int8Pays(const GemmProblem &p, const GemmTile &fused) {
  bool requantized =
      ceilDiv(p.n, fused.bn) >= 2 || ceilDiv(p.m, fused.bm) >= 2;
  return requantized && double(p.m) * double(p.n) * double(p.k) >= kInt8MinMacs;
}

/// The int8 GEMM's tile: the wide one where its tiles still give every
/// multiprocessor one.
WsTile pickWsTile(const GemmProblem &p, const DeviceInfo &device) {
  std::vector<WsTile> tiles = wsTiles();
  WsTile tile = tiles.front();
  for (const WsTile &t : tiles)
    if (ceilDiv(p.m, t.bm) * ceilDiv(p.n, t.bn) >= device.multiprocessors)
      tile = t;
  return tile;
}

/// The GEMM kernel of a launch of problem `p` with `args` on `device`, for
/// a module with `tiles` (small first) that has the quantize-once GEMMs
/// where `packedVariant` and the int8 placement where `int8Variant`.
GemmChoice pickGemm(const GpuModuleInfo &info,
                    const std::vector<GemmTile> &tiles, bool packedVariant,
                    bool int8Variant, Placement placement,
                    const GemmProblem &p, const LaunchArgs &args,
                    const DeviceInfo &device) {
  // The largest tile whose tiles still give every multiprocessor one;
  // small problems take the smallest tile, to spread over more of them.
  GemmChoice choice;
  choice.tile = tiles.front();
  for (const GemmTile &t : tiles)
    if (ceilDiv(p.m, t.bm) * ceilDiv(p.n, t.bn) >= device.multiprocessors)
      choice.tile = t;
  // cp.async moves 16-byte chunks: every base pointer and row pitch must
  // be a multiple of 16 bytes. The packed codes of the quantize-once
  // placement are the launcher's own, written with such a pitch.
  bool vecRest = vecLayout(args.rhs) && vecLayout(args.out);
  choice.vec = vecRest && vecLayout(args.lhs);
  choice.packedLhs = packedVariant && vecRest && p.k > 0 &&
                     ceilDiv(p.n, choice.tile.bn) >= kPackedLhsColumnTiles;
  if (choice.packedLhs)
    choice.vec = true;
  // TMA has the same alignment rules, and a tensor map needs every
  // dimension non-empty (K = 0 runs the `vec` GEMM). The packed scratch
  // stacks the SMP samples of A along its rows.
  bool lhsMap = choice.packedLhs
                    ? tmaShape(int64_t(info.spec.samples) * args.lhs.rows,
                               (args.lhs.cols + 1) / 2,
                               roundUp((args.lhs.cols + 1) / 2,
                                       kPackedPitchAlign))
                    : tmaShape(args.lhs);
  choice.tma = tmaModule(info) && choice.vec && p.m > 0 && p.n > 0 &&
               p.k > 0 && tmaShape(args.rhs) && lhsMap;
  choice.kernel = choice.tma
                      ? gemmTmaKernel(choice.tile, choice.packedLhs)
                      : gemmKernel(choice.tile, choice.vec, choice.packedLhs);
  bool int8 = int8Variant && placement != Placement::Fused &&
              int8Fits(info.spec, p) &&
              (placement == Placement::Int8 || int8Pays(p, choice.tile));
  if (int8) {
    choice.int8 = true;
    choice.packedLhs = choice.tma = false;
    choice.wsTile = pickWsTile(p, device);
    choice.kernel = gemmWsKernel(choice.wsTile);
  }
  return choice;
}

/// Every kernel a launch with `choice` runs, statistics first.
LaunchPlan planOf(const GemmSpec &s, const LaunchArgs &args,
                  GemmChoice choice) {
  LaunchPlan plan;
  plan.stats[0] = s.lhs.dtype != DType::Packed4 && !s.hindsight &&
                  args.lhs.rows * args.lhs.cols > 0;
  plan.stats[1] =
      s.rhs.dtype != DType::Packed4 && args.rhs.rows * args.rhs.cols > 0;
  for (int side = 0; side < 2; ++side)
    if (plan.stats[side])
      plan.kernels.push_back(statsKernel(side == 0));
  if (choice.packedLhs)
    plan.kernels.push_back(quantKernel(true));
  if (choice.int8) {
    plan.kernels.push_back(quant8Kernel(true));
    plan.kernels.push_back(quant8Kernel(false));
  }
  plan.kernels.push_back(choice.kernel);
  plan.choice = std::move(choice);
  return plan;
}

} // namespace

Result<LaunchPlan> lq::cuda::planGemmLaunch(const GpuModuleInfo &info,
                                           const LaunchArgs &args,
                                           const DeviceInfo &device,
                                           Placement placement) {
  using R = Result<LaunchPlan>;
  if (info.quantizeOnly || info.tiles.empty())
    return R::failure("this module quantizes only: it has no GEMM to launch");
  Result<GemmProblem> problem = checkGemmLaunch(info.spec, args, Device::CUDA);
  if (!problem)
    return problem.takeError();
  bool packedVariant = info.spec.lhs.format == Format::Log4 &&
                       info.spec.lhs.dtype != DType::Packed4;
  bool int8Variant = hasInt8Gemm(info.spec) &&
                     wsTiles().back().smemBytes() <= device.maxSharedOptin;
  return planOf(info.spec, args,
                pickGemm(info, smallFirst(info.tiles), packedVariant,
                         int8Variant, placement, *problem, args, device));
}

GemmChoice GpuLauncher::pick(const GemmProblem &p,
                             const LaunchArgs &args) const {
  return pickGemm(moduleInfo, tiles, packedLhsVariant, int8Variant, placement,
                  p, args, deviceInfo);
}

//===----------------------------------------------------------------------===//
// The pieces of a launch
//===----------------------------------------------------------------------===//

/// Where a GEMM launch keeps its pieces in the scratch buffer: the
/// statistics of each operand, the counters, and for the quantize-once
/// placement the packed codes of A (every sample, stacked along rows).
struct GpuLauncher::GemmScratch {
  size_t stats[2] = {0, 0};
  /// The counters of A (in-hindsight statistics) and, for the int8
  /// placement, of B's quantizer (discarded).
  size_t counters = 0, countersB = 0, packedA = 0, total = 0;
  int64_t packedPitch = 0, packedRows = 0;
  /// The int8 placement: A's codes [samples * m, int8Pitch], then B's
  /// [n, int8Pitch].
  size_t int8A = 0, int8B = 0;
  int64_t int8Pitch = 0;

  GemmScratch(const GemmSpec &s, const LaunchArgs &args, const GemmProblem &p,
              const GemmChoice &choice) {
    stats[1] = stats[0] + size_t(statsBytes(args.lhs.rows));
    counters = stats[1] + size_t(statsBytes(args.rhs.rows));
    countersB = counters + sizeof(QuantCounters);
    size_t end = countersB + sizeof(QuantCounters);
    packedA = int8A = size_t(roundUp(int64_t(end), 256));
    packedPitch = roundUp((args.lhs.cols + 1) / 2, kPackedPitchAlign);
    packedRows = int64_t(s.samples) * args.lhs.rows;
    int8Pitch = roundUp(p.k, kInt8PitchAlign);
    int8B = int8A + size_t(roundUp(int64_t(s.samples) * p.m * int8Pitch, 256));
    if (choice.packedLhs)
      total = packedA + size_t(packedRows) * size_t(packedPitch);
    else if (choice.int8)
      total = int8B + size_t(p.n) * size_t(int8Pitch);
    else
      total = end;
  }
  /// Statistics and counters accumulate: these bytes are zeroed first.
  size_t zeroed() const { return countersB + sizeof(QuantCounters); }
};

Status GpuLauncher::checkGemmMemory(const GemmProblem &p,
                                    const LaunchArgs &args) const {
  LQ_TRY(checkContext());
  LQ_TRY(checkTensorMemory("lhs", args.lhs));
  LQ_TRY(checkTensorMemory("rhs", args.rhs));
  LQ_TRY(checkTensorMemory("out", args.out));
  if (moduleInfo.spec.bias)
    LQ_TRY(checkPointer("bias", args.bias, size_t(p.n) * 4));
  return Done{};
}

Status GpuLauncher::launchStats(bool lhs, const TensorRef &t, CUdeviceptr out,
                                CUstream stream) {
  Result<CUfunction> fn = function(statsKernel(lhs));
  if (!fn)
    return fn.takeError();
  StatsParams params;
  params.in = address(t.data);
  params.rows = t.rows;
  params.cols = t.cols;
  params.rowStride = t.rowStride;
  params.stats = out;
  std::vector<void *> pointers = params.pointers();
  if (Status st = driver->launch(*fn, unsigned(statsBlocks(t.rows)), 1, 1,
                                 kStatsThreads, 0, stream, pointers.data());
      !st)
    return Error{statsKernel(lhs) + ": " + st.error()};
  return Done{};
}

Status GpuLauncher::readBack(size_t bytes, CUstream stream,
                             const std::string &what) {
  LQ_TRY(driver->copyToHost(hostScratch.data(), scratch.address(), bytes,
                            stream));
  if (Status st = driver->synchronize(stream); !st)
    return Error{what + ": " + st.error()};
  return Done{};
}

Status GpuLauncher::launchQuant(bool lhs, QuantParams &params,
                                CUstream stream, const std::string &kernel) {
  std::string name = kernel.empty() ? quantKernel(lhs) : kernel;
  Result<CUfunction> fn = function(name);
  if (!fn)
    return fn.takeError();
  std::vector<void *> pointers = params.pointers();
  if (Status st = driver->launch(
          *fn, unsigned(ceilDiv(ceilDiv(params.cols, 4), kQuantThreads)),
          unsigned(std::min<int64_t>(params.rows, kMaxGridY)), 1,
          kQuantThreads, 0, stream, pointers.data());
      !st)
    return Error{name + ": " + st.error()};
  return Done{};
}

Status GpuLauncher::encodeTensorMaps(const LaunchPlan &plan,
                                     const LaunchArgs &args,
                                     const GemmScratch &scratchLayout,
                                     GemmParams &params) {
  const GemmSpec &s = moduleInfo.spec;
  const GemmChoice &choice = plan.choice;
  CUtensorMap maps[2];
  Status mapA =
      choice.packedLhs
          ? operandMap(maps[0], *driver, choice.tile, true, s.lhs.transposed,
                       DType::Packed4, scratch.address() + scratchLayout.packedA,
                       scratchLayout.packedRows, args.lhs.cols,
                       scratchLayout.packedPitch)
          : operandMap(maps[0], *driver, choice.tile, true, s.lhs.transposed,
                       s.lhs.dtype, address(args.lhs.data), args.lhs.rows,
                       args.lhs.cols,
                       args.lhs.rowStride * int64_t(elementBytes(s.lhs.dtype)));
  if (!mapA)
    return Error{choice.kernel + ": the tensor map of A: " + mapA.error()};
  if (Status mapB = operandMap(
          maps[1], *driver, choice.tile, false, s.rhs.transposed, s.rhs.dtype,
          address(args.rhs.data), args.rhs.rows, args.rhs.cols,
          args.rhs.rowStride * int64_t(elementBytes(s.rhs.dtype)));
      !mapB)
    return Error{choice.kernel + ": the tensor map of B: " + mapB.error()};
  // By value: cuLaunchKernel copies them into the launch's parameters.
  std::memcpy(&params.tmapA, &maps[0], sizeof(CUtensorMap));
  std::memcpy(&params.tmapB, &maps[1], sizeof(CUtensorMap));
  return Done{};
}

Result<std::array<OperandQuantizer, 2>>
GpuLauncher::operandQuantizers(const LaunchPlan &plan, const LaunchArgs &args,
                               const GemmScratch &layout, CUstream stream) {
  const GemmSpec &s = moduleInfo.spec;
  const TensorRef *operands[2] = {&args.lhs, &args.rhs};
  for (int side = 0; side < 2; ++side)
    if (plan.stats[side])
      LQ_TRY(launchStats(side == 0, *operands[side],
                         scratch.address() + layout.stats[side], stream));
  if (plan.stats[0] || plan.stats[1])
    LQ_TRY(readBack(layout.counters, stream,
                    "statistics of the GEMM operands"));
  std::array<OperandQuantizer, 2> quantizers;
  const OperandSpec *specs[2] = {&s.lhs, &s.rhs};
  for (int side = 0; side < 2; ++side) {
    if (!specs[side]->isFloat())
      continue;
    Statistics stats;
    if (plan.stats[side])
      stats = readStatistics(hostScratch.data() + layout.stats[side],
                             operands[side]->rows,
                             specs[side]->format != Format::Log4);
    quantizers[side] = quantizerOf(*specs[side], *operands[side], stats,
                                   side == 0 && s.hindsight, args.maxEstimate);
  }
  return quantizers;
}

Status GpuLauncher::quantizeOnce(const LaunchArgs &args,
                                 const GemmScratch &layout, GemmParams &params,
                                 CUstream stream) {
  // Every sample of A to packed codes (the quantizer counts the
  // in-hindsight statistics, once per sample); the `_pa` GEMM reads them.
  QuantParams q;
  q.in = params.a;
  q.rows = args.lhs.rows;
  q.cols = args.lhs.cols;
  q.rowStride = args.lhs.rowStride;
  q.outStride = layout.packedPitch;
  q.inv = params.invA;
  q.seed = params.seed;
  q.stream = params.stream;
  q.zero = params.zero & 1;
  q.counters = params.counters;
  for (unsigned sample = 0; sample < moduleInfo.spec.samples; ++sample) {
    q.out = scratch.address() + layout.packedA +
            size_t(sample) * size_t(q.rows) * size_t(layout.packedPitch);
    q.sample = int32_t(sample);
    LQ_TRY(launchQuant(true, q, stream));
  }
  params.a = scratch.address() + layout.packedA;
  params.lda = layout.packedPitch;
  return Done{};
}

Status GpuLauncher::launchGemm(const GemmChoice &choice,
                               const GemmProblem &p, GemmParams &params,
                               CUstream stream) {
  Result<CUfunction> gemm = function(choice.kernel);
  if (!gemm)
    return gemm.takeError();
  // The driver reads as many parameters as the kernel declares: the tensor
  // maps only for the `_tma` GEMMs.
  std::vector<void *> pointers = params.pointers();
  const GemmTile &tile = choice.tile;
  if (Status st = driver->launch(*gemm, unsigned(ceilDiv(p.n, tile.bn)),
                                 unsigned(ceilDiv(p.m, tile.bm)), 1,
                                 unsigned(tile.threads),
                                 unsigned(tile.smemBytes), stream,
                                 pointers.data());
      !st)
    return Error{choice.kernel + ": " + st.error()};
  return Done{};
}

Int8MapShape lq::cuda::int8MapShape(int64_t rows, int64_t k, int64_t pitch,
                                    int boxRows) {
  Int8MapShape shape;
  shape.dims[0] = uint64_t(k);
  shape.dims[1] = uint64_t(rows);
  shape.pitch = uint64_t(pitch);
  shape.box[0] = uint32_t(kWsBK);
  shape.box[1] = uint32_t(boxRows);
  shape.swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
  return shape;
}

namespace {

/// The tensor map of int8MapShape(rows, k, pitch, boxRows) at `base`; the
/// edges fill with zeros (zero codes).
Status int8Map(CUtensorMap &map, const CudaDriver &driver, CUdeviceptr base,
               int64_t rows, int64_t k, int64_t pitch, int boxRows) {
  Int8MapShape shape = int8MapShape(rows, k, pitch, boxRows);
  cuuint64_t dims[2] = {shape.dims[0], shape.dims[1]};
  cuuint64_t strides[1] = {shape.pitch};
  cuuint32_t boxDims[2] = {shape.box[0], shape.box[1]};
  cuuint32_t elementStrides[2] = {1, 1};
  return driver.encodeTiled(
      map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, base, dims, strides, boxDims,
      elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, shape.swizzle,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

} // namespace

Status GpuLauncher::quantizeInt8(const LaunchArgs &args, const GemmProblem &p,
                                 const GemmScratch &layout,
                                 const GemmParams &params, CUstream stream) {
  // Each operand once (A once per SMP sample) to int8 codes K-contiguous;
  // A's quantizer counts the in-hindsight statistics, B's counts go to a
  // slot of their own.
  const TensorRef *operands[2] = {&args.lhs, &args.rhs};
  const size_t codes[2] = {layout.int8A, layout.int8B};
  const float inv[2] = {params.invA, params.invB};
  const CUdeviceptr counters[2] = {params.counters,
                                   scratch.address() + layout.countersB};
  const int64_t codeRows[2] = {p.m, p.n};
  for (int side = 0; side < 2; ++side) {
    const TensorRef &t = *operands[side];
    QuantParams q;
    q.in = address(t.data);
    q.rows = t.rows;
    q.cols = t.cols;
    q.rowStride = t.rowStride;
    q.outStride = layout.int8Pitch;
    q.inv = inv[side];
    q.seed = params.seed;
    q.stream = params.stream;
    q.zero = (params.zero >> side) & 1;
    q.counters = counters[side];
    unsigned samples = side == 0 ? moduleInfo.spec.samples : 1;
    for (unsigned sample = 0; sample < samples; ++sample) {
      q.out = scratch.address() + codes[side] +
              size_t(sample) * size_t(codeRows[side]) *
                  size_t(layout.int8Pitch);
      q.sample = int32_t(sample);
      LQ_TRY(launchQuant(side == 0, q, stream, quant8Kernel(side == 0)));
    }
  }
  return Done{};
}

Status GpuLauncher::launchGemmWs(const GemmChoice &choice, const GemmProblem &p,
                                 const GemmScratch &layout,
                                 const GemmParams &params, CUstream stream) {
  Result<CUfunction> gemm = function(choice.kernel);
  if (!gemm)
    return gemm.takeError();
  const WsTile &tile = choice.wsTile;
  unsigned samples = moduleInfo.spec.samples;
  CUtensorMap maps[2];
  if (Status a = int8Map(maps[0], *driver, scratch.address() + layout.int8A,
                         int64_t(samples) * p.m, p.k, layout.int8Pitch,
                         tile.bm);
      !a)
    return Error{choice.kernel + ": the tensor map of A's codes: " + a.error()};
  if (Status b = int8Map(maps[1], *driver, scratch.address() + layout.int8B,
                         p.n, p.k, layout.int8Pitch, tile.bn);
      !b)
    return Error{choice.kernel + ": the tensor map of B's codes: " + b.error()};
  GemmWsParams ws;
  ws.c = params.c;
  ws.ldc = params.ldc;
  ws.bias = params.bias;
  ws.m = params.m;
  ws.n = params.n;
  ws.k = params.k;
  ws.samples = int32_t(samples);
  ws.scale = params.scale;
  std::memcpy(&ws.tmapA, &maps[0], sizeof(CUtensorMap));
  std::memcpy(&ws.tmapB, &maps[1], sizeof(CUtensorMap));
  // Persistent: at most one CTA per multiprocessor walks the tiles.
  int64_t tiles = ceilDiv(p.m, tile.bm) * ceilDiv(p.n, tile.bn);
  unsigned grid = unsigned(
      std::max<int64_t>(1, std::min<int64_t>(tiles, deviceInfo.multiprocessors)));
  std::vector<void *> pointers = ws.pointers();
  if (Status st = driver->launch(*gemm, grid, 1, 1, kWsThreads,
                                 unsigned(tile.smemBytes()), stream,
                                 pointers.data());
      !st)
    return Error{choice.kernel + ": " + st.error()};
  return Done{};
}

Status GpuLauncher::finishHindsight(const GemmChoice &choice,
                                    const GemmProblem &p,
                                    const GemmParams &params,
                                    LaunchStatus &status, CUstream stream) {
  // In-hindsight mode has no pre-pass: the GEMM (or the quantize-once
  // quantizer) counted the statistics of A while quantizing it.
  QuantCounters counted;
  LQ_TRY(driver->copyToHost(&counted, params.counters, sizeof(counted),
                            stream));
  if (Status st = driver->synchronize(stream); !st)
    return Error{choice.kernel + ": " + st.error()};
  bool nonfinite = counted.maxAnyBits >= kF32InfBits;
  status.nonfinite |= nonfinite;
  if (!nonfinite) {
    // The fused GEMM counts once per element, the quantizer once per
    // sample; every sample saturates the same elements, and the host
    // runtime counts each sample.
    bool perSample = choice.packedLhs || choice.int8;
    status.overflow = uint64_t(counted.overflow) *
                      (perSample ? 1 : moduleInfo.spec.samples);
    status.lhsMax = numerics::bitsToFloat(counted.maxAnyBits);
    return Done{};
  }
  // The codes of A must all be zero: the output becomes epilogue(0).
  Result<CUfunction> fill = function(kFillKernel);
  if (!fill)
    return fill.takeError();
  FillParams f;
  f.c = params.c;
  f.ldc = params.ldc;
  f.bias = params.bias;
  f.m = params.m;
  f.n = params.n;
  std::vector<void *> pointers = f.pointers();
  if (Status st = driver->launch(*fill, unsigned(ceilDiv(p.n, 16)),
                                 unsigned(ceilDiv(p.m, 16)), 1, kFillThreads,
                                 0, stream, pointers.data());
      !st)
    return Error{std::string(kFillKernel) + ": " + st.error()};
  status.lhsScale = 0.0f;
  return Done{};
}

//===----------------------------------------------------------------------===//
// Launches
//===----------------------------------------------------------------------===//

Result<LaunchPlan> GpuLauncher::planLaunch(const GemmProblem &p,
                                           const LaunchArgs &args) const {
  const GemmSpec &s = moduleInfo.spec;
  LaunchPlan plan = planOf(s, args, pick(p, args));
  if (p.m > INT_MAX || p.n > INT_MAX)
    return Error{"the GEMM kernels take 32-bit sizes: M = " +
                 std::to_string(p.m) + ", N = " + std::to_string(p.n)};
  const GemmTile &tile = plan.choice.tile;
  if (!plan.choice.int8 && ceilDiv(p.m, tile.bm) > kMaxGridY)
    return Error{"M = " + std::to_string(p.m) + " needs more than " +
                 std::to_string(kMaxGridY) + " row tiles of " +
                 std::to_string(tile.bm)};
  if (s.hindsight && ceilDiv(p.m, 16) > kMaxGridY)
    return Error{"M = " + std::to_string(p.m) +
                 " is too large for the epilogue fill of in-hindsight mode "
                 "(at most " +
                 std::to_string(kMaxGridY * 16) + " rows)"};
  LQ_TRY(checkGemmMemory(p, args));
  return plan;
}

/// The GEMM's parameters from the arguments and the operands' quantizers.
GemmParams GpuLauncher::gemmParams(
    const GemmProblem &p, const LaunchArgs &args,
    const std::array<OperandQuantizer, 2> &q, const LaunchStatus &status,
    CUdeviceptr counters) const {
  const GemmSpec &s = moduleInfo.spec;
  bool lhsFloat = s.lhs.isFloat(), rhsFloat = s.rhs.isFloat();
  GemmParams params;
  params.a = address(args.lhs.data);
  params.lda = args.lhs.rowStride;
  params.b = address(args.rhs.data);
  params.ldb = args.rhs.rowStride;
  params.c = address(args.out.data);
  params.ldc = args.out.rowStride;
  params.bias = address(args.bias);
  params.m = int32_t(p.m);
  params.n = int32_t(p.n);
  params.k = int32_t(p.k);
  params.invA = lhsFloat ? q[0].inv : 0.0f;
  params.invB = rhsFloat ? q[1].inv : 0.0f;
  float scale = status.lhsScale * status.rhsScale;
  if (s.samples > 1)
    scale = scale * (1.0f / float(s.samples));
  params.scale = scale;
  params.zero = (lhsFloat && q[0].zero ? 1 : 0) | (rhsFloat && q[1].zero ? 2 : 0);
  params.seed = int64_t(args.seed);
  params.stream = int32_t(args.stream);
  params.counters = counters;
  return params;
}

Result<LaunchStatus> GpuLauncher::launch(const LaunchArgs &args,
                                         CUstream stream) {
  const GemmSpec &s = moduleInfo.spec;
  if (moduleInfo.quantizeOnly)
    return Error{"this module quantizes only: it has no GEMM to launch"};
  Result<GemmProblem> problem = checkGemmLaunch(s, args, Device::CUDA);
  if (!problem)
    return problem.takeError();
  const GemmProblem &p = *problem;
  LaunchStatus status;
  if (p.m == 0 || p.n == 0)
    return status;
  Result<LaunchPlan> plan = planLaunch(p, args);
  if (!plan)
    return plan.takeError();
  const GemmChoice &choice = plan->choice;

  std::lock_guard<std::mutex> lock(mutex);
  LQ_TRY(ensureKernels(plan->kernels));
  LQ_TRY(driver->waitEvent(stream, scratchDone));
  ScratchRelease release(*driver, scratchDone, stream);
  GemmScratch layout(s, args, p, choice);
  LQ_TRY(ensureScratch(layout.total, layout.zeroed()));
  LQ_TRY(driver->fill(scratch.address(), 0, layout.zeroed(), stream));

  auto quantizers = operandQuantizers(*plan, args, layout, stream);
  if (!quantizers)
    return quantizers.takeError();
  const OperandQuantizer &lq = (*quantizers)[0], &rq = (*quantizers)[1];
  bool lhsFloat = s.lhs.isFloat(), rhsFloat = s.rhs.isFloat();
  status.lhsScale = lhsFloat ? lq.scale : args.lhsScale;
  status.rhsScale = rhsFloat ? rq.scale : args.rhsScale;
  status.lhsRange = lq.range;
  status.rhsRange = rq.range;
  status.nonfinite = lq.nonfinite || rq.nonfinite;
  if (lhsFloat && s.lhs.format == Format::Log4 && !s.hindsight)
    status.lhsMax = lq.range;

  GemmParams params = gemmParams(p, args, *quantizers, status,
                                 scratch.address() + layout.counters);
  if (choice.int8) {
    LQ_TRY(quantizeInt8(args, p, layout, params, stream));
    LQ_TRY(launchGemmWs(choice, p, layout, params, stream));
  } else {
    if (choice.tma)
      LQ_TRY(encodeTensorMaps(*plan, args, layout, params));
    if (choice.packedLhs)
      LQ_TRY(quantizeOnce(args, layout, params, stream));
    LQ_TRY(launchGemm(choice, p, params, stream));
  }
  // An unusable estimate zeroed A without looking at it, as the host
  // runtime does: nothing was counted.
  if (s.hindsight && !lq.zero)
    LQ_TRY(finishHindsight(choice, p, params, status, stream));
  return status;
}

Status GpuLauncher::checkQuantizeArgs(const QuantizeArgs &args,
                                      Operand side) const {
  const OperandSpec &op =
      side == Operand::Lhs ? moduleInfo.spec.lhs : moduleInfo.spec.rhs;
  std::string name = sideName(side);
  if (moduleInfo.quantizeOnly && side == Operand::Rhs)
    return Error{"a quantize module quantizes its left operand only"};
  if (!op.isFloat())
    return Error{"the module's " + name +
                 " operand is packed: it has no quantizer"};
  LQ_TRY(checkQuantize(args, Device::CUDA));
  if (args.format != op.format)
    return Error{std::string("format ") + formatName(args.format) +
                 " differs from the module's " + name + " quantizer (" +
                 formatName(op.format) + ")"};
  if (args.input.dtype != op.dtype)
    return Error{std::string("input: dtype ") + dtypeName(args.input.dtype) +
                 " differs from the module's " + name + " quantizer (" +
                 dtypeName(op.dtype) + ")"};
  LQ_TRY(checkContext());
  LQ_TRY(checkTensorMemory("input", args.input));
  LQ_TRY(checkTensorMemory("output", args.output));
  return Done{};
}

Result<QuantizeStatus> GpuLauncher::quantize(const QuantizeArgs &args,
                                             CUstream stream, Operand side) {
  LQ_TRY(checkQuantizeArgs(args, side));
  const OperandSpec &op =
      side == Operand::Lhs ? moduleInfo.spec.lhs : moduleInfo.spec.rhs;
  bool lhs = side == Operand::Lhs;
  const TensorRef &in = args.input, &out = args.output;
  bool hindsight = args.maxEstimate.has_value();
  int64_t count = in.rows * in.cols;
  std::vector<std::string> kernels;
  if (count > 0)
    kernels.push_back(quantKernel(lhs));
  if (count > 0 && !hindsight)
    kernels.push_back(statsKernel(lhs));

  std::lock_guard<std::mutex> lock(mutex);
  LQ_TRY(ensureKernels(kernels));
  LQ_TRY(driver->waitEvent(stream, scratchDone));
  ScratchRelease release(*driver, scratchDone, stream);
  size_t counters = hindsight ? 0 : size_t(statsBytes(in.rows));
  size_t total = counters + sizeof(QuantCounters);
  LQ_TRY(ensureScratch(total, total));
  LQ_TRY(driver->fill(scratch.address(), 0, total, stream));
  Statistics stats;
  if (!hindsight && count > 0) {
    LQ_TRY(launchStats(lhs, in, scratch.address(), stream));
    LQ_TRY(readBack(counters, stream, "statistics of the input"));
    stats = readStatistics(hostScratch.data(), in.rows,
                           op.format != Format::Log4);
  }
  OperandQuantizer q = quantizerOf(op, in, stats, hindsight,
                                   args.maxEstimate.value_or(0.0f));
  QuantizeStatus status;
  status.scale = q.scale;
  status.nonfinite = q.nonfinite;
  // The range of LUQ with an estimate is the max the quantizer sees.
  status.range = op.format == Format::Log4 && hindsight ? 0.0f : q.range;
  if (count == 0)
    return status;

  QuantParams params;
  params.in = address(in.data);
  params.rows = in.rows;
  params.cols = in.cols;
  params.rowStride = in.rowStride;
  params.out = address(out.data);
  params.outStride = out.rowStride;
  params.inv = q.inv;
  params.seed = int64_t(args.seed);
  params.stream = int32_t(args.stream);
  params.sample = int32_t(args.sample);
  params.zero = q.zero ? 1 : 0;
  params.counters = scratch.address() + counters;
  LQ_TRY(launchQuant(lhs, params, stream));
  if (hindsight && !q.zero)
    LQ_TRY(finishQuantizeHindsight(lhs, params, status, stream));
  return status;
}

Status GpuLauncher::finishQuantizeHindsight(bool lhs, QuantParams &params,
                                            QuantizeStatus &status,
                                            CUstream stream) {
  QuantCounters counted;
  LQ_TRY(driver->copyToHost(&counted, params.counters, sizeof(counted),
                            stream));
  if (Status st = driver->synchronize(stream); !st)
    return Error{quantKernel(lhs) + ": " + st.error()};
  if (counted.maxAnyBits < kF32InfBits) {
    status.overflow = counted.overflow;
    status.range = numerics::bitsToFloat(counted.maxAnyBits);
    return Done{};
  }
  // A non-finite element: every code becomes zero.
  params.zero = 1;
  LQ_TRY(launchQuant(lhs, params, stream));
  status.nonfinite = true;
  status.scale = 0.0f;
  return Done{};
}
