//===- NumericsStatisticsTest.cpp - Statistical properties of LUQ ---------===//
//
// LUQ is meant to be an unbiased estimator of its input with a known
// two-level variance. These tests check that claim with z-scores over 10^6
// elements (each element index draws an independent uniform), check that
// they have the power to reject biased quantizers, compare the error with
// deterministic round-to-nearest in the log domain, and check that SMP
// divides the variance by the sample count.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

using namespace lq::numerics;

namespace {

constexpr size_t kSamples = 1000000;
constexpr double kMaxZ = 5.0;

// A quantizer maps the scaled magnitude r and a uniform u to a level in
// units of alpha (0, 1, 2, ..., 64).
using MagnitudeQuantizer = std::function<double(float r, float u)>;

double luqLevel(float r, float u) {
  uint8_t e = luqMagnitudeCode(r, u);
  return e == 0 ? 0.0 : std::ldexp(1.0, e - 1);
}

// The two levels around r: 0 and 1 below 1, else the powers of two around
// it; both 64 at and above 64.
struct Bracket {
  double low;
  double high;
};

Bracket bracketOf(double r) {
  if (r >= 64.0)
    return {64.0, 64.0};
  if (r < 1.0)
    return {0.0, 1.0};
  double low = std::ldexp(1.0, std::ilogb(r));
  return {low, 2.0 * low};
}

// Variance of the unbiased two-level rounding of r: it rounds up with
// probability p = (r - low) / (high - low).
double twoLevelVariance(double r) {
  Bracket b = bracketOf(r);
  if (b.high == b.low)
    return 0.0;
  double p = (r - b.low) / (b.high - b.low);
  return (b.high - b.low) * (b.high - b.low) * p * (1.0 - p);
}

// Deterministic round to nearest in the log domain: the geometric mean of
// two neighbouring powers of two is the threshold; below 1 the nearer of 0
// and 1.
double nearestLogLevel(double r) {
  Bracket b = bracketOf(r);
  double threshold = r < 1.0 ? 0.5 : b.low * std::sqrt(2.0);
  return r >= threshold ? b.high : b.low;
}

// A plausible bug: stochastic rounding that picks the upper power of two
// with probability equal to the fraction in the log domain.
double logProbabilityLevel(float r, float u) {
  Bracket b = bracketOf(r);
  if (b.high == b.low)
    return b.low;
  double p = r < 1.0f ? double(r) : std::log2(double(r)) - std::log2(b.low);
  return u < p ? b.high : b.low;
}

// Mean and variance of a stream of values, accumulated as offsets from the
// value under test to keep the sums small and exact where possible.
class Moments {
public:
  explicit Moments(double value) : center(value) {}
  void add(double value, size_t times = 1) {
    double offset = value - center;
    count += times;
    sum += offset * double(times);
    squares += offset * offset * double(times);
  }
  size_t size() const { return count; }
  double mean() const { return center + sum / double(count); }
  double variance() const {
    return (squares - sum * sum / double(count)) / double(count - 1);
  }

private:
  double center;
  size_t count = 0;
  double sum = 0.0;
  double squares = 0.0;
};

// |mean - x| in standard errors of the mean of unbiased two-level
// roundings of x. Where that rounding is deterministic (x is a level) the
// mean must be x exactly.
double zScore(const Moments &m, double x) {
  double error = std::fabs(m.mean() - x);
  double standardError =
      std::sqrt(twoLevelVariance(std::fabs(x)) / double(m.size()));
  if (standardError == 0.0)
    return error == 0.0 ? 0.0 : INFINITY;
  return error / standardError;
}

// `count` copies of x, each its own element, through a model quantizer
// driven by the uniforms LUQ uses, with the scale 1 (r = |x|).
Moments modelMoments(float x, size_t count,
                     const MagnitudeQuantizer &quantize) {
  RandomKey key{0x5eed0001u, 11, 0};
  UniformGenerator uniforms(key);
  double sign = std::signbit(x) ? -1.0 : 1.0;
  Moments m(x);
  for (size_t i = 0; i < count; ++i)
    m.add(sign * quantize(std::fabs(x), uniforms(i)));
  return m;
}

// The same through the library: a tensor of `count` copies of x,
// quantized with the in-hindsight max 64 so that alpha = 1 and r = |x|.
// Returns how often each of the 16 codes came out.
std::vector<size_t> luqCodeCounts(float x, size_t count) {
  std::vector<float> data(count, x);
  std::vector<int8_t> codes(count);
  RandomKey key{0x5eed0001u, 3, 0};
  LuqResult result = luqEncodeHindsight(MatrixView::f32(data.data(), 1, count),
                                        64.0f, key, codes.data());
  EXPECT_EQ(result.status, Status::Ok);
  EXPECT_EQ(result.alpha, 1.0f);
  std::vector<size_t> counts(16, 0);
  for (int8_t code : codes)
    ++counts[size_t(code) & 15];
  return counts;
}

// Magnitudes covering the underflow region (down to its tiny end and up to
// one ulp below 1), every interval [2^n, 2^(n+1)) for n = 0..5 including
// just below the top level, and the levels themselves up to the top.
std::vector<float> binRepresentatives() {
  std::vector<float> r = {0x1p-20f, 0.3f, 0.75f, 1.0f - 0x1p-24f};
  for (int n = 0; n <= 5; ++n)
    r.push_back(std::ldexp(1.37f, n));
  r.push_back(63.5f);
  for (int n = 0; n <= 6; ++n)
    r.push_back(std::ldexp(1.0f, n));
  return r;
}

TEST(NumericsStatistics, LuqIsUnbiasedInEveryBin) {
  for (float magnitude : binRepresentatives()) {
    for (float x : {magnitude, -magnitude}) {
      SCOPED_TRACE(testing::Message() << "x = " << x);
      double r = magnitude;
      double exactVariance = twoLevelVariance(r);
      size_t count = exactVariance == 0.0 ? 10000 : kSamples;
      std::vector<size_t> counts = luqCodeCounts(x, count);
      Bracket b = bracketOf(r);
      Moments m(x);
      for (int code = 0; code < 16; ++code) {
        if (counts[code] == 0)
          continue;
        double level = luqDecode(int8_t(code), 1.0f);
        ASSERT_TRUE(std::fabs(level) == b.low || std::fabs(level) == b.high)
            << "decoded " << level << " outside the two levels around " << r;
        ASSERT_TRUE(level == 0.0 || std::signbit(level) == std::signbit(x))
            << "decoded " << level << " has the wrong sign";
        m.add(level, counts[code]);
      }
      EXPECT_LE(zScore(m, x), kMaxZ) << "mean " << m.mean();
      // The spread must be that of the two-level rounding: the sample
      // variance of a two-point distribution has variance
      // (mu4 - sigma^4) / count with mu4 = w^4 p (1 - p) (1 - 3 p (1 - p)).
      double width = b.high - b.low;
      double p = width == 0.0 ? 0.0 : (r - b.low) / width;
      double pq = p * (1.0 - p);
      double mu4 = std::pow(width, 4) * pq * (1.0 - 3.0 * pq);
      double sdOfVariance =
          std::sqrt((mu4 - exactVariance * exactVariance) / double(count));
      EXPECT_LE(std::fabs(m.variance() - exactVariance),
                kMaxZ * sdOfVariance + 1e-12 * exactVariance)
          << "variance " << m.variance() << " expected " << exactVariance;
    }
  }
}

// The z-test above must have the power to see a bias: two biased
// quantizers run through the same test fail it in every stochastic bin,
// while a model of LUQ on the same uniforms passes.
TEST(NumericsStatistics, UnbiasednessTestRejectsBiasedQuantizers) {
  const MagnitudeQuantizer nearest = [](float r, float) {
    return nearestLogLevel(r);
  };
  for (int n = 0; n <= 5; ++n) {
    float x = std::ldexp(n % 2 ? -1.37f : 1.37f, n);
    SCOPED_TRACE(testing::Message() << "x = " << x);
    EXPECT_LE(zScore(modelMoments(x, kSamples, luqLevel), x), kMaxZ);
    EXPECT_GT(zScore(modelMoments(x, kSamples, nearest), x), kMaxZ);
    EXPECT_GT(zScore(modelMoments(x, kSamples, logProbabilityLevel), x),
              kMaxZ);
  }
}

// Deterministic test data; std::normal_distribution is not the same on
// every standard library, so the transform is spelled out.
class Gaussian {
  static constexpr double kPi = 3.14159265358979323846;

public:
  explicit Gaussian(uint64_t seed) : engine(seed) {}
  double operator()() {
    double u1 = (double(engine() >> 11) + 1.0) * 0x1p-53;
    double u2 = double(engine() >> 11) * 0x1p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
  }

private:
  std::mt19937_64 engine;
};

std::vector<float> gaussianData(size_t count, uint64_t seed) {
  Gaussian normal(seed);
  std::vector<float> data(count);
  for (float &v : data)
    v = float(normal());
  return data;
}

// Student's t with 3 degrees of freedom: the heavy tail of gradients.
std::vector<float> heavyTailedData(size_t count, uint64_t seed) {
  Gaussian normal(seed);
  std::vector<float> data(count);
  for (float &v : data) {
    double z = normal();
    double chi2 = 0.0;
    for (int i = 0; i < 3; ++i) {
      double g = normal();
      chi2 += g * g;
    }
    v = float(z / std::sqrt(chi2 / 3.0));
  }
  return data;
}

// The signed r of every element as LUQ computes it (one f32 multiply).
std::vector<double> scaledMagnitudes(const std::vector<float> &data,
                                     float m) {
  float inv = 64.0f / m;
  std::vector<double> r(data.size());
  for (size_t i = 0; i < data.size(); ++i)
    r[i] = std::copysign(double(std::fabs(data[i]) * inv), data[i]);
  return r;
}

struct ErrorBudget {
  double expected = 0.0; // E[sum of squared errors]
  double variance = 0.0; // Var[sum of squared errors]
  double noise = 0.0;    // Var[sum of errors]
};

// Squared error of the two-level rounding of r is (w (1 - p))^2 with
// probability p and (w p)^2 otherwise.
ErrorBudget luqErrorBudget(const std::vector<double> &r) {
  ErrorBudget budget;
  for (double value : r) {
    double magnitude = std::fabs(value);
    Bracket b = bracketOf(magnitude);
    double width = b.high - b.low;
    if (width == 0.0)
      continue;
    double p = (magnitude - b.low) / width;
    double up = width * (1.0 - p) * width * (1.0 - p);
    double down = width * p * width * p;
    budget.expected += p * up + (1.0 - p) * down;
    budget.variance += p * (1.0 - p) * (up - down) * (up - down);
    budget.noise += twoLevelVariance(magnitude);
  }
  return budget;
}

// Bins of |r|: 0 for the underflow region r < 1, n + 1 for [2^n, 2^(n+1)),
// 7 for r >= 64 where nothing is random.
constexpr int kBins = 8;

int binOf(double magnitude) {
  if (magnitude < 1.0)
    return 0;
  if (magnitude >= 64.0)
    return 7;
  return std::ilogb(magnitude) + 1;
}

// Summed magnitude error in one bin, and the variance of that sum under
// LUQ's two-level rounding.
struct BinBias {
  size_t count = 0;
  double luq = 0.0;
  double nearest = 0.0;
  double noise = 0.0;
};

void compareWithNearest(const std::vector<float> &data, const char *label) {
  SCOPED_TRACE(label);
  std::vector<int8_t> codes(data.size());
  LuqResult result =
      luqEncode(MatrixView::f32(data.data(), 1, data.size()),
                RandomKey{77, 2, 0}, codes.data());
  ASSERT_EQ(result.status, Status::Ok);
  std::vector<double> r = scaledMagnitudes(data, result.alpha * 64.0f);

  double luqSquares = 0.0, nearestSquares = 0.0;
  BinBias bins[kBins];
  for (size_t i = 0; i < data.size(); ++i) {
    double magnitude = std::fabs(r[i]);
    double q = std::fabs(double(codeValue(Format::Log4, codes[i])));
    double nearest = nearestLogLevel(magnitude);
    luqSquares += (q - magnitude) * (q - magnitude);
    nearestSquares += (nearest - magnitude) * (nearest - magnitude);
    BinBias &bin = bins[binOf(magnitude)];
    ++bin.count;
    bin.luq += q - magnitude;
    bin.nearest += nearest - magnitude;
    bin.noise += twoLevelVariance(magnitude);
  }
  ErrorBudget budget = luqErrorBudget(r);
  double ratio = luqSquares / nearestSquares;
  double expectedRatio = budget.expected / nearestSquares;
  double ratioTolerance = kMaxZ * std::sqrt(budget.variance) / nearestSquares;
  std::printf("[ %s ] MSE(LUQ) / MSE(nearest log level) = %.4f "
              "(expected %.4f +- %.4f)\n",
              label, ratio, expectedRatio, ratioTolerance);

  // LUQ pays for unbiasedness with variance: more error than the nearest
  // level, by the factor the two-level variance predicts.
  EXPECT_GT(ratio, 1.0);
  EXPECT_NEAR(ratio, expectedRatio, ratioTolerance);

  // Per bin, LUQ's summed error is noise; the nearest level's is not. The
  // bins are independent, so sum z^2 is chi-square with one degree of
  // freedom per bin when the quantizer is unbiased.
  double luqChi2 = 0.0, nearestChi2 = 0.0;
  int degrees = 0;
  for (int b = 0; b < kBins; ++b) {
    if (bins[b].noise == 0.0)
      continue;
    double sd = std::sqrt(bins[b].noise);
    double luqZ = bins[b].luq / sd, nearestZ = bins[b].nearest / sd;
    std::printf("[ %s ] |r| bin %d: %zu elements, z(LUQ) = %.2f, "
                "z(nearest) = %.2f\n",
                label, b, bins[b].count, luqZ, nearestZ);
    EXPECT_LE(std::fabs(luqZ), kMaxZ) << "bin " << b;
    luqChi2 += luqZ * luqZ;
    nearestChi2 += nearestZ * nearestZ;
    ++degrees;
  }
  double chi2Bound = degrees + kMaxZ * std::sqrt(2.0 * degrees);
  EXPECT_LE(luqChi2, chi2Bound);
  EXPECT_GT(nearestChi2, chi2Bound);
}

TEST(NumericsStatistics, LuqTradesVarianceForBiasAgainstNearestRounding) {
  compareWithNearest(gaussianData(1 << 18, 1), "gaussian");
  compareWithNearest(heavyTailedData(1 << 18, 2), "student-t(3)");
}

// SMP with N samples averages N independent roundings: the variance of the
// estimate falls as 1/N, and the samples stay unbiased.
TEST(NumericsStatistics, SmpVarianceFallsAsOneOverN) {
  const size_t count = 1 << 17;
  std::vector<float> data = gaussianData(count, 3);
  MatrixView view = MatrixView::f32(data.data(), 1, count);
  double singleSampleVariance = 0.0;
  for (uint32_t samples : {1u, 2u, 4u, 8u}) {
    SCOPED_TRACE(testing::Message() << "N = " << samples);
    std::vector<int8_t> codes(count * samples);
    LuqResult result =
        luqEncodeSamples(view, RandomKey{2024, 9, 0}, samples, codes.data());
    ASSERT_EQ(result.status, Status::Ok);
    std::vector<double> r = scaledMagnitudes(data, result.alpha * 64.0f);

    double squares = 0.0, expected = 0.0, spread = 0.0;
    for (size_t i = 0; i < count; ++i) {
      double sum = 0.0;
      for (uint32_t s = 0; s < samples; ++s)
        sum += codeValue(Format::Log4, codes[s * count + i]);
      double error = sum / samples - r[i];
      squares += error * error;
      // E and Var of the squared mean of N iid zero-mean errors.
      double sigma2 = twoLevelVariance(std::fabs(r[i]));
      ErrorBudget one = luqErrorBudget({r[i]});
      double mu4 = one.variance + sigma2 * sigma2;
      double n = samples;
      expected += sigma2 / n;
      spread += (mu4 - sigma2 * sigma2) / (n * n * n) +
                2.0 * (n - 1.0) * sigma2 * sigma2 / (n * n * n);
    }
    EXPECT_NEAR(squares, expected, kMaxZ * std::sqrt(spread));
    if (samples == 1)
      singleSampleVariance = squares;
    double ratio = squares / singleSampleVariance;
    std::printf("[ SMP ] N = %u: variance ratio to N = 1 is %.4f "
                "(1/N = %.4f)\n",
                samples, ratio, 1.0 / samples);
    EXPECT_NEAR(ratio * samples, 1.0, 0.05);
  }
}

// Different sample ids of one element are independent draws: averaging
// over the sample id instead of the element index is unbiased as well.
TEST(NumericsStatistics, SampleIdsAreIndependentDraws) {
  const float x = -11.3f;
  const size_t count = 200000;
  float data[1] = {x};
  Moments m(x);
  for (size_t s = 0; s < count; ++s) {
    int8_t code;
    LuqResult result = luqEncodeHindsight(MatrixView::f32(data, 1, 1), 64.0f,
                                          RandomKey{8, 1, uint32_t(s)}, &code);
    ASSERT_EQ(result.status, Status::Ok);
    m.add(luqDecode(code, result.alpha));
  }
  EXPECT_LE(zScore(m, x), kMaxZ);
  EXPECT_NEAR(m.variance(), twoLevelVariance(11.3),
              0.02 * twoLevelVariance(11.3));
}

} // namespace
