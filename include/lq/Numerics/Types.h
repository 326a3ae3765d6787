//===- Types.h - Shared vocabulary of the numerics core ---------*- C++ -*-===//
//
// Status codes, code formats, bf16/f16 bit conversions and the read-only
// matrix view that every quantizer takes. See docs/numerics.md.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_TYPES_H
#define LQ_NUMERICS_TYPES_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lq::numerics {

// The library never throws; every entry point that can reject its input
// returns one of these.
enum class Status : uint8_t {
  Ok,
  // A buffer that has at least one element to read or write is null.
  NullPointer,
  // A row stride smaller than the column count, or sizes whose product
  // does not fit in size_t.
  InvalidShape,
  // An unpacked code outside the 4-bit range of its format.
  InvalidCode,
  // An SMP sample count that is not a power of two in [1, 64].
  InvalidSampleCount,
  // Both GEMM operands are log4: |a * b| could reach 64 * 64, beyond the
  // bound that makes the int32 accumulation exact.
  Log4TimesLog4,
  // K * samples * 960 >= 2^31: the int32 accumulator could overflow.
  AccumulatorRange,
};

inline const char *statusName(Status status) {
  switch (status) {
  case Status::Ok:
    return "ok";
  case Status::NullPointer:
    return "null pointer";
  case Status::InvalidShape:
    return "invalid shape";
  case Status::InvalidCode:
    return "invalid code";
  case Status::InvalidSampleCount:
    return "invalid sample count";
  case Status::Log4TimesLog4:
    return "log4 x log4 GEMM";
  case Status::AccumulatorRange:
    return "accumulator range";
  }
  return "unknown status";
}

// How the 4-bit codes of a tensor are read. Unpacked codes are int8_t:
//   Int4Signed   -8..7 (the quantizer produces -7..7 only)
//   Int4Unsigned  0..15
//   Log4          0..15, bit 3 the sign, bits 2..0 the exponent field e
enum class Format : uint8_t { Int4Signed, Int4Unsigned, Log4 };

inline bool isValidCode(Format format, int8_t code) {
  if (format == Format::Int4Signed)
    return code >= -8 && code <= 7;
  return code >= 0 && code <= 15;
}

// The integer a valid code stands for; the tensor's value is this times its
// scale. For Log4, e = 0 (either sign, so 0x8 too) is 0, otherwise
// +-2^(e-1).
inline int32_t codeValue(Format format, int8_t code) {
  if (format != Format::Log4)
    return code;
  int32_t e = code & 7;
  if (e == 0)
    return 0;
  int32_t magnitude = int32_t(1) << (e - 1);
  return (code & 8) ? -magnitude : magnitude;
}

inline float bitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline uint32_t floatToBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// bf16 is the upper half of an f32, so widening is exact.
inline float bf16ToFloat(uint16_t bits) {
  return bitsToFloat(uint32_t(bits) << 16);
}

// IEEE binary16 widened exactly: every f16, subnormals included, is an f32.
inline float f16ToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact and normal in f32.
    float magnitude = float(mantissa) * 0x1p-24f;
    return bitsToFloat(floatToBits(magnitude) | sign);
  }
  if (exponent == 0x1f)
    return bitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  return bitsToFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even. A NaN keeps its sign and upper payload
// and is made quiet, so that truncation cannot turn it into an infinity.
inline uint16_t floatToBf16(float value) {
  uint32_t bits = floatToBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return uint16_t((bits >> 16) | 0x0040u);
  uint32_t lsb = (bits >> 16) & 1u;
  return uint16_t((bits + 0x7fffu + lsb) >> 16);
}

// How the elements of a MatrixView are stored. The 16-bit types are given
// as their bit patterns.
enum class ElementType : uint8_t { F32, BF16, F16 };

// A read-only row-major 2-D tensor. Element (r, c) is at
// data[r * rowStride + c]. Its logical row-major linear index r * cols + c,
// not its address, is what the random stream of LUQ is keyed on, so padding
// rows never changes a result.
class MatrixView {
public:
  static MatrixView f32(const float *data, size_t rows, size_t cols) {
    return f32(data, rows, cols, cols);
  }
  static MatrixView f32(const float *data, size_t rows, size_t cols,
                        size_t rowStride) {
    return MatrixView(data, ElementType::F32, rows, cols, rowStride);
  }
  static MatrixView bf16(const uint16_t *data, size_t rows, size_t cols) {
    return bf16(data, rows, cols, cols);
  }
  static MatrixView bf16(const uint16_t *data, size_t rows, size_t cols,
                         size_t rowStride) {
    return MatrixView(data, ElementType::BF16, rows, cols, rowStride);
  }
  static MatrixView f16(const uint16_t *data, size_t rows, size_t cols) {
    return f16(data, rows, cols, cols);
  }
  static MatrixView f16(const uint16_t *data, size_t rows, size_t cols,
                        size_t rowStride) {
    return MatrixView(data, ElementType::F16, rows, cols, rowStride);
  }

  size_t rows() const { return rowCount; }
  size_t cols() const { return colCount; }
  // Only meaningful once validate() returned Ok.
  size_t size() const { return rowCount * colCount; }

  // Ok when the view can be read: a non-empty view needs data and a row
  // stride of at least cols, and rows * cols must fit in size_t.
  Status validate() const;

  // The element widened exactly to f32.
  float at(size_t row, size_t col) const {
    size_t offset = row * stride + col;
    switch (type) {
    case ElementType::F32:
      return static_cast<const float *>(data)[offset];
    case ElementType::BF16:
      return bf16ToFloat(static_cast<const uint16_t *>(data)[offset]);
    case ElementType::F16:
      return f16ToFloat(static_cast<const uint16_t *>(data)[offset]);
    }
    return 0.0f;
  }

private:
  MatrixView(const void *elements, ElementType elementType, size_t rows,
             size_t cols, size_t rowStride)
      : data(elements), type(elementType), rowCount(rows), colCount(cols),
        stride(rowStride) {}

  const void *data;
  ElementType type;
  size_t rowCount;
  size_t colCount;
  size_t stride;
};

// a * b in size_t, or false when it does not fit.
inline bool multiplyFits(size_t a, size_t b, size_t &product) {
  if (a != 0 && b > SIZE_MAX / a)
    return false;
  product = a * b;
  return true;
}

// No element is NaN or +-Inf.
inline bool allFinite(const MatrixView &x) {
  for (size_t row = 0; row < x.rows(); ++row)
    for (size_t col = 0; col < x.cols(); ++col)
      if (!std::isfinite(x.at(row, col)))
        return false;
  return true;
}

inline Status MatrixView::validate() const {
  size_t elements;
  if (!multiplyFits(rowCount, colCount, elements))
    return Status::InvalidShape;
  if (elements == 0)
    return Status::Ok;
  if (stride < colCount)
    return Status::InvalidShape;
  if (data == nullptr)
    return Status::NullPointer;
  return Status::Ok;
}

} // namespace lq::numerics

#endif // LQ_NUMERICS_TYPES_H
