//===- Philox.cpp - Counter-based random numbers for LUQ ------------------===//

#include "lq/Numerics/Philox.h"

namespace lq::numerics {

namespace {

constexpr uint32_t kMultiplier0 = 0xD2511F53u;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kKeyIncrement0 = 0x9E3779B9u;
constexpr uint32_t kKeyIncrement1 = 0xBB67AE85u;
constexpr int kRounds = 10;

// The counter of the block that holds element `index`; the element takes
// word (index & 3) of the block's output.
PhiloxCounter blockCounter(const RandomKey &key, uint64_t block) {
  return {uint32_t(block), uint32_t(block >> 32), key.sample, key.stream};
}

PhiloxKey seedKey(uint64_t seed) {
  return {uint32_t(seed), uint32_t(seed >> 32)};
}

float wordToUniform(uint32_t word) {
  return float(word >> 8) * 0x1p-24f;
}

} // namespace

// Scalar locals rather than array elements: the loop is the hot path of
// every LUQ encode and stays fast even in unoptimized builds.
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2],
           c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < kRounds; ++round) {
    if (round != 0) {
      k0 += kKeyIncrement0;
      k1 += kKeyIncrement1;
    }
    uint64_t product0 = uint64_t(kMultiplier0) * c0;
    uint64_t product1 = uint64_t(kMultiplier1) * c2;
    c0 = uint32_t(product1 >> 32) ^ c1 ^ k0;
    c1 = uint32_t(product1);
    c2 = uint32_t(product0 >> 32) ^ c3 ^ k1;
    c3 = uint32_t(product0);
  }
  return {c0, c1, c2, c3};
}

uint32_t randomWord(const RandomKey &key, uint64_t index) {
  PhiloxCounter block =
      philox4x32_10(blockCounter(key, index >> 2), seedKey(key.seed));
  return block[index & 3];
}

float uniform(const RandomKey &key, uint64_t index) {
  return wordToUniform(randomWord(key, index));
}

UniformGenerator::UniformGenerator(const RandomKey &randomKey)
    : key(randomKey), cachedBlock(0) {}

float UniformGenerator::operator()(uint64_t index) {
  uint64_t block = index >> 2;
  if (!haveBlock || block != cachedBlock) {
    words = philox4x32_10(blockCounter(key, block), seedKey(key.seed));
    cachedBlock = block;
    haveBlock = true;
  }
  return wordToUniform(words[index & 3]);
}

} // namespace lq::numerics
