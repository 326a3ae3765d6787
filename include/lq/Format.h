//===- Format.h - the 4-bit code formats of lq ------------------*- C++ -*-===//

#ifndef LQ_FORMAT_H
#define LQ_FORMAT_H

namespace lq {

/// The 4-bit formats of the numerics: SAWB signed int4 (-7..7), SAWB
/// unsigned int4 (0..15), and the LUQ radix-2 log format [sign, exponent].
enum class Format { SInt4, UInt4, Log4 };

/// The format's name as the dialect spells it ("sint4", "uint4", "log4"),
/// or "?" for a value outside the enum.
inline const char *formatName(Format format) {
  switch (format) {
  case Format::SInt4:
    return "sint4";
  case Format::UInt4:
    return "uint4";
  case Format::Log4:
    return "log4";
  }
  return "?";
}

} // namespace lq

#endif // LQ_FORMAT_H
