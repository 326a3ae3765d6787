//===- Philox.h - Counter-based random numbers for LUQ ----------*- C++ -*-===//
//
// Philox4x32-10 and the per-element uniform that LUQ's stochastic rounding
// uses. The uniform is a pure function of (seed, stream, sample, index), so
// any tiling, thread order or device reproduces it.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_PHILOX_H
#define LQ_NUMERICS_PHILOX_H

#include <array>
#include <cstdint>

namespace lq::numerics {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// Philox4x32 with 10 rounds (Salmon et al., SC'11).
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

// Names one LUQ sample of one tensor: the user seed, the stream that keeps
// two quantize ops of a program independent, and the SMP sample number.
struct RandomKey {
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint32_t sample = 0;
};

// The 32-bit Philox word that element `index` (row-major linear index of
// the logical 2-D tensor) draws from.
uint32_t randomWord(const RandomKey &key, uint64_t index);

// (randomWord >> 8) * 2^-24: one of the 2^24 floats k * 2^-24 in [0, 1).
float uniform(const RandomKey &key, uint64_t index);

// Uniforms of consecutive elements. Four neighbouring indices share one
// Philox block; the generator evaluates each block once.
class UniformGenerator {
public:
  explicit UniformGenerator(const RandomKey &randomKey);
  float operator()(uint64_t index);

private:
  RandomKey key;
  uint64_t cachedBlock;
  bool haveBlock = false;
  PhiloxCounter words{};
};

} // namespace lq::numerics

#endif // LQ_NUMERICS_PHILOX_H
