//===- WgmmaDescriptor.h - the wgmma shared-memory matrix descriptor -*- C++ -*-===//
//
// The 64-bit matrix descriptor that `wgmma.mma_async` reads an operand tile
// of shared memory through (PTX ISA, "Matrix Descriptor Format" of the
// asynchronous warpgroup-level matrix instructions), as typed fields:
//
//   bits  0-13  start address >> 4 (of the address's low 18 bits)
//   bits 16-29  leading dimension byte offset >> 4
//   bits 32-45  stride dimension byte offset >> 4
//   bits 49-51  matrix base offset (for swizzled tiles not 512/1024-byte
//               aligned)
//   bits 62-63  swizzle mode: 0 none, 1 128-byte, 2 64-byte, 3 32-byte
//
// Plain C++: the generator encodes the constant fields here and adds the
// start address, known only in the kernel, with kStartMask / kStartShift.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_CONVERSION_GPU_WGMMADESCRIPTOR_H
#define LQ_CONVERSION_GPU_WGMMADESCRIPTOR_H

#include <cstdint>

namespace lq {

enum class WgmmaSwizzle : uint8_t { None = 0, B128 = 1, B64 = 2, B32 = 3 };

struct WgmmaDescriptor {
  /// The tile's shared-memory byte address (its low 18 bits are encoded).
  uint32_t startAddress = 0;
  /// Bytes between core matrices along the leading dimension (K for the
  /// K-major tiles lq uses without swizzle).
  uint32_t leadingByteOffset = 0;
  /// Bytes between groups of 8 rows (core matrices along M or N).
  uint32_t strideByteOffset = 0;
  uint8_t baseOffset = 0;
  WgmmaSwizzle swizzle = WgmmaSwizzle::None;

  /// The start address field: (address & kStartMask) >> kStartShift.
  static constexpr uint64_t kStartMask = 0x3FFFF;
  static constexpr unsigned kStartShift = 4;

  /// Every field fits its bits: byte offsets and the address are multiples
  /// of 16 below 2^18, the base offset below 8.
  constexpr bool valid() const {
    auto fits = [](uint32_t bytes) {
      return bytes % 16 == 0 && bytes < (uint32_t(1) << 18);
    };
    return fits(startAddress & uint32_t(kStartMask)) &&
           fits(leadingByteOffset) && fits(strideByteOffset) &&
           baseOffset < 8;
  }

  constexpr uint64_t encode() const {
    return ((uint64_t(startAddress) & kStartMask) >> kStartShift) |
           (uint64_t(leadingByteOffset >> 4) & 0x3FFF) << 16 |
           (uint64_t(strideByteOffset >> 4) & 0x3FFF) << 32 |
           (uint64_t(baseOffset) & 0x7) << 49 |
           uint64_t(static_cast<uint8_t>(swizzle) & 0x3) << 62;
  }
};

} // namespace lq

#endif // LQ_CONVERSION_GPU_WGMMADESCRIPTOR_H
