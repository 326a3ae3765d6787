//===- Pack.cpp - Two 4-bit codes per byte --------------------------------===//

#include "lq/Numerics/Pack.h"

namespace lq::numerics {

namespace {

uint8_t toNibble(int8_t code) { return uint8_t(code) & 0x0fu; }

int8_t fromNibble(Format format, uint8_t nibble) {
  if (format == Format::Int4Signed && (nibble & 0x8u))
    return int8_t(int32_t(nibble) - 16);
  return int8_t(nibble);
}

Status checkBuffers(const void *in, const void *out, size_t rows, size_t cols,
                    size_t &count) {
  if (!multiplyFits(rows, cols, count))
    return Status::InvalidShape;
  if (count != 0 && (in == nullptr || out == nullptr))
    return Status::NullPointer;
  return Status::Ok;
}

} // namespace

Status packCodes(Format format, const int8_t *codes, size_t rows, size_t cols,
                 uint8_t *packed) {
  size_t count;
  if (Status status = checkBuffers(codes, packed, rows, cols, count);
      status != Status::Ok)
    return status;
  for (size_t i = 0; i < count; ++i)
    if (!isValidCode(format, codes[i]))
      return Status::InvalidCode;
  size_t rowBytes = packedRowBytes(cols);
  for (size_t row = 0; row < rows; ++row) {
    const int8_t *rowCodes = codes + row * cols;
    uint8_t *rowBytesOut = packed + row * rowBytes;
    for (size_t byte = 0; byte < rowBytes; ++byte) {
      size_t even = 2 * byte;
      uint8_t low = toNibble(rowCodes[even]);
      uint8_t high = even + 1 < cols ? toNibble(rowCodes[even + 1]) : 0;
      rowBytesOut[byte] = uint8_t(low | (high << 4));
    }
  }
  return Status::Ok;
}

Status unpackCodes(Format format, const uint8_t *packed, size_t rows,
                   size_t cols, int8_t *codes) {
  size_t count;
  if (Status status = checkBuffers(packed, codes, rows, cols, count);
      status != Status::Ok)
    return status;
  size_t rowBytes = packedRowBytes(cols);
  for (size_t row = 0; row < rows; ++row) {
    const uint8_t *rowBytesIn = packed + row * rowBytes;
    for (size_t col = 0; col < cols; ++col) {
      uint8_t byte = rowBytesIn[col / 2];
      uint8_t nibble = (col & 1) ? byte >> 4 : byte & 0x0fu;
      codes[row * cols + col] = fromNibble(format, nibble);
    }
  }
  return Status::Ok;
}

} // namespace lq::numerics
