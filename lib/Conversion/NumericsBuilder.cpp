//===- NumericsBuilder.cpp - the numerics as arith ops --------------------===//

#include "lq/Conversion/NumericsBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;
using namespace lq;

namespace {
// Philox4x32-10 constants (Salmon et al., SC'11).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

constexpr uint32_t kF32AbsMask = 0x7FFFFFFFu;
constexpr uint32_t kF32InfBits = 0x7F800000u;
constexpr uint32_t kF32MantissaMask = 0x007FFFFFu;
constexpr uint32_t kF32OneBits = 0x3F800000u;
constexpr uint32_t kTwoPowMinus24Bits = 0x33800000u;  // 2^-24
constexpr uint32_t kTwoPowMinus120Bits = 0x03800000u; // 2^-120
constexpr int kF32ExponentBias = 127;
} // namespace

Type NumericsBuilder::shaped(Type elementType) {
  if (width == 0)
    return elementType;
  return VectorType::get({width}, elementType);
}

Value NumericsBuilder::constant(Type elementType, TypedAttr value) {
  if (width == 0)
    return arith::ConstantOp::create(b, value);
  auto type = cast<VectorType>(shaped(elementType));
  return arith::ConstantOp::create(b, DenseElementsAttr::get(type, value));
}

Value NumericsBuilder::i8(int64_t v) {
  return constant(b.getI8Type(), b.getIntegerAttr(b.getI8Type(), v));
}
Value NumericsBuilder::i32(int64_t v) {
  return constant(b.getI32Type(), b.getIntegerAttr(b.getI32Type(), v));
}
Value NumericsBuilder::i64(int64_t v) {
  return constant(b.getI64Type(), b.getIntegerAttr(b.getI64Type(), v));
}
Value NumericsBuilder::f32(float v) {
  return constant(b.getF32Type(), b.getF32FloatAttr(v));
}
Value NumericsBuilder::f32FromBits(uint32_t bits) {
  return arith::BitcastOp::create(b, shaped(b.getF32Type()), i32(bits));
}

std::array<Value, 4> NumericsBuilder::philox(std::array<Value, 4> c,
                                             std::array<Value, 2> key) {
  Value m0 = i32(kPhiloxM0), m1 = i32(kPhiloxM1);
  Value w0 = i32(kPhiloxW0), w1 = i32(kPhiloxW1);
  Value k0 = key[0], k1 = key[1];
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      k0 = arith::AddIOp::create(b, k0, w0);
      k1 = arith::AddIOp::create(b, k1, w1);
    }
    auto p0 = arith::MulUIExtendedOp::create(b, m0, c[0]);
    auto p1 = arith::MulUIExtendedOp::create(b, m1, c[2]);
    Value x0 = arith::XOrIOp::create(
        b, arith::XOrIOp::create(b, p1.getHigh(), c[1]), k0);
    Value x2 = arith::XOrIOp::create(
        b, arith::XOrIOp::create(b, p0.getHigh(), c[3]), k1);
    c = {x0, p1.getLow(), x2, p0.getLow()};
  }
  return c;
}

std::array<Value, 4> NumericsBuilder::philoxBlock(Value seed, Value stream,
                                                  Value sample, Value block) {
  Type i32Type = shaped(b.getI32Type());
  Value c0 = arith::TruncIOp::create(b, i32Type, block);
  Value c1 = arith::TruncIOp::create(
      b, i32Type, arith::ShRUIOp::create(b, block, i64(32)));
  Value k0 = arith::TruncIOp::create(b, i32Type, seed);
  Value k1 = arith::TruncIOp::create(
      b, i32Type, arith::ShRUIOp::create(b, seed, i64(32)));
  return philox({c0, c1, sample, stream}, {k0, k1});
}

Value NumericsBuilder::wordToUniform(Value word) {
  // 24 random bits scaled by 2^-24: exact in f32.
  Value top24 = arith::ShRUIOp::create(b, word, i32(8));
  Value asFloat = arith::UIToFPOp::create(b, shaped(b.getF32Type()), top24);
  return arith::MulFOp::create(b, asFloat, f32FromBits(kTwoPowMinus24Bits));
}

Value NumericsBuilder::uniform(Value seed, Value stream, Value sample,
                               Value index) {
  Type i32Type = shaped(b.getI32Type());
  std::array<Value, 4> words = philoxBlock(
      seed, stream, sample, arith::ShRUIOp::create(b, index, i64(2)));
  Value lane = arith::TruncIOp::create(
      b, i32Type, arith::AndIOp::create(b, index, i64(3)));
  Value word = words[3];
  for (int w = 2; w >= 0; --w) {
    Value isLane =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, i32(w));
    word = arith::SelectOp::create(b, isLane, words[w], word);
  }
  return wordToUniform(word);
}

Value NumericsBuilder::absBits(Value x) {
  Value bits = arith::BitcastOp::create(b, shaped(b.getI32Type()), x);
  return arith::AndIOp::create(b, bits, i32(kF32AbsMask));
}

Value NumericsBuilder::isNonfiniteBits(Value bits) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::uge, bits,
                               i32(kF32InfBits));
}

Value NumericsBuilder::isUsableRange(Value m) {
  Value notTiny = arith::CmpFOp::create(b, arith::CmpFPredicate::OGE, m,
                                        f32FromBits(kTwoPowMinus120Bits));
  Value finite = arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, m,
                                       f32FromBits(kF32InfBits));
  return arith::AndIOp::create(b, notTiny, finite);
}

Value NumericsBuilder::luqScaled(Value x, Value inv) {
  Value a = arith::BitcastOp::create(b, shaped(b.getF32Type()), absBits(x));
  return arith::MulFOp::create(b, a, inv);
}

Value NumericsBuilder::luqOverflows(Value x, Value inv) {
  return arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, luqScaled(x, inv),
                               f32(64.0f));
}

Value NumericsBuilder::luqCode(Value x, Value inv, Value u) {
  Type i32Type = shaped(b.getI32Type()), f32Type = shaped(b.getF32Type());
  Value xBits = arith::BitcastOp::create(b, i32Type, x);
  Value sign = arith::ShRUIOp::create(b, xBits, i32(31));
  Value r = luqScaled(x, inv);

  // floor(log2 r) straight from the exponent field: r >= 0, so the sign bit
  // is clear and the biased exponent is the top bits.
  Value rBits = arith::BitcastOp::create(b, i32Type, r);
  Value biasedExp = arith::ShRUIOp::create(b, rBits, i32(23));
  Value n = arith::SubIOp::create(b, biasedExp, i32(kF32ExponentBias));

  // r < 1: keep alpha with probability r (stochastic underflow).
  Value keep = arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, u, r);
  Value eUnder = arith::ExtUIOp::create(b, i32Type, keep);

  // 1 <= r < 64: round between 2^n and 2^(n+1) with probability f = r/2^n-1,
  // the mantissa of r read as a number in [1, 2) minus one (exact).
  Value mantissa = arith::OrIOp::create(
      b, arith::AndIOp::create(b, rBits, i32(kF32MantissaMask)),
      i32(kF32OneBits));
  Value f = arith::SubFOp::create(
      b, arith::BitcastOp::create(b, f32Type, mantissa), f32(1.0f));
  Value up = arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, u, f);
  Value nPlusOne = arith::AddIOp::create(b, n, i32(1));
  Value eNormal = arith::SelectOp::create(
      b, up, arith::AddIOp::create(b, n, i32(2)), nPlusOne);

  // r >= 64 (Inf included) saturates at the top level.
  Value saturate =
      arith::CmpIOp::create(b, arith::CmpIPredicate::sge, n, i32(6));
  Value underflow = arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                          biasedExp, i32(kF32ExponentBias));
  Value e = arith::SelectOp::create(
      b, underflow, eUnder, arith::SelectOp::create(b, saturate, i32(7), eNormal));

  Value isZero = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, e, i32(0));
  Value signBit = arith::SelectOp::create(
      b, isZero, i32(0), arith::ShLIOp::create(b, sign, i32(3)));
  return arith::TruncIOp::create(b, shaped(b.getI8Type()),
                                 arith::OrIOp::create(b, e, signBit));
}

Value NumericsBuilder::sawbCode(Value x, Value inv, bool isUnsigned) {
  Value v = arith::MulFOp::create(b, x, inv);
  // Clamping to integer bounds before rounding equals rounding then
  // clamping, and keeps the value small for the float-to-int conversion.
  Value lo = f32(isUnsigned ? 0.0f : -7.0f);
  Value hi = f32(isUnsigned ? 15.0f : 7.0f);
  Value clamped =
      arith::MinimumFOp::create(b, arith::MaximumFOp::create(b, v, lo), hi);
  // Round half to even by adding and removing 1.5 * 2^23: exact for
  // |v| <= 2^22, and plain f32 adds on every target (the NVVM lowering
  // sends math.roundeven to libdevice).
  Value magic = f32(12582912.0f);
  Value rounded = arith::SubFOp::create(
      b, arith::AddFOp::create(b, clamped, magic), magic);
  Value q = arith::FPToSIOp::create(b, shaped(b.getI32Type()), rounded);
  Value nibble = arith::AndIOp::create(b, q, i32(0xF));
  return arith::TruncIOp::create(b, shaped(b.getI8Type()), nibble);
}

Value NumericsBuilder::toBf16Bits(Value x) {
  Type i32Type = shaped(b.getI32Type());
  Value bits = arith::BitcastOp::create(b, i32Type, x);
  Value lsb = arith::AndIOp::create(
      b, arith::ShRUIOp::create(b, bits, i32(16)), i32(1));
  Value rounded = arith::ShRUIOp::create(
      b, arith::AddIOp::create(b, arith::AddIOp::create(b, bits, i32(0x7FFF)), lsb),
      i32(16));
  Value quietNaN =
      arith::OrIOp::create(b, arith::ShRUIOp::create(b, bits, i32(16)), i32(0x40));
  Value isNaN = arith::CmpIOp::create(b, arith::CmpIPredicate::ugt,
                                      absBits(x), i32(kF32InfBits));
  Value result = arith::SelectOp::create(b, isNaN, quietNaN, rounded);
  return arith::TruncIOp::create(b, shaped(b.getI16Type()), result);
}

Value NumericsBuilder::epilogue(Value acc, Value scale, Value bias, bool relu,
                                bool bf16Output) {
  Value v = arith::MulFOp::create(
      b, arith::SIToFPOp::create(b, shaped(b.getF32Type()), acc), scale);
  if (bias)
    v = arith::AddFOp::create(b, v, bias);
  if (relu)
    v = arith::MaximumFOp::create(b, v, f32(0.0f));
  if (bf16Output)
    v = toBf16Bits(v);
  return v;
}

Value NumericsBuilder::decode(Value code, Format format) {
  Type i32Type = shaped(b.getI32Type());
  switch (format) {
  case Format::UInt4:
    return arith::ExtUIOp::create(b, i32Type, code);
  case Format::SInt4: {
    // Sign-extend the low nibble.
    Value shifted = arith::ShLIOp::create(b, code, i8(4));
    return arith::ExtSIOp::create(b, i32Type,
                                  arith::ShRSIOp::create(b, shifted, i8(4)));
  }
  case Format::Log4: {
    Value c = arith::ExtUIOp::create(b, i32Type, code);
    Value e = arith::AndIOp::create(b, c, i32(7));
    // (1 << e) >> 1 is 2^(e-1) for e >= 1 and 0 for e = 0.
    Value magnitude = arith::ShRUIOp::create(
        b, arith::ShLIOp::create(b, i32(1), e), i32(1));
    Value negative = arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                           arith::AndIOp::create(b, c, i32(8)),
                                           i32(0));
    return arith::SelectOp::create(
        b, negative, arith::SubIOp::create(b, i32(0), magnitude), magnitude);
  }
  }
  llvm_unreachable("unknown lq format");
}
