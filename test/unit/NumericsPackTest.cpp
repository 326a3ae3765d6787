//===- NumericsPackTest.cpp - 4-bit packing and shared types --------------===//

#include "lq/Numerics/Pack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <iterator>
#include <set>
#include <string>
#include <vector>

using namespace lq::numerics;

namespace {

const Format kFormats[] = {Format::Int4Signed, Format::Int4Unsigned,
                           Format::Log4};

// Element 2j in bits 0..3 of byte j, element 2j+1 in bits 4..7, each row
// padded with a zero nibble; signed codes in two's complement.
TEST(NumericsPack, ByteLayout) {
  std::vector<int8_t> codes = {1, 2, 3, /*row 2*/ 15, 8, 9};
  std::vector<uint8_t> packed(4, 0xaa);
  ASSERT_EQ(packCodes(Format::Log4, codes.data(), 2, 3, packed.data()),
            Status::Ok);
  EXPECT_EQ(packed, (std::vector<uint8_t>{0x21, 0x03, 0x8f, 0x09}));

  std::vector<int8_t> signedCodes = {-7, 7, -1, -8, 0};
  std::vector<uint8_t> signedPacked(3, 0xaa);
  ASSERT_EQ(packCodes(Format::Int4Signed, signedCodes.data(), 1, 5,
                      signedPacked.data()),
            Status::Ok);
  EXPECT_EQ(signedPacked, (std::vector<uint8_t>{0x79, 0x8f, 0x00}));
}

TEST(NumericsPack, RowBytes) {
  EXPECT_EQ(packedRowBytes(0), 0u);
  EXPECT_EQ(packedRowBytes(1), 1u);
  EXPECT_EQ(packedRowBytes(2), 1u);
  EXPECT_EQ(packedRowBytes(33), 17u);
}

std::vector<int8_t> randomCodes(Format format, size_t count,
                                std::mt19937 &engine) {
  std::vector<int8_t> codes(count);
  for (int8_t &code : codes) {
    int nibble = int(engine() & 15);
    code = int8_t(format == Format::Int4Signed ? nibble - 8 : nibble);
  }
  return codes;
}

// Round trips for odd and even widths, every format, every 4-bit value.
TEST(NumericsPack, RoundTripOddAndEvenWidths) {
  std::mt19937 engine(17);
  for (Format format : kFormats) {
    for (size_t cols : {1, 2, 3, 7, 8, 33, 64}) {
      for (size_t rows : {1, 2, 5}) {
        SCOPED_TRACE(testing::Message() << "format " << int(format) << " "
                                        << rows << "x" << cols);
        std::vector<int8_t> codes = randomCodes(format, rows * cols, engine);
        std::vector<uint8_t> packed(rows * packedRowBytes(cols), 0xff);
        ASSERT_EQ(packCodes(format, codes.data(), rows, cols, packed.data()),
                  Status::Ok);
        for (size_t row = 0; cols % 2 && row < rows; ++row) {
          EXPECT_EQ(packed[row * packedRowBytes(cols) + cols / 2] >> 4, 0)
              << "padding nibble of row " << row;
        }
        std::vector<int8_t> back(rows * cols, 99);
        ASSERT_EQ(unpackCodes(format, packed.data(), rows, cols, back.data()),
                  Status::Ok);
        EXPECT_EQ(back, codes);
      }
    }
  }
}

// Readers ignore the padding nibble, whatever a writer left there.
TEST(NumericsPack, UnpackIgnoresPadding) {
  std::vector<uint8_t> packed = {0xf9, 0xe5, 0x73, 0x91};
  std::vector<int8_t> codes(6);
  ASSERT_EQ(unpackCodes(Format::Int4Signed, packed.data(), 2, 3, codes.data()),
            Status::Ok);
  EXPECT_EQ(codes, (std::vector<int8_t>{-7, -1, 5, 3, 7, 1}));
}

TEST(NumericsPack, RejectsCodesOutsideTheFormat) {
  struct Case {
    Format format;
    int8_t code;
  };
  for (Case bad : {Case{Format::Int4Signed, 8}, Case{Format::Int4Signed, -9},
                   Case{Format::Int4Unsigned, -1},
                   Case{Format::Int4Unsigned, 16}, Case{Format::Log4, 16},
                   Case{Format::Log4, -3}}) {
    std::vector<int8_t> codes = {0, 1, bad.code};
    std::vector<uint8_t> packed(2, 0xaa);
    EXPECT_EQ(packCodes(bad.format, codes.data(), 1, 3, packed.data()),
              Status::InvalidCode);
    EXPECT_EQ(packed, (std::vector<uint8_t>{0xaa, 0xaa})) << "wrote on error";
  }
}

TEST(NumericsPack, NullBuffersOnlyForEmptyTensors) {
  std::vector<int8_t> codes(4);
  std::vector<uint8_t> packed(2);
  EXPECT_EQ(packCodes(Format::Log4, nullptr, 2, 2, packed.data()),
            Status::NullPointer);
  EXPECT_EQ(packCodes(Format::Log4, codes.data(), 2, 2, nullptr),
            Status::NullPointer);
  EXPECT_EQ(unpackCodes(Format::Log4, nullptr, 2, 2, codes.data()),
            Status::NullPointer);
  EXPECT_EQ(packCodes(Format::Log4, nullptr, 0, 7, nullptr), Status::Ok);
  EXPECT_EQ(unpackCodes(Format::Log4, nullptr, 3, 0, nullptr), Status::Ok);
}

TEST(NumericsTypes, CodeValues) {
  for (int code = -8; code <= 7; ++code)
    EXPECT_EQ(codeValue(Format::Int4Signed, int8_t(code)), code);
  for (int code = 0; code <= 15; ++code)
    EXPECT_EQ(codeValue(Format::Int4Unsigned, int8_t(code)), code);
  const int log4Values[16] = {0, 1,  2,  4,  8,  16,  32,  64,
                              0, -1, -2, -4, -8, -16, -32, -64};
  for (int code = 0; code <= 15; ++code)
    EXPECT_EQ(codeValue(Format::Log4, int8_t(code)), log4Values[code]);
  EXPECT_TRUE(isValidCode(Format::Int4Signed, -8));
  EXPECT_FALSE(isValidCode(Format::Int4Signed, 8));
  EXPECT_FALSE(isValidCode(Format::Log4, -1));
}

// bf16 rounding to nearest even, computed in double: 8 significant bits,
// or the fixed quantum 2^-133 of bf16 subnormals.
uint16_t bf16ByDouble(float value) {
  int exponent;
  std::frexp(double(value), &exponent); // value = [0.5, 1) * 2^exponent
  int quantum = std::max(exponent - 8, -133);
  double rounded =
      std::ldexp(std::nearbyint(std::ldexp(double(value), -quantum)), quantum);
  return uint16_t(floatToBits(float(rounded)) >> 16);
}

TEST(NumericsTypes, Bf16RoundsToNearestEven) {
  const float ties[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f,
                        -(1.0f + 0x1p-8f), 3.0f + 0x1p-7f, 0x1.fe8p0f};
  for (float value : ties)
    EXPECT_EQ(floatToBf16(value), bf16ByDouble(value)) << value;
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  std::mt19937 engine(5);
  for (int i = 0; i < 100000; ++i) {
    float value = bitsToFloat(engine() & 0x7effffffu) * (i % 2 ? -1 : 1);
    ASSERT_EQ(floatToBf16(value), bf16ByDouble(value)) << value;
  }
}

TEST(NumericsTypes, Bf16SpecialValues) {
  EXPECT_EQ(floatToBf16(0.0f), 0x0000);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  // Above the largest bf16 by at least half an ulp: rounds to infinity.
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  // NaNs stay NaN, sign kept, even with payload only in the low half.
  EXPECT_EQ(floatToBf16(bitsToFloat(0x7f800001u)), 0x7fc0);
  EXPECT_EQ(floatToBf16(bitsToFloat(0xffc00000u)), 0xffc0);
  // Subnormals round like everything else.
  EXPECT_EQ(floatToBf16(bitsToFloat(0x00008000u)), 0x0000);
  EXPECT_EQ(floatToBf16(bitsToFloat(0x00018000u)), 0x0002);
  // Every finite bf16 is its own rounding.
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    if ((bits & 0x7f80u) != 0x7f80u) {
      ASSERT_EQ(floatToBf16(bf16ToFloat(uint16_t(bits))), bits);
    }
  }
}

// Every f16 bit pattern against its value computed from the fields.
TEST(NumericsTypes, F16WidensExactly) {
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    int exponent = int(bits >> 10) & 0x1f;
    int mantissa = int(bits & 0x3ff);
    double sign = (bits & 0x8000u) ? -1.0 : 1.0;
    float widened = f16ToFloat(uint16_t(bits));
    if (exponent == 0x1f) {
      ASSERT_EQ(std::isnan(widened), mantissa != 0) << bits;
      ASSERT_EQ(std::signbit(widened), sign < 0) << bits;
      continue;
    }
    double value = exponent == 0
                       ? sign * std::ldexp(double(mantissa), -24)
                       : sign * std::ldexp(double(1024 + mantissa),
                                           exponent - 25);
    ASSERT_EQ(double(widened), value) << bits;
    ASSERT_EQ(std::signbit(widened), sign < 0) << bits;
  }
  EXPECT_EQ(floatToBits(f16ToFloat(0x7c00)), 0x7f800000u);
  EXPECT_EQ(floatToBits(f16ToFloat(0x7e00)), 0x7fc00000u);
}

// Diagnostics name every status, each differently.
TEST(NumericsTypes, StatusNames) {
  const Status all[] = {Status::Ok,
                        Status::NullPointer,
                        Status::InvalidShape,
                        Status::InvalidCode,
                        Status::InvalidSampleCount,
                        Status::Log4TimesLog4,
                        Status::AccumulatorRange};
  std::set<std::string> names;
  for (Status status : all)
    names.insert(statusName(status));
  EXPECT_EQ(names.size(), std::size(all));
  EXPECT_EQ(names.count("unknown status"), 0u);
}

TEST(NumericsTypes, MatrixViewValidation) {
  float data[6] = {};
  EXPECT_EQ(MatrixView::f32(data, 2, 3).validate(), Status::Ok);
  EXPECT_EQ(MatrixView::f32(data, 2, 3, 2).validate(), Status::InvalidShape);
  EXPECT_EQ(MatrixView::f32(nullptr, 2, 3).validate(), Status::NullPointer);
  EXPECT_EQ(MatrixView::f32(nullptr, 0, 3).validate(), Status::Ok);
  EXPECT_EQ(MatrixView::f32(data, SIZE_MAX, 3).validate(),
            Status::InvalidShape);
  uint16_t bf16[2] = {0x3f80, 0xc000};
  MatrixView view = MatrixView::bf16(bf16, 1, 2);
  EXPECT_EQ(view.at(0, 0), 1.0f);
  EXPECT_EQ(view.at(0, 1), -2.0f);
  uint16_t f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0000};
  MatrixView strided = MatrixView::f16(f16, 2, 1, 2);
  EXPECT_EQ(strided.at(0, 0), 1.0f);
  EXPECT_EQ(strided.at(1, 0), 65504.0f);
}

} // namespace
