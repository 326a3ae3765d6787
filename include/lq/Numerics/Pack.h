//===- Pack.h - Two 4-bit codes per byte ------------------------*- C++ -*-===//
//
// Packed storage of a quantized 2-D tensor: row-major, each row padded to
// an even number of codes with a zero code, element 2j of a row in bits
// 0..3 of byte j and element 2j+1 in bits 4..7. Int4Signed codes are stored
// as 4-bit two's complement.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_PACK_H
#define LQ_NUMERICS_PACK_H

#include "lq/Numerics/Types.h"

#include <cstddef>
#include <cstdint>

namespace lq::numerics {

// Bytes that one packed row of `cols` codes occupies.
inline constexpr size_t packedRowBytes(size_t cols) { return (cols + 1) / 2; }

// Packs rows * cols codes (row-major, contiguous) into
// rows * packedRowBytes(cols) bytes. InvalidCode if a code is outside its
// format's 4-bit range; nothing is written then.
Status packCodes(Format format, const int8_t *codes, size_t rows, size_t cols,
                 uint8_t *packed);

// The inverse of packCodes. Int4Signed nibbles are sign-extended; the
// padding nibble of an odd-length row is not read.
Status unpackCodes(Format format, const uint8_t *packed, size_t rows,
                   size_t cols, int8_t *codes);

} // namespace lq::numerics

#endif // LQ_NUMERICS_PACK_H
