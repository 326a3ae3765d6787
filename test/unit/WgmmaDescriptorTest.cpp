//===- WgmmaDescriptorTest.cpp - the wgmma matrix descriptor's bit fields -===//
//
// Encodings worked out by hand from the PTX ISA's matrix descriptor format:
// start address >> 4 in bits 0-13, leading byte offset >> 4 in 16-29,
// stride byte offset >> 4 in 32-45, base offset in 49-51, swizzle mode in
// 62-63 (1: 128-byte, 2: 64-byte, 3: 32-byte).
//
//===----------------------------------------------------------------------===//

#include "lq/Conversion/Gpu/WgmmaDescriptor.h"

#include <gtest/gtest.h>

using lq::WgmmaDescriptor;
using lq::WgmmaSwizzle;

namespace {

TEST(WgmmaDescriptor, NoSwizzleKMajorInt8Tile) {
  // lq's sm_90a tiles: 8 x 16-byte core matrices, two per row group along
  // K = 32 int8: LBO 128 bytes (8 << 16), SBO 256 bytes (16 << 32), at
  // shared address 0x400 (0x40).
  WgmmaDescriptor d{0x400, 128, 256, 0, WgmmaSwizzle::None};
  EXPECT_TRUE(d.valid());
  EXPECT_EQ(d.encode(), 0x0000'0010'0008'0040ull);
  // Without its address: what the generator ORs the address into.
  d.startAddress = 0;
  EXPECT_EQ(d.encode(), 0x0000'0010'0008'0000ull);
}

TEST(WgmmaDescriptor, SwizzleModesAndBaseOffset) {
  WgmmaDescriptor d;
  d.swizzle = WgmmaSwizzle::B128;
  EXPECT_EQ(d.encode(), 0x4000'0000'0000'0000ull);
  d.swizzle = WgmmaSwizzle::B64;
  EXPECT_EQ(d.encode(), 0x8000'0000'0000'0000ull);
  d.swizzle = WgmmaSwizzle::B32;
  EXPECT_EQ(d.encode(), 0xC000'0000'0000'0000ull);
  // A 128-byte swizzled K-major bf16 tile: SBO 1024 bytes (8 rows x 128),
  // LBO unused (16 by convention), base offset 5.
  WgmmaDescriptor s{0x2A80, 16, 1024, 5, WgmmaSwizzle::B128};
  EXPECT_TRUE(s.valid());
  EXPECT_EQ(s.encode(), 0x400A'0040'0001'02A8ull);
}

TEST(WgmmaDescriptor, AddressKeepsItsLow18Bits) {
  // Generic-to-shared addresses carry a window in the high bits: only the
  // low 18 bits are the shared-memory offset.
  WgmmaDescriptor d{0x1234'5670, 0, 0, 0, WgmmaSwizzle::None};
  EXPECT_EQ(d.encode(), 0x567ull);
  EXPECT_EQ((uint64_t(0x1234'5670) & WgmmaDescriptor::kStartMask) >>
                WgmmaDescriptor::kStartShift,
            0x567ull);
}

TEST(WgmmaDescriptor, FieldsThatDoNotFit) {
  EXPECT_FALSE((WgmmaDescriptor{0x408, 128, 256, 0}).valid()); // address % 16
  EXPECT_FALSE((WgmmaDescriptor{0, 120, 256, 0}).valid());     // LBO % 16
  EXPECT_FALSE((WgmmaDescriptor{0, 128, 1u << 18, 0}).valid()); // SBO range
  EXPECT_FALSE((WgmmaDescriptor{0, 128, 256, 8}).valid());     // base offset
}

} // namespace
