//===- HostLaunch.cpp - host kernels run as one parallel region -----------===//
//
// Every phase's work is a list of items whose number and extent depend on
// the shapes alone. Threads claim items in any order, each item writes its
// own partial result, and after the phase's barrier every thread reduces
// the partial results in item order: the same values whichever thread ran
// which item, and on as many threads as the launch gets. That is what
// keeps results bit-exact (f64 moment sums in a fixed order of fixed row
// chunks), and it lets each thread derive the next phase's parameters
// itself instead of waiting for one thread to publish them.
//
//===----------------------------------------------------------------------===//

#include "HostLaunch.h"

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Numerics/Types.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>

using namespace lq;
using namespace lq::runtime;

namespace {

using MemRefDesc = cpu::MemRef1D;

/// Kernel memrefs have an identity layout: their offset is always 0, so a
/// view into a buffer starts at its own pointer.
MemRefDesc memref(const void *data, int64_t size) {
  void *p = const_cast<void *>(data);
  return {p, p, 0, size, 1};
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Rows per statistics chunk: fixed, so that f64 sums do not depend on the
/// number of threads.
constexpr int64_t kMomentRows = 32;
/// Bytes of A panels a GEMM keeps hot while B panels stream past: about half
/// of a per-core L2 cache.
constexpr int64_t kPanelGroupBytes = 192 * 1024;
/// Elements a quantizer or packing item covers: large enough that claiming
/// it costs nothing in comparison, small enough to balance two threads.
constexpr int64_t kItemElements = 16384;
/// Work per thread (GemmLaunch::work's units, about a nanosecond each)
/// below which waking another thread costs more than it saves: an idle
/// virtual CPU takes up to about 70 us to wake.
constexpr int64_t kWorkPerThread = 32768;

/// Rows of `cols` elements per item.
int64_t rowsPerItem(int64_t cols) {
  return std::max<int64_t>(1, kItemElements / std::max<int64_t>(1, cols));
}

/// The threads a region of `work` units gets.
unsigned participantsFor(int64_t work, unsigned threads) {
  return unsigned(std::clamp<int64_t>(work / kWorkPerThread, 1, threads));
}

/// Runs fn(i) for every item i < count that this thread claims.
template <typename Fn>
void forEachItem(std::atomic<int64_t> &next, int64_t count, Fn fn) {
  for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
       i = next.fetch_add(1, std::memory_order_relaxed))
    fn(i);
}

/// The statistics of a float operand, reduced from its items.
struct OperandStats {
  float max = 0.0f;  // max |x| over the finite elements
  float clip = 0.0f; // SAWB only
  bool nonfinite = false;
};

/// What quantizing a float operand gave.
struct Quantized {
  float scale = 0.0f;
  float max = 0.0f;   // LUQ: max |x| over the finite elements
  float range = 0.0f; // the LUQ max or estimate, or the SAWB clip
  bool nonfinite = false;
  uint64_t overflow = 0;
  /// In-hindsight scaling found a non-finite element while quantizing:
  /// the codes written must be zeroed.
  bool zeroCodes = false;
};

} // namespace

//===----------------------------------------------------------------------===//
// Float operands
//===----------------------------------------------------------------------===//

namespace {

/// How a float operand takes part in a region.
struct OperandRole {
  int side = 0; // the stages' lhs (0) or rhs (1)
  Format format = Format::SInt4;
  TensorRef t;
  unsigned samples = 1;
  uint32_t firstSample = 0;
  /// LUQ scaled by an in-hindsight estimate: no statistics pass, and a
  /// non-finite element is found while quantizing.
  bool hindsight = false;
  /// False for statistics alone: no codes.
  bool quantize = true;
};

/// A float operand's statistics items (LUQ max or SAWB moments of row
/// ranges), quantization items (rows of one SMP sample) and workspace.
class FloatOperand {
public:
  FloatOperand(const OperandRole &role, WorkspaceLayout &layout);
  void place(uint8_t *base);

  int64_t elements() const { return count() * r.samples; }
  int8_t *codes() const { return codeBytes; }

  int64_t statItems() const;
  void statItem(const HostStages &stages, int64_t i) const;
  OperandStats statistics() const;
  OperandQuantizer quantizer(const OperandStats &stats, float estimate) const;

  int64_t quantItems() const { return r.quantize ? rowItems * r.samples : 0; }
  void quantItem(const HostStages &stages, const OperandQuantizer &q,
                 uint64_t seed, uint32_t stream, int64_t i) const;
  Quantized finish(const OperandStats &stats, const OperandQuantizer &q) const;
  void zeroCodes() const { std::memset(codeBytes, 0, size_t(elements())); }

private:
  bool luq() const { return r.format == Format::Log4; }
  int64_t count() const { return r.t.rows * r.t.cols; }
  MemRefDesc input() const {
    return memref(r.t.data, r.t.rows * r.t.rowStride);
  }

  OperandRole r;
  int64_t itemRows, rowItems, chunks, chunksPerItem;
  size_t codesAt, momentsAt, maxAt, quantAt;
  int8_t *codeBytes = nullptr;
  double *moments = nullptr;     // 4 per chunk: SAWB
  int32_t *maxBits = nullptr;    // 2 per row item: LUQ without an estimate
  int32_t *quantStats = nullptr; // 2 per quantization item
};

FloatOperand::FloatOperand(const OperandRole &role, WorkspaceLayout &layout)
    : r(role) {
  itemRows = rowsPerItem(r.t.cols);
  rowItems = ceilDiv(r.t.rows, itemRows);
  chunks = ceilDiv(r.t.rows, kMomentRows);
  chunksPerItem = std::max<int64_t>(1, itemRows / kMomentRows);
  codesAt = layout.add(r.quantize ? size_t(elements()) : 0);
  momentsAt = layout.add(luq() ? 0 : size_t(4 * chunks) * sizeof(double));
  maxAt = layout.add(
      luq() && !r.hindsight ? size_t(2 * rowItems) * sizeof(int32_t) : 0);
  quantAt = layout.add(size_t(2 * quantItems()) * sizeof(int32_t));
}

void FloatOperand::place(uint8_t *base) {
  codeBytes = reinterpret_cast<int8_t *>(base + codesAt);
  moments = reinterpret_cast<double *>(base + momentsAt);
  maxBits = reinterpret_cast<int32_t *>(base + maxAt);
  quantStats = reinterpret_cast<int32_t *>(base + quantAt);
}

int64_t FloatOperand::statItems() const {
  if (luq())
    return r.hindsight ? 0 : rowItems;
  return ceilDiv(chunks, chunksPerItem);
}

void FloatOperand::statItem(const HostStages &stages, int64_t i) const {
  const TensorRef &t = r.t;
  if (luq()) {
    MemRefDesc in = input(), out = memref(maxBits + 2 * i, 2);
    int64_t r0 = i * itemRows, r1 = std::min(t.rows, r0 + itemRows);
    stages.maxAbs[r.side](&in, t.rows, t.cols, t.rowStride, r0, r1, &out);
    return;
  }
  int64_t end = std::min(chunks, (i + 1) * chunksPerItem);
  for (int64_t c = i * chunksPerItem; c < end; ++c) {
    MemRefDesc in = input(), out = memref(moments + 4 * c, 4);
    stages.moments[r.side](&in, t.rows, t.cols, t.rowStride, c * kMomentRows,
                           std::min(t.rows, (c + 1) * kMomentRows), &out);
  }
}

OperandStats FloatOperand::statistics() const {
  OperandStats s;
  if (luq()) {
    if (r.hindsight)
      return s;
    uint32_t finite = 0, raw = 0;
    for (int64_t i = 0; i < rowItems; ++i) {
      finite = std::max(finite, uint32_t(maxBits[2 * i]));
      raw = std::max(raw, uint32_t(maxBits[2 * i + 1]));
    }
    s.max = numerics::bitsToFloat(finite);
    s.nonfinite = raw >= kF32InfBits;
    return s;
  }
  // In chunk order: the f64 sums are the same on any number of threads.
  double sumSquares = 0.0, sumMagnitudes = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    sumSquares += moments[4 * c];
    sumMagnitudes += moments[4 * c + 1];
    s.max = std::max(s.max, float(moments[4 * c + 2]));
    s.nonfinite |=
        !(moments[4 * c + 3] < double(numerics::bitsToFloat(kF32InfBits)));
  }
  s.clip =
      sawbClipFromSums(sumSquares, sumMagnitudes, count(), s.max, s.nonfinite);
  return s;
}

OperandQuantizer FloatOperand::quantizer(const OperandStats &s,
                                         float estimate) const {
  if (!luq())
    return sawbQuantizer(s.clip, s.nonfinite, r.format);
  if (r.hindsight)
    return luqQuantizer(estimate, !std::isfinite(estimate));
  return luqQuantizer(s.max, s.nonfinite);
}

void FloatOperand::quantItem(const HostStages &stages,
                             const OperandQuantizer &q, uint64_t seed,
                             uint32_t stream, int64_t i) const {
  const TensorRef &t = r.t;
  int64_t sample = i / rowItems, item = i % rowItems;
  int64_t r0 = item * itemRows, r1 = std::min(t.rows, r0 + itemRows);
  int8_t *sampleCodes = codeBytes + sample * count();
  // A range that is not usable (or a non-finite tensor) gives zero codes.
  if (q.zero) {
    std::memset(sampleCodes + r0 * t.cols, 0, size_t((r1 - r0) * t.cols));
    return;
  }
  MemRefDesc in = input(), codes = memref(sampleCodes, count());
  MemRefDesc out = memref(quantStats + 2 * i, 2);
  stages.quant[r.side](&in, t.rows, t.cols, t.rowStride, r0, r1, &codes, q.inv,
                       seed, stream, r.firstSample + uint32_t(sample), &out);
}

Quantized FloatOperand::finish(const OperandStats &s,
                               const OperandQuantizer &q) const {
  Quantized done;
  done.scale = q.scale;
  done.range = q.range;
  done.nonfinite = q.nonfinite;
  done.max = luq() && !r.hindsight ? s.max : 0.0f;
  if (q.zero)
    return done;
  uint32_t raw = 0;
  for (int64_t i = 0; i < quantItems(); ++i) {
    done.overflow += uint32_t(quantStats[2 * i]);
    raw = std::max(raw, uint32_t(quantStats[2 * i + 1]));
  }
  if (!r.hindsight)
    return done;
  // The max under the estimate is known only now: it feeds the next
  // estimate, and a non-finite element voids the codes.
  done.nonfinite |= raw >= kF32InfBits;
  done.max = done.nonfinite ? 0.0f : numerics::bitsToFloat(raw);
  if (done.nonfinite) {
    done.zeroCodes = true;
    done.scale = 0.0f;
    done.overflow = 0;
  }
  return done;
}

} // namespace

//===----------------------------------------------------------------------===//
// GEMM launches
//===----------------------------------------------------------------------===//

namespace {

/// The panels lq_pack_a and lq_pack_b write for the micro-kernel, in int32
/// words (four 8-bit K steps each, and a correction header per block; see
/// CpuKernels.h), padded to whole tiles and K quads.
struct Panels {
  int64_t kSteps = 0;      // the GEMM stage's K argument: quads
  int64_t aElements = 0;   // int32 words
  int64_t bElements = 0;   // int32 words
  int64_t aBlockBytes = 0; // one block of kCpuTileRows rows, all samples
  size_t aBytes() const { return size_t(aElements) * 4; }
  size_t bBytes() const { return size_t(bElements) * 4; }
};

Panels panelsFor(int64_t m, int64_t n, int64_t k, unsigned samples) {
  Panels p;
  p.kSteps = cpuKQuads(k);
  p.aBlockBytes = cpuPanelABlockWords(k, samples) * 4;
  p.aElements = ceilDiv(m, kCpuTileRows) * cpuPanelABlockWords(k, samples);
  p.bElements = ceilDiv(n, kCpuTileCols) * cpuPanelBBlockWords(k);
  return p;
}

/// One GEMM launch: statistics and quantization of its float operands,
/// packing of both, the product.
class GemmLaunch {
public:
  GemmLaunch(const GemmSpec &spec, const HostStages &stages,
             const LaunchArgs &args, const GemmProblem &problem);
  size_t workspaceBytes() const { return layout.size(); }
  void place(uint8_t *base);
  /// About a nanosecond per unit on one thread.
  int64_t work() const;
  void run(Region &region);
  LaunchStatus status() const;

private:
  void statItem(int64_t i) const;
  void quantItem(const OperandQuantizer (&q)[2], int64_t i) const;
  void packItem(int64_t i) const;
  void multiply(Region &region, float scale);

  const GemmSpec &spec;
  const HostStages &stages;
  const LaunchArgs &args;
  int64_t M, N, K;
  unsigned samples;
  WorkspaceLayout layout;
  std::optional<FloatOperand> ops[2];
  Panels panels;
  int64_t rowBlocks, colBlocks, aBlocksPerItem, bBlocksPerItem;
  /// Row blocks whose A panels stay in cache while B panels stream past.
  int64_t group;
  size_t panelAAt, panelBAt;
  void *panelA = nullptr;
  void *panelB = nullptr;
  /// The operands as packing reads them: codes of a float operand, the
  /// caller's bytes of a packed one.
  const void *source[2];
  int64_t sourceStride[2], sourceBytes[2], lhsSampleStride;
  /// The next unclaimed item of each phase.
  std::atomic<int64_t> next[4] = {{0}, {0}, {0}, {0}};
  Quantized result[2];
};

GemmLaunch::GemmLaunch(const GemmSpec &spec, const HostStages &stages,
                       const LaunchArgs &args, const GemmProblem &problem)
    : spec(spec), stages(stages), args(args), M(problem.m), N(problem.n),
      K(problem.k), samples(spec.samples) {
  const TensorRef *tensors[2] = {&args.lhs, &args.rhs};
  const OperandSpec *specs[2] = {&spec.lhs, &spec.rhs};
  for (int side = 0; side < 2; ++side) {
    const TensorRef &t = *tensors[side];
    source[side] = t.data;
    sourceStride[side] = t.rowStride;
    if (specs[side]->dtype == DType::Packed4)
      continue;
    OperandRole role;
    role.side = side;
    role.format = specs[side]->format;
    role.t = t;
    role.samples = side == 0 ? samples : 1;
    role.hindsight = side == 0 && spec.hindsight;
    ops[side].emplace(role, layout);
    sourceStride[side] = t.cols;
  }
  // SMP samples: stacked along the rows of a packed operand, one after
  // another in the codes of a float one.
  lhsSampleStride = problem.lhsRows * sourceStride[0];
  sourceBytes[0] = lhsSampleStride * samples;
  sourceBytes[1] = args.rhs.rows * sourceStride[1];

  panels = panelsFor(M, N, K, samples);
  rowBlocks = ceilDiv(M, kCpuTileRows);
  colBlocks = ceilDiv(N, kCpuTileCols);
  int64_t k = std::max<int64_t>(1, K);
  aBlocksPerItem =
      std::max<int64_t>(1, kItemElements / (kCpuTileRows * samples * k));
  bBlocksPerItem = std::max<int64_t>(1, kItemElements / (kCpuTileCols * k));
  group = std::max<int64_t>(1, kPanelGroupBytes /
                                   std::max<int64_t>(1, panels.aBlockBytes));
  panelAAt = layout.add(panels.aBytes());
  panelBAt = layout.add(panels.bBytes());
}

void GemmLaunch::place(uint8_t *base) {
  for (int side = 0; side < 2; ++side)
    if (ops[side]) {
      ops[side]->place(base);
      source[side] = ops[side]->codes();
    }
  panelA = base + panelAAt;
  panelB = base + panelBAt;
}

int64_t GemmLaunch::work() const {
  double elements = 0.0;
  for (const std::optional<FloatOperand> &op : ops)
    if (op)
      elements += double(op->elements());
  // vpmaddwd does 16 multiply-adds per instruction.
  double macs = double(M) * double(N) * double(K) * samples;
  return int64_t(std::min(elements + macs / 16.0, 1e18));
}

// Items of a phase: those of the left operand, then the right one's.
void GemmLaunch::statItem(int64_t i) const {
  int64_t lhsItems = ops[0] ? ops[0]->statItems() : 0;
  if (i < lhsItems)
    ops[0]->statItem(stages, i);
  else
    ops[1]->statItem(stages, i - lhsItems);
}

void GemmLaunch::quantItem(const OperandQuantizer (&q)[2], int64_t i) const {
  int64_t lhsItems = ops[0] ? ops[0]->quantItems() : 0;
  int side = i < lhsItems ? 0 : 1;
  ops[side]->quantItem(stages, q[side], args.seed, args.stream,
                       side == 0 ? i : i - lhsItems);
}

void GemmLaunch::packItem(int64_t i) const {
  int64_t aItems = ceilDiv(rowBlocks, aBlocksPerItem);
  if (i < aItems) {
    int64_t b0 = i * aBlocksPerItem;
    MemRefDesc src = memref(source[0], sourceBytes[0]);
    MemRefDesc panel = memref(panelA, panels.aElements);
    stages.packA(&src, M, K, samples, sourceStride[0], lhsSampleStride, b0,
                 std::min(rowBlocks, b0 + aBlocksPerItem), &panel);
    return;
  }
  int64_t b0 = (i - aItems) * bBlocksPerItem;
  MemRefDesc src = memref(source[1], sourceBytes[1]);
  MemRefDesc panel = memref(panelB, panels.bElements);
  stages.packB(&src, K, N, sourceStride[1], b0,
               std::min(colBlocks, b0 + bBlocksPerItem), &panel);
}

/// Runs of row blocks: a cache group, or less when that leaves a thread
/// without a share.
void GemmLaunch::multiply(Region &region, float scale) {
  int64_t perItem =
      std::min(group, ceilDiv(rowBlocks, int64_t(region.participants())));
  forEachItem(next[3], ceilDiv(rowBlocks, perItem), [&](int64_t i) {
    int64_t b0 = i * perItem, b1 = std::min(rowBlocks, b0 + perItem);
    MemRefDesc a = memref(panelA, panels.aElements);
    MemRefDesc b = memref(panelB, panels.bElements);
    MemRefDesc bias = memref(args.bias, spec.bias ? N : 0);
    MemRefDesc out = memref(args.out.data, M * args.out.rowStride);
    stages.gemm(&a, &b, M, N, panels.kSteps, samples, b0, b1, scale, &bias,
                &out, args.out.rowStride, group);
  });
}

void GemmLaunch::run(Region &region) {
  int64_t items[2] = {0, 0};
  for (const std::optional<FloatOperand> &op : ops)
    if (op) {
      items[0] += op->statItems();
      items[1] += op->quantItems();
    }
  forEachItem(next[0], items[0], [&](int64_t i) { statItem(i); });
  region.barrier();

  OperandStats stats[2];
  OperandQuantizer quantizers[2];
  for (int side = 0; side < 2; ++side)
    if (ops[side]) {
      stats[side] = ops[side]->statistics();
      quantizers[side] = ops[side]->quantizer(stats[side], args.maxEstimate);
    }
  forEachItem(next[1], items[1], [&](int64_t i) { quantItem(quantizers, i); });
  region.barrier();

  Quantized done[2];
  done[0].scale = args.lhsScale;
  done[1].scale = args.rhsScale;
  for (int side = 0; side < 2; ++side)
    if (ops[side])
      done[side] = ops[side]->finish(stats[side], quantizers[side]);
  if (done[0].zeroCodes) {
    if (region.thread() == 0)
      ops[0]->zeroCodes();
    region.barrier();
  }
  forEachItem(next[2],
              ceilDiv(rowBlocks, aBlocksPerItem) +
                  ceilDiv(colBlocks, bBlocksPerItem),
              [&](int64_t i) { packItem(i); });
  region.barrier();

  float scale = done[0].scale * done[1].scale;
  if (samples > 1)
    scale = scale * (1.0f / float(samples));
  multiply(region, scale);
  if (region.thread() == 0) {
    result[0] = done[0];
    result[1] = done[1];
  }
}

LaunchStatus GemmLaunch::status() const {
  LaunchStatus s;
  s.nonfinite = result[0].nonfinite || result[1].nonfinite;
  s.overflow = result[0].overflow;
  s.lhsMax = result[0].max;
  s.lhsScale = result[0].scale;
  s.rhsScale = result[1].scale;
  s.lhsRange = result[0].range;
  s.rhsRange = result[1].range;
  return s;
}

/// A launch whose workspace (codes, panels) does not fit in memory.
std::string workspaceError(size_t bytes) {
  return "cannot allocate " + std::to_string(bytes) +
         " bytes of workspace for the operands' codes and panels";
}

} // namespace

Result<LaunchStatus> lq::runtime::launchHostGemm(const GemmSpec &spec,
                                                 const HostStages &stages,
                                                 HostResources &resources,
                                                 const LaunchArgs &args,
                                                 const GemmProblem &problem) {
  if (problem.m == 0 || problem.n == 0)
    return LaunchStatus{};
  GemmLaunch launch(spec, stages, args, problem);
  WorkspacePool::Lease workspace = resources.workspaces.take();
  uint8_t *base = workspace->reserve(launch.workspaceBytes());
  if (!base)
    return Result<LaunchStatus>::failure(
        workspaceError(launch.workspaceBytes()));
  launch.place(base);
  resources.team.run(participantsFor(launch.work(), resources.team.size()),
                     [&](Region &region) { launch.run(region); });
  return launch.status();
}

//===----------------------------------------------------------------------===//
// Quantization and statistics alone
//===----------------------------------------------------------------------===//

namespace {

/// Runtime::quantize: statistics, quantization, packing to two codes per
/// byte.
class QuantizeLaunch {
public:
  QuantizeLaunch(const HostStages &stages, const QuantizeArgs &args)
      : stages(stages), args(args), op(roleOf(args), layout) {
    itemRows = rowsPerItem(args.output.cols);
  }
  size_t workspaceBytes() const { return layout.size(); }
  void place(uint8_t *base) { op.place(base); }
  int64_t work() const { return op.elements(); }
  void run(Region &region);
  QuantizeStatus status() const;

private:
  static OperandRole roleOf(const QuantizeArgs &args) {
    OperandRole role;
    role.format = args.format;
    role.t = args.input;
    role.firstSample = args.sample;
    role.hindsight = args.maxEstimate.has_value();
    return role;
  }
  void packItem(int64_t i) const;

  const HostStages &stages;
  const QuantizeArgs &args;
  WorkspaceLayout layout;
  FloatOperand op;
  int64_t itemRows;
  std::atomic<int64_t> next[3] = {{0}, {0}, {0}};
  Quantized result;
};

void QuantizeLaunch::packItem(int64_t i) const {
  const TensorRef &out = args.output;
  int64_t r0 = i * itemRows, r1 = std::min(out.rows, r0 + itemRows);
  MemRefDesc codes = memref(op.codes(), out.rows * out.cols);
  MemRefDesc bytes = memref(out.data, out.rows * out.rowStride);
  stages.pack4(&codes, out.rows, out.cols, r0, r1, &bytes, out.rowStride);
}

void QuantizeLaunch::run(Region &region) {
  forEachItem(next[0], op.statItems(),
              [&](int64_t i) { op.statItem(stages, i); });
  region.barrier();
  OperandStats stats = op.statistics();
  OperandQuantizer q = op.quantizer(stats, args.maxEstimate.value_or(0.0f));
  forEachItem(next[1], op.quantItems(), [&](int64_t i) {
    op.quantItem(stages, q, args.seed, args.stream, i);
  });
  region.barrier();
  Quantized done = op.finish(stats, q);
  if (done.zeroCodes) {
    if (region.thread() == 0)
      op.zeroCodes();
    region.barrier();
  }
  forEachItem(next[2], ceilDiv(args.output.rows, itemRows),
              [&](int64_t i) { packItem(i); });
  if (region.thread() == 0)
    result = done;
}

QuantizeStatus QuantizeLaunch::status() const {
  QuantizeStatus s;
  s.scale = result.scale;
  s.nonfinite = result.nonfinite;
  s.overflow = result.overflow;
  s.range = args.format == Format::Log4 ? result.max : result.range;
  return s;
}

} // namespace

Result<QuantizeStatus> lq::runtime::quantizeOnHost(const HostStages &stages,
                                                   HostResources &resources,
                                                   const QuantizeArgs &args) {
  QuantizeLaunch launch(stages, args);
  WorkspacePool::Lease workspace = resources.workspaces.take();
  uint8_t *base = workspace->reserve(launch.workspaceBytes());
  if (!base)
    return Result<QuantizeStatus>::failure(
        workspaceError(launch.workspaceBytes()));
  launch.place(base);
  resources.team.run(participantsFor(launch.work(), resources.team.size()),
                     [&](Region &region) { launch.run(region); });
  return launch.status();
}

Result<TensorStatistics> lq::runtime::statisticsOnHost(const HostStages &stages,
                                                       HostResources &resources,
                                                       const TensorRef &input) {
  OperandRole role;
  role.t = input;
  role.quantize = false;
  WorkspaceLayout layout;
  FloatOperand op(role, layout);
  WorkspacePool::Lease workspace = resources.workspaces.take();
  uint8_t *base = workspace->reserve(layout.size());
  if (!base)
    return Result<TensorStatistics>::failure(workspaceError(layout.size()));
  op.place(base);
  std::atomic<int64_t> next{0};
  resources.team.run(participantsFor(op.elements(), resources.team.size()),
                     [&](Region &) {
                       forEachItem(next, op.statItems(),
                                   [&](int64_t i) { op.statItem(stages, i); });
                     });
  OperandStats stats = op.statistics();
  TensorStatistics result;
  result.maxAbs = stats.max;
  result.sawbClip = stats.clip;
  result.nonfinite = stats.nonfinite;
  return result;
}
