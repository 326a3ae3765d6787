//===- NumericsPhiloxTest.cpp - Philox4x32-10 and the LUQ uniforms --------===//

#include "lq/Numerics/Philox.h"
#include "lq/Numerics/Types.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace lq::numerics;

namespace {

TEST(NumericsPhilox, KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                          {0xffffffff, 0xffffffff}),
            (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                          {0xa4093822, 0x299f31d0}),
            (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// counter = (low32(i >> 2), high32(i >> 2), sample, stream), key = (low32
// seed, high32 seed), word i & 3; indices beyond 2^34 reach the second
// counter word.
TEST(NumericsPhilox, CounterAndKeyLayout) {
  const RandomKey key{0x0123456789abcdefull, 0xdeadbeef, 0x00c0ffee};
  for (uint64_t index : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3),
                         uint64_t(4), uint64_t(0x3ffffffff),
                         uint64_t(0x400000002), uint64_t(0xfedcba9876543210)}) {
    uint64_t block = index >> 2;
    PhiloxCounter words =
        philox4x32_10({uint32_t(block), uint32_t(block >> 32), key.sample,
                       key.stream},
                      {0x89abcdef, 0x01234567});
    EXPECT_EQ(randomWord(key, index), words[index & 3]) << index;
  }
}

// u = (word >> 8) * 2^-24: exactly representable, on the 2^-24 grid, < 1.
TEST(NumericsPhilox, UniformIsTheTop24BitsOfTheWord) {
  const RandomKey key{42, 3, 1};
  for (uint64_t index = 0; index < 4096; ++index) {
    uint32_t word = randomWord(key, index);
    float u = uniform(key, index);
    EXPECT_EQ(double(u), double(word >> 8) / 16777216.0);
    EXPECT_LT(u, 1.0f);
    EXPECT_GE(u, 0.0f);
  }
}

TEST(NumericsPhilox, GeneratorMatchesDirectEvaluationInAnyOrder) {
  const RandomKey key{7, 1, 2};
  UniformGenerator generator(key);
  for (uint64_t index : {uint64_t(9), uint64_t(8), uint64_t(3), uint64_t(1000),
                         uint64_t(11), uint64_t(10), uint64_t(0),
                         uint64_t(1) << 40})
    EXPECT_EQ(floatToBits(generator(index)), floatToBits(uniform(key, index)))
        << index;
}

size_t differingWords(const RandomKey &a, const RandomKey &b) {
  size_t differing = 0;
  for (uint64_t index = 0; index < 64; ++index)
    differing += randomWord(a, index) != randomWord(b, index);
  return differing;
}

// Seed (both halves), stream and sample each select an unrelated sequence.
TEST(NumericsPhilox, EveryKeyFieldChangesTheSequence) {
  const RandomKey base{0x100000001ull, 5, 6};
  EXPECT_EQ(differingWords(base, base), 0u);
  EXPECT_EQ(differingWords(base, {0x100000002ull, 5, 6}), 64u);
  EXPECT_EQ(differingWords(base, {0x200000001ull, 5, 6}), 64u);
  EXPECT_EQ(differingWords(base, {0x100000001ull, 4, 6}), 64u);
  EXPECT_EQ(differingWords(base, {0x100000001ull, 5, 7}), 64u);
}

// First two moments of 2^20 uniforms: mean 1/2 and variance 1/12, within
// five standard errors.
TEST(NumericsPhilox, UniformMoments) {
  const RandomKey key{1, 0, 0};
  const size_t count = size_t(1) << 20;
  UniformGenerator generator(key);
  double sum = 0.0, squares = 0.0;
  for (size_t i = 0; i < count; ++i) {
    double u = generator(i);
    sum += u;
    squares += (u - 0.5) * (u - 0.5);
  }
  double n = double(count);
  EXPECT_NEAR(sum / n, 0.5, 5.0 * std::sqrt(1.0 / 12.0 / n));
  // Var[(u - 1/2)^2] = 1/80 - 1/144.
  EXPECT_NEAR(squares / n, 1.0 / 12.0,
              5.0 * std::sqrt((1.0 / 80.0 - 1.0 / 144.0) / n));
}

} // namespace
