//===- RuntimeCpuQuantizerEdgeTest.cpp - host quantizers at their edges ---===//
//
// The host quantizer stages against the numerics core, bit for bit, with
// every element placed on a decision edge of its own code. LUQ runs with
// inv = 64 / m = 1 exactly (m = 64, as the tensor's max or as the
// in-hindsight estimate), so an element's scaled magnitude r is the value
// written, and each element's Philox word is known in advance: r sits on
// either side of the stochastic rounding threshold of that very word
// (mantissa M against floor(word / 2^9), r against the uniform itself),
// on exact powers of two, at 1, 64 and above, and among the subnormals;
// elements whose uniform is 0 or 1 - 2^-24 (found by searching keys) take
// the magnitudes where those ends decide. SAWB runs with clip = m and
// inv = 1, its values on the ties of the rounding. The shapes put rows off
// the Philox block boundary, leave tails of many lengths after the 16-lane
// vectors and the 128-element Philox steps, give rows a stride, pad odd
// rows to whole bytes and reach the vector path of the packing; inputs and
// outputs end at an unmapped page, so an access past the last element of
// the last row faults. The standalone quantizer
// runs on this machine's CPU; GEMMs compiled for an AVX2-only CPU
// (x86-64-v3) and an AVX-512 one read the codes back through an identity
// right operand, with SMP samples, transposed operands and hindsight.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"
#include "lq/Runtime/Runtime.h"

#include "KernelCacheEnvironment.h"
#include "NumericsFormats.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace num = lq::numerics;
using lq::DType;
using lq::Format;

namespace {

const auto *cacheEnvironment =
    ::testing::AddGlobalTestEnvironment(new KernelCacheEnvironment);

/// Memory whose last byte is followed by an unmapped page.
class GuardedBuffer {
public:
  explicit GuardedBuffer(size_t bytes) {
    page = size_t(sysconf(_SC_PAGESIZE));
    size_t dataPages = std::max<size_t>(1, (bytes + page - 1) / page);
    total = (dataPages + 1) * page;
    void *p = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    base = static_cast<uint8_t *>(p);
    EXPECT_EQ(mprotect(base + dataPages * page, page, PROT_NONE), 0);
    data = base + dataPages * page - bytes;
  }
  ~GuardedBuffer() { munmap(base, total); }
  GuardedBuffer(const GuardedBuffer &) = delete;
  GuardedBuffer &operator=(const GuardedBuffer &) = delete;

  uint8_t *data = nullptr;

private:
  size_t page = 0, total = 0;
  uint8_t *base = nullptr;
};

/// A float operand in guarded memory: rows of `cols` values `stride`
/// elements apart, the last row ending at the guard page.
struct Operand {
  DType dtype;
  int64_t rows, cols, stride;
  GuardedBuffer memory;

  Operand(DType dtype, int64_t rows, int64_t cols, int64_t stride)
      : dtype(dtype), rows(rows), cols(cols), stride(stride),
        memory(size_t(rows == 0 ? 0 : (rows - 1) * stride + cols) *
               (dtype == DType::BF16 ? 2 : 4)) {
    // The padding between rows holds NaN: a read of it shows.
    for (int64_t r = 0; r + 1 < rows; ++r)
      for (int64_t c = cols; c < stride; ++c)
        set(r, c, std::numeric_limits<float>::quiet_NaN());
  }
  /// Stores v (already representable in the dtype).
  void set(int64_t r, int64_t c, float v) {
    size_t i = size_t(r * stride + c);
    if (dtype == DType::BF16) {
      uint16_t bits = uint16_t(num::floatToBits(v) >> 16);
      std::memcpy(memory.data + 2 * i, &bits, 2);
    } else {
      std::memcpy(memory.data + 4 * i, &v, 4);
    }
  }
  lq::TensorRef ref() const {
    return {memory.data, dtype, rows, cols, stride, lq::Device::CPU};
  }
  num::MatrixView view() const {
    return dtype == DType::BF16
               ? num::MatrixView::bf16(
                     reinterpret_cast<const uint16_t *>(memory.data),
                     size_t(rows), size_t(cols), size_t(stride))
               : num::MatrixView::f32(
                     reinterpret_cast<const float *>(memory.data), size_t(rows),
                     size_t(cols), size_t(stride));
  }
};

/// The f32 of biased exponent 127 + n and mantissa bits m.
float magnitude(int n, uint32_t m) {
  return num::bitsToFloat(uint32_t(127 + n) << 23 | (m & 0x007FFFFFu));
}

/// v made representable in `dtype`: bf16 by truncation or, with `up`, by
/// the next bf16 above (never reaching Inf).
float representable(float v, DType dtype, bool up) {
  if (dtype != DType::BF16)
    return v;
  uint32_t bits = num::floatToBits(v);
  uint32_t down = bits & 0xFFFF0000u;
  uint32_t above = down + 0x10000u;
  if (up && (bits & 0xFFFFu) && (above & 0x7FFFFFFFu) < 0x7F800000u)
    return num::bitsToFloat(above);
  return num::bitsToFloat(down);
}

/// A magnitude on a LUQ decision edge for an element whose random word is
/// `word`, as r = |x| * inv with inv = 1; above 64 only with `above64`.
float luqEdge(uint32_t word, std::mt19937 &rng, bool above64) {
  uint32_t U = word >> 8, W = word >> 9;
  float u = float(U) * 0x1p-24f;
  int n = int(rng() % 6);
  switch (rng() % (above64 ? 15 : 14)) {
  case 0: // f = W 2^-23 <= u: stays at 2^n
    return magnitude(n, W);
  case 1: // the smallest f above u: rounds up
    return magnitude(n, std::min(W + 1, 0x007FFFFFu));
  case 2:
    return magnitude(n, W == 0 ? 0 : W - 1);
  case 3: // exact powers of two
    return magnitude(n, 0);
  case 4:
    return magnitude(n, 0x007FFFFFu);
  case 5: // r == u: not kept
    return u;
  case 6: // the smallest r above u: kept
    return std::nextafter(u, 2.0f);
  case 7:
    return std::nextafter(u, 0.0f);
  case 8: // subnormal
    return num::bitsToFloat(1 + uint32_t(rng() % 0x007FFFFFu));
  case 9:
    return 0.0f;
  case 10:
    return rng() % 2 ? 1.0f : std::nextafter(1.0f, 0.0f);
  case 11: // far below the uniform's grid
    return std::ldexp(1.0f + float(rng() % 1024) / 1024.0f,
                      -25 - int(rng() % 100));
  case 12:
    return std::uniform_real_distribution<float>(0.0f, 64.0f)(rng);
  case 13:
    return 64.0f;
  default: { // saturated and counted as overflow
    const float big[] = {std::nextafter(64.0f, 128.0f), 127.99f, 128.0f, 1e30f,
                         std::numeric_limits<float>::max()};
    return big[rng() % 5];
  }
  }
}

/// Fills `x` with LUQ edges for the random words of `key`; without
/// `above64`, one element is 64 (so that max |x| = 64) and none is above.
void fillLuqEdges(Operand &x, const num::RandomKey &key, bool above64,
                  std::mt19937 &rng) {
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c) {
      uint32_t word = num::randomWord(key, uint64_t(r * x.cols + c));
      float v =
          representable(luqEdge(word, rng, above64), x.dtype, rng() % 2 != 0);
      x.set(r, c, rng() % 2 ? -v : v);
    }
  if (!above64 && x.rows * x.cols > 0) {
    int64_t at = int64_t(rng() % uint64_t(x.rows * x.cols));
    x.set(at / x.cols, at % x.cols, rng() % 2 ? -64.0f : 64.0f);
  }
}

/// An element whose uniform is 0 or the largest, 1 - 2^-24: the ends of
/// the random comparisons (u < r and floor(word / 2^9) < M).
struct ExtremeWord {
  num::RandomKey key;
  uint64_t index;
};
constexpr uint64_t kExtremeSearchIndices = 4096;

/// Keys (seed varied) under which one of the first kExtremeSearchIndices
/// elements has U = word >> 8 equal to 0 and to 2^24 - 1.
std::vector<ExtremeWord> findExtremeWords(uint32_t stream, uint32_t sample) {
  std::vector<ExtremeWord> found;
  bool haveLow = false, haveHigh = false;
  for (uint64_t seed = 1; seed < (uint64_t(1) << 20) && !(haveLow && haveHigh);
       ++seed) {
    num::RandomKey key{seed * 0x9E3779B97F4A7C15ull, stream, sample};
    num::UniformGenerator uniform(key);
    for (uint64_t i = 0; i < kExtremeSearchIndices; ++i) {
      float u = uniform(i);
      bool low = u == 0.0f, high = u == 1.0f - 0x1p-24f;
      if ((low && !haveLow) || (high && !haveHigh)) {
        found.push_back({key, i});
        haveLow |= low;
        haveHigh |= high;
      }
    }
  }
  return found;
}

/// Magnitudes where u = 0 or u = 1 - 2^-24 decides: r = 0, subnormal,
/// just below and at 1, M = 0 and M = 1, and below and at the top level.
const float kExtremeMagnitudes[] = {0.0f,
                                    std::numeric_limits<float>::denorm_min(),
                                    std::numeric_limits<float>::min(),
                                    0x1p-24f,
                                    std::nextafter(0x1p-24f, 0.0f),
                                    1.0f - 0x1p-24f,
                                    1.0f - 0x1p-23f,
                                    1.0f,
                                    1.0f + 0x1p-23f,
                                    2.0f,
                                    2.0f + 0x1p-22f,
                                    4.0f - 0x1p-21f,
                                    std::nextafter(64.0f, 0.0f),
                                    64.0f,
                                    std::nextafter(64.0f, 128.0f)};

/// Rows, columns and extra stride: every tail of 16 lanes and of the
/// 128-element Philox steps, rows starting at every offset in a block,
/// the packing's 32-byte vectors, several items of rows.
struct Shape {
  int64_t rows, cols, pad;
};
const Shape kShapes[] = {{1, 1, 0},   {1, 2, 3},    {3, 3, 0},    {2, 5, 1},
                         {4, 15, 0},  {3, 16, 0},   {3, 17, 5},   {2, 31, 0},
                         {5, 33, 0},  {2, 63, 1},   {2, 64, 0},   {3, 65, 0},
                         {2, 127, 0}, {3, 128, 0},  {4, 129, 0},  {3, 131, 0},
                         {4, 132, 7}, {5, 133, 0},  {2, 255, 0},  {3, 257, 0},
                         {3, 258, 2}, {5, 259, 0},  {2, 260, 0},  {5, 387, 3},
                         {4, 515, 0}, {70, 203, 0}, {37, 1031, 1}};

/// Packed output rows `stride` bytes apart in guarded memory; the padding
/// past each row's bytes holds a marker that must survive.
struct PackedOutput {
  int64_t rows, cols, stride;
  GuardedBuffer memory;
  static constexpr uint8_t kMarker = 0xA5;

  PackedOutput(int64_t rows, int64_t cols, int64_t pad)
      : rows(rows), cols(cols), stride((cols + 1) / 2 + pad),
        memory(size_t(rows == 0 ? 0 : (rows - 1) * stride + (cols + 1) / 2)) {
    std::memset(memory.data, kMarker,
                size_t(rows == 0 ? 0 : (rows - 1) * stride + (cols + 1) / 2));
  }
  lq::TensorRef ref() const {
    return {memory.data, DType::Packed4, rows, cols, stride, lq::Device::CPU};
  }
  /// Compares with the numerics core's codes, packed.
  void expectCodes(num::Format format, const std::vector<int8_t> &codes) const {
    size_t rowBytes = num::packedRowBytes(size_t(cols));
    std::vector<uint8_t> expected(size_t(rows) * rowBytes);
    ASSERT_EQ(num::packCodes(format, codes.data(), size_t(rows), size_t(cols),
                             expected.data()),
              num::Status::Ok);
    int64_t mismatches = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (size_t j = 0; j < rowBytes; ++j) {
        uint8_t got = memory.data[r * stride + j];
        uint8_t want = expected[r * rowBytes + j];
        if (got != want && mismatches++ < 8)
          ADD_FAILURE() << "row " << r << " byte " << j << " (columns " << 2 * j
                        << ", " << 2 * j + 1 << "): kernel 0x" << std::hex
                        << int(got) << " core 0x" << int(want) << std::dec;
      }
      if (r + 1 < rows)
        for (int64_t j = int64_t(rowBytes); j < stride; ++j)
          if (memory.data[r * stride + j] != kMarker && mismatches++ < 8)
            ADD_FAILURE() << "row " << r << ": padding byte " << j
                          << " written";
    }
    EXPECT_EQ(mismatches, 0);
  }
};

std::string describe(const Shape &s, DType dtype) {
  return std::to_string(s.rows) + "x" + std::to_string(s.cols) + " pad " +
         std::to_string(s.pad) + " " + lq::dtypeName(dtype);
}

//===----------------------------------------------------------------------===//
// The standalone quantizer (this machine's CPU)
//===----------------------------------------------------------------------===//

// LUQ scaled by max |x| = 64 and by an estimate of 64 (elements above it
// saturate and are counted), f32 and bf16, SMP sample ids and a key with
// every word's high bits set.
TEST(RuntimeCpuQuantizerEdges, LuqOnEveryRandomThreshold) {
  std::mt19937 rng(2024);
  for (DType dtype : {DType::F32, DType::BF16})
    for (bool hindsight : {false, true})
      for (uint32_t sample : {0u, 7u})
        for (const Shape &s : kShapes) {
          SCOPED_TRACE(describe(s, dtype) + (hindsight ? " hindsight" : "") +
                       " sample " + std::to_string(sample));
          num::RandomKey key{0xF00DFACE12345678ull ^ rng(),
                             0xFFFFFFF0u | sample, sample};
          Operand x(dtype, s.rows, s.cols, s.cols + s.pad);
          fillLuqEdges(x, key, hindsight, rng);
          PackedOutput out(s.rows, s.cols, s.pad);
          lq::QuantizeArgs q;
          q.input = x.ref();
          q.output = out.ref();
          q.format = Format::Log4;
          q.seed = key.seed;
          q.stream = key.stream;
          q.sample = key.sample;
          if (hindsight)
            q.maxEstimate = 64.0f;
          auto status = lq::Runtime::get().quantize(q);
          ASSERT_TRUE(status.ok()) << status.error();

          std::vector<int8_t> codes(size_t(s.rows * s.cols));
          num::LuqResult luq =
              hindsight
                  ? num::luqEncodeHindsight(x.view(), 64.0f, key, codes.data())
                  : num::luqEncode(x.view(), key, codes.data());
          ASSERT_EQ(luq.status, num::Status::Ok);
          ASSERT_EQ(luq.alpha, 1.0f);
          out.expectCodes(num::Format::Log4, codes);
          EXPECT_FALSE(status->nonfinite);
          EXPECT_EQ(num::floatToBits(status->scale), num::floatToBits(1.0f));
          EXPECT_EQ(status->overflow, luq.overflowCount);
        }
}

// The element whose uniform is 0 or 1 - 2^-24 at each magnitude where
// that decides, both signs, f32 and bf16, scaled by an estimate of 64.
TEST(RuntimeCpuQuantizerEdges, LuqAtTheUniformsEnds) {
  std::mt19937 rng(4242);
  std::vector<ExtremeWord> words = findExtremeWords(0x7FFFFFFFu, 3);
  ASSERT_EQ(words.size(), 2u);
  const int64_t cols = 67, rows = int64_t(kExtremeSearchIndices) / cols + 1;
  for (const ExtremeWord &w : words)
    for (DType dtype : {DType::F32, DType::BF16})
      for (float magnitude : kExtremeMagnitudes)
        for (float sign : {1.0f, -1.0f}) {
          float v = sign * representable(magnitude, dtype, false);
          SCOPED_TRACE("element " + std::to_string(w.index) + " uniform " +
                       std::to_string(num::uniform(w.key, w.index)) + " x " +
                       std::to_string(v) + " " + lq::dtypeName(dtype));
          Operand x(dtype, rows, cols, cols + 1);
          fillLuqEdges(x, w.key, true, rng);
          x.set(int64_t(w.index) / cols, int64_t(w.index) % cols, v);
          PackedOutput out(rows, cols, 0);
          lq::QuantizeArgs q;
          q.input = x.ref();
          q.output = out.ref();
          q.format = Format::Log4;
          q.seed = w.key.seed;
          q.stream = w.key.stream;
          q.sample = w.key.sample;
          q.maxEstimate = 64.0f;
          auto status = lq::Runtime::get().quantize(q);
          ASSERT_TRUE(status.ok()) << status.error();
          std::vector<int8_t> codes(size_t(rows * cols));
          num::LuqResult luq =
              num::luqEncodeHindsight(x.view(), 64.0f, w.key, codes.data());
          ASSERT_EQ(luq.status, num::Status::Ok);
          out.expectCodes(num::Format::Log4, codes);
          EXPECT_EQ(status->overflow, luq.overflowCount);
        }
}

/// A SAWB value for clip = m and inv = 1 (m = 7 signed, 15 unsigned): on
/// a rounding tie or next to one, zero of either sign, subnormal, an
/// integer; either sign (unsigned: negatives clamp to 0).
float sawbEdge(bool isUnsigned, std::mt19937 &rng) {
  float m = isUnsigned ? 15.0f : 7.0f;
  float v;
  switch (rng() % 8) {
  case 0:
  case 1:
  case 2: // ties: k + 0.5
    v = float(rng() % uint32_t(m)) + 0.5f;
    break;
  case 3:
    v = std::nextafter(float(rng() % uint32_t(m)) + 0.5f, 0.0f);
    break;
  case 4:
    v = std::nextafter(float(rng() % uint32_t(m)) + 0.5f, 100.0f);
    break;
  case 5:
    v = 0.0f;
    break;
  case 6:
    v = num::bitsToFloat(1 + uint32_t(rng() % 0x007FFFFFu));
    break;
  default:
    v = float(rng() % uint32_t(m + 1));
    break;
  }
  return rng() % 2 ? -v : v;
}

/// +-m everywhere (element 0: +m) but at one element in 70 or fewer, an
/// edge. With a share p of edges, S2 / S1^2 <= 1 / (1 - p) < (12.2 /
/// 12.1)^2, so the clip is m.
void fillSawbEdges(Operand &x, bool isUnsigned, std::mt19937 &rng) {
  float m = isUnsigned ? 15.0f : 7.0f;
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c)
      x.set(r, c, rng() % 2 ? -m : m);
  int64_t count = x.rows * x.cols;
  for (int64_t e = 0; e < count / 70; ++e) {
    int64_t at = 1 + int64_t(rng() % uint64_t(count - 1));
    x.set(at / x.cols, at % x.cols,
          representable(sawbEdge(isUnsigned, rng), x.dtype, false));
  }
  x.set(0, 0, m);
}

TEST(RuntimeCpuQuantizerEdges, SawbOnRoundingTies) {
  std::mt19937 rng(77);
  for (DType dtype : {DType::F32, DType::BF16})
    for (bool isUnsigned : {false, true})
      for (const Shape &s : kShapes) {
        SCOPED_TRACE(describe(s, dtype) +
                     (isUnsigned ? " unsigned" : " signed"));
        float m = isUnsigned ? 15.0f : 7.0f;
        Operand x(dtype, s.rows, s.cols, s.cols + s.pad);
        fillSawbEdges(x, isUnsigned, rng);
        PackedOutput out(s.rows, s.cols, s.pad);
        lq::QuantizeArgs q;
        q.input = x.ref();
        q.output = out.ref();
        q.format = isUnsigned ? Format::UInt4 : Format::SInt4;
        auto status = lq::Runtime::get().quantize(q);
        ASSERT_TRUE(status.ok()) << status.error();
        ASSERT_EQ(status->range, m) << "the clip is not max |x|";

        std::vector<int8_t> codes(size_t(s.rows * s.cols));
        num::SawbResult sawb = num::sawbEncode(
            x.view(), m,
            isUnsigned ? num::SawbKind::Unsigned : num::SawbKind::Signed,
            codes.data());
        ASSERT_EQ(sawb.status, num::Status::Ok);
        out.expectCodes(numericsFormat(q.format), codes);
        EXPECT_EQ(num::floatToBits(status->scale), num::floatToBits(sawb.step));
      }
}

//===----------------------------------------------------------------------===//
// Quantizers inside GEMMs compiled for a given CPU
//===----------------------------------------------------------------------===//

/// A CPU (HostJit's names) whose vectors the quantizer is compiled for.
struct Cpu {
  const char *name;
};

void PrintTo(const Cpu &cpu, std::ostream *os) { *os << cpu.name; }

const Cpu kCpus[] = {{"x86-64-v3"}, {"x86-64-v4"}};

class QuantizerOnCpu : public ::testing::TestWithParam<Cpu> {
protected:
  void SetUp() override {
    lq::Result<std::string> dot =
        lq::Runtime::get().cpuDotProduct(GetParam().name);
    if (!dot && dot.error().find("this machine lacks") != std::string::npos)
      GTEST_SKIP() << "this machine cannot run CPU " << GetParam().name << ": "
                   << dot.error();
    ASSERT_TRUE(dot.ok()) << dot.error();
  }

  /// Quantizes the float left operand of `spec` (stored [rows, cols]
  /// with row stride cols + pad) inside a GEMM against an identity right
  /// operand and compares the output with the numerics core's. `fill`
  /// writes the operand given sample 0's random key.
  void check(lq::GemmSpec spec, int64_t rows, int64_t cols, int64_t pad,
             const num::RandomKey &key,
             const std::function<void(Operand &, const num::RandomKey &)> &fill,
             std::optional<float> estimate);
};

void QuantizerOnCpu::check(
    lq::GemmSpec spec, int64_t rows, int64_t cols, int64_t pad,
    const num::RandomKey &key,
    const std::function<void(Operand &, const num::RandomKey &)> &fill,
    std::optional<float> estimate) {
  SCOPED_TRACE(spec.describe() + " stored " + std::to_string(rows) + "x" +
               std::to_string(cols) + " pad " + std::to_string(pad));
  auto kernel = lq::Runtime::get().compileForCpu(spec, GetParam().name);
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  int64_t m = spec.lhs.transposed ? cols : rows;
  int64_t k = spec.lhs.transposed ? rows : cols;
  int64_t n = k;

  Operand a(spec.lhs.dtype, rows, cols, cols + pad);
  fill(a, key);

  // The identity: out[i, j] is the value of the left operand's code at
  // logical (i, j), times the scale.
  std::vector<int8_t> identity(size_t(k * n), 0);
  for (int64_t i = 0; i < k; ++i)
    identity[size_t(i * n + i)] = 1;
  std::vector<uint8_t> rhs(size_t(k) * num::packedRowBytes(size_t(n)));
  ASSERT_EQ(num::packCodes(num::Format::Int4Signed, identity.data(), size_t(k),
                           size_t(n), rhs.data()),
            num::Status::Ok);

  lq::LaunchArgs args;
  args.lhs = a.ref();
  args.rhs = lq::TensorRef::packed4(rhs.data(), k, n);
  args.rhsScale = 1.0f;
  args.seed = key.seed;
  args.stream = key.stream;
  if (estimate)
    args.maxEstimate = *estimate;
  std::vector<float> out(size_t(m * n), -1.0f), ref(size_t(m * n), -2.0f);
  args.out = lq::TensorRef::f32(out.data(), m, n);
  auto status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_FALSE(status->nonfinite);

  std::vector<int8_t> codes(size_t(rows * cols) * spec.samples);
  float scale = 0.0f;
  uint64_t overflow = 0;
  if (spec.lhs.format == Format::Log4) {
    for (unsigned s = 0; s < spec.samples; ++s) {
      num::RandomKey sampleKey = key;
      sampleKey.sample = s;
      int8_t *sampleCodes = codes.data() + size_t(rows * cols) * s;
      num::LuqResult luq =
          estimate ? num::luqEncodeHindsight(a.view(), *estimate, sampleKey,
                                             sampleCodes)
                   : num::luqEncode(a.view(), sampleKey, sampleCodes);
      ASSERT_EQ(luq.status, num::Status::Ok);
      scale = luq.alpha;
      overflow += luq.overflowCount;
    }
  } else {
    num::SawbResult sawb = num::sawbEncode(a.view(), status->lhsRange,
                                           spec.lhs.format == Format::UInt4
                                               ? num::SawbKind::Unsigned
                                               : num::SawbKind::Signed,
                                           codes.data());
    ASSERT_EQ(sawb.status, num::Status::Ok);
    EXPECT_EQ(status->lhsRange, num::maxAbs(a.view()).maxAbs)
        << "the clip is not max |x|";
    scale = sawb.step;
  }
  EXPECT_EQ(num::floatToBits(status->lhsScale), num::floatToBits(scale));
  EXPECT_EQ(status->overflow, overflow);

  num::GemmOptions options;
  options.lhsSamples = spec.samples;
  num::GemmResult r = num::quantizedGemm(
      {size_t(m), size_t(n), size_t(k)},
      {codes.data(), numericsFormat(spec.lhs.format), scale,
       spec.lhs.transposed},
      {identity.data(), num::Format::Int4Signed, 1.0f, false}, options,
      {ref.data(), nullptr, nullptr});
  ASSERT_EQ(r.status, num::Status::Ok);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < m * n; ++i)
    if (num::floatToBits(out[size_t(i)]) != num::floatToBits(ref[size_t(i)]) &&
        mismatches++ < 8)
      ADD_FAILURE() << "output (" << i / n << ", " << i % n << "): kernel "
                    << out[size_t(i)] << " core " << ref[size_t(i)];
  EXPECT_EQ(mismatches, 0);
}

/// Stored shapes: tails of 16 lanes and of 128-element Philox steps, rows
/// off the block boundary, a stride.
struct StoredShape {
  int64_t rows, cols, pad;
};
const StoredShape kStoredShapes[] = {{3, 1, 0},   {5, 7, 2},   {4, 17, 0},
                                     {3, 131, 0}, {4, 259, 3}, {2, 300, 0}};

num::RandomKey shapeKey(const StoredShape &s) {
  return {0x8000000180000001ull * uint64_t(s.rows + 3 * s.cols),
          0xFFFFFFFFu - uint32_t(s.pad), 0};
}

lq::GemmSpec luqSpec(DType dtype, bool transposed, unsigned samples,
                     bool hindsight) {
  lq::GemmSpec spec;
  spec.lhs = {Format::Log4, dtype, transposed};
  spec.rhs = {Format::SInt4, DType::Packed4, false};
  spec.samples = samples;
  spec.hindsight = hindsight;
  return spec;
}

TEST_P(QuantizerOnCpu, LuqOnEveryRandomThreshold) {
  std::mt19937 rng(31);
  struct Variant {
    DType dtype;
    bool transposed;
    unsigned samples;
    bool hindsight;
  };
  const Variant variants[] = {
      {DType::F32, false, 1, false}, {DType::BF16, false, 1, true},
      {DType::F32, true, 1, true},   {DType::BF16, true, 1, false},
      {DType::F32, false, 4, false}, {DType::F32, true, 2, true}};
  for (const Variant &v : variants)
    for (const StoredShape &s : kStoredShapes) {
      // The transposed operand's stored rows are K: the identity is K x K.
      check(
          luqSpec(v.dtype, v.transposed, v.samples, v.hindsight), s.rows,
          s.cols, s.pad, shapeKey(s),
          [&](Operand &a, const num::RandomKey &key) {
            fillLuqEdges(a, key, v.hindsight, rng);
          },
          v.hindsight ? std::optional<float>(64.0f) : std::nullopt);
    }
}

TEST_P(QuantizerOnCpu, LuqAtTheUniformsEnds) {
  std::mt19937 rng(33);
  std::vector<ExtremeWord> words = findExtremeWords(5, 0);
  ASSERT_EQ(words.size(), 2u);
  const int64_t cols = 131, rows = int64_t(kExtremeSearchIndices) / cols + 1;
  for (const ExtremeWord &w : words)
    for (DType dtype : {DType::F32, DType::BF16})
      for (float magnitude : kExtremeMagnitudes) {
        float v =
            (rng() % 2 ? -1.0f : 1.0f) * representable(magnitude, dtype, false);
        check(
            luqSpec(dtype, false, 1, true), rows, cols, 0, w.key,
            [&](Operand &a, const num::RandomKey &key) {
              fillLuqEdges(a, key, true, rng);
              a.set(int64_t(w.index) / cols, int64_t(w.index) % cols, v);
            },
            64.0f);
      }
}

TEST_P(QuantizerOnCpu, SawbOnRoundingTies) {
  std::mt19937 rng(32);
  for (DType dtype : {DType::F32, DType::BF16})
    for (bool isUnsigned : {false, true})
      for (const StoredShape &s : kStoredShapes) {
        lq::GemmSpec spec;
        spec.lhs = {isUnsigned ? Format::UInt4 : Format::SInt4, dtype, false};
        spec.rhs = {Format::SInt4, DType::Packed4, false};
        check(
            spec, s.rows, s.cols, s.pad, shapeKey(s),
            [&](Operand &a, const num::RandomKey &) {
              fillSawbEdges(a, isUnsigned, rng);
            },
            std::nullopt);
      }
}

INSTANTIATE_TEST_SUITE_P(Cpus, QuantizerOnCpu, ::testing::ValuesIn(kCpus),
                         [](const ::testing::TestParamInfo<Cpu> &info) {
                           std::string name = info.param.name;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

} // namespace
