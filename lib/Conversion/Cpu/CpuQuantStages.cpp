//===- CpuQuantStages.cpp - statistics and quantizer stages ---------------===//

#include "KernelModuleBuilder.h"

namespace lq::cpu_stages {

//===----------------------------------------------------------------------===//
// Statistics
//===----------------------------------------------------------------------===//

SmallVector<Value> KernelModuleBuilder::columnLoop(Value begin, Value cols,
                                                  ValueRange init,
                                                  ColumnStep step,
                                                  int64_t lanes) {
  Value vecEnd =
      addi(begin, roundDown(arith::SubIOp::create(b, cols, begin), lanes));
  auto full = scf::ForOp::create(
      b, begin, vecEnd, index(lanes), init,
      [&](OpBuilder &, Location, Value c, ValueRange acc) {
        scf::YieldOp::create(b, step(c, Value(), acc));
      });
  Value rest = arith::SubIOp::create(b, cols, vecEnd);
  Value hasTail =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ne, rest, index(0));
  auto tail = scf::IfOp::create(
      b, hasTail,
      [&](OpBuilder &, Location) {
        Value mask = vector::CreateMaskOp::create(
            b, VectorType::get({lanes}, b.getI1Type()), ValueRange{rest});
        scf::YieldOp::create(b, step(vecEnd, mask, full.getResults()));
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, full.getResults());
      });
  return SmallVector<Value>(tail.getResults());
}

Value KernelModuleBuilder::loadLanes(Value memref, Value offset, Value mask,
                                     int64_t lanes) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  auto type = VectorType::get({lanes}, element);
  Value v;
  if (!mask) {
    v = vector::LoadOp::create(b, type, memref, ValueRange{offset});
  } else {
    // Masked-off lanes read 0: no magnitude, no square, no overflow.
    Value zeros = arith::ConstantOp::create(
        b, DenseElementsAttr::get(type, b.getZeroAttr(element)));
    v = vector::MaskedLoadOp::create(b, type, memref, ValueRange{offset}, mask,
                                     zeros);
  }
  if (element.isF32())
    return v;
  auto wide = VectorType::get({lanes}, b.getI32Type());
  Value bits = arith::ShLIOp::create(
      b, arith::ExtUIOp::create(b, wide, v),
      arith::ConstantOp::create(
          b, DenseElementsAttr::get(wide, b.getI32IntegerAttr(16))));
  return arith::BitcastOp::create(
      b, VectorType::get({lanes}, b.getF32Type()), bits);
}

Value KernelModuleBuilder::reduce(vector::CombiningKind kind, Value v) {
  return vector::ReductionOp::create(b, kind, v);
}

// lq_maxabs_<side>(in, rows, cols, stride, r0, r1, out: [max finite |x| bits,
// max |x| bits])
void KernelModuleBuilder::buildMaxAbs(StringRef side,
                                      const OperandSpec &op) {
  Type i32 = b.getI32Type();
  StatsArgs args;
  beginFunction(("lq_maxabs_" + side).str(), cpu::kStatsKinds,
                {storageType(op), i32}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride;
  NumericsBuilder nb(b, kWideLanes);
  Value zero = nb.i32(0);
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1), ValueRange{zero, zero},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        auto step = [&](Value c, Value mask, ValueRange a) {
          Value bits =
              nb.absBits(loadLanes(in, addi(base, c), mask, kWideLanes));
          Value finite = arith::SelectOp::create(
              b, nb.isNonfiniteBits(bits), nb.i32(0), bits);
          return SmallVector<Value>{arith::MaxUIOp::create(b, a[0], finite),
                                    arith::MaxUIOp::create(b, a[1], bits)};
        };
        scf::YieldOp::create(
            b, columnLoop(index(0), cols, acc, step, kWideLanes));
      });
  for (int i = 0; i < 2; ++i)
    memref::StoreOp::create(
        b, reduce(vector::CombiningKind::MAXUI, rows.getResult(i)), args.out,
        ValueRange{index(i)});
  endFunction();
}

// lq_moments_<side>(in, rows, cols, stride, r0, r1, out: [sum x^2, sum |x|,
// max finite |x|, max |x|]) in f64, per lane then across lanes, so the
// result depends only on the row range.
void KernelModuleBuilder::buildMoments(StringRef side,
                                       const OperandSpec &op) {
  Type f64 = b.getF64Type();
  StatsArgs args;
  beginFunction(("lq_moments_" + side).str(), cpu::kStatsKinds,
                {storageType(op), f64}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride;
  auto wide = VectorType::get({kLanes}, f64);
  NumericsBuilder nb(b, kLanes);
  Value zeros = arith::ConstantOp::create(
      b, DenseElementsAttr::get(wide, b.getF64FloatAttr(0.0)));
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1),
      ValueRange{zeros, zeros, nb.i32(0), nb.i32(0)},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        scf::YieldOp::create(
            b, columnLoop(index(0), cols, acc,
                          [&](Value c, Value mask, ValueRange a) {
              Value x = loadLanes(in, addi(base, c), mask);
              Value d = arith::ExtFOp::create(b, wide, x);
              Value bits = nb.absBits(x);
              Value finite = arith::SelectOp::create(
                  b, nb.isNonfiniteBits(bits), nb.i32(0), bits);
              return SmallVector<Value>{
                  arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, d, d)),
                  arith::AddFOp::create(b, a[1], math::AbsFOp::create(b, d)),
                  arith::MaxUIOp::create(b, a[2], finite),
                  arith::MaxUIOp::create(b, a[3], bits)};
            }));
      });
  Value out = args.out;
  for (int i = 0; i < 2; ++i)
    memref::StoreOp::create(b,
                            reduce(vector::CombiningKind::ADD, rows.getResult(i)),
                            out, ValueRange{index(i)});
  for (int i = 0; i < 2; ++i) {
    Value bits = reduce(vector::CombiningKind::MAXUI, rows.getResult(2 + i));
    Value asFloat = arith::ExtFOp::create(
        b, f64, Value(arith::BitcastOp::create(b, b.getF32Type(), bits)));
    memref::StoreOp::create(b, asFloat, out, ValueRange{index(2 + i)});
  }
  endFunction();
}

//===----------------------------------------------------------------------===//
// Quantization to codes
//===----------------------------------------------------------------------===//

// The same Philox4x32-10 as NumericsBuilder::philox (docs/numerics.md
// section 1), laid out for x86 vectors: without a 32-bit high multiply,
// 32-bit lanes widen every product to even and odd lanes and shuffle the
// halves back. Here each word lives in the low half of a 64-bit lane, so
// one unsigned 32x32->64 multiply (pmuludq) per product yields the high
// word by a shift and the low word in place. The high halves of the lanes
// carry garbage that is never read: multiplies see only the low 32 bits
// (the masks fold into pmuludq), xor and add never move bits downwards,
// and the words' readers take the low halves alone.
// The vectors' rounds are interleaved, round by round: their multiply
// chains are independent, and in program order they overlap in the
// out-of-order window instead of filling it one chain at a time.
SmallVector<std::array<Value, 4>>
KernelModuleBuilder::philoxBlocks(Value seed, Value stream, Value sample,
                                  ArrayRef<Value> blocks) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  constexpr int kRounds = 10;
  auto wide = cast<VectorType>(blocks.front().getType());
  auto splat64 = [&](uint64_t v) -> Value {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(wide, b.getI64IntegerAttr(int64_t(v))));
  };
  auto toWide = [&](Value v) -> Value {
    if (v.getType() == wide)
      return v;
    return arith::ExtUIOp::create(b, wide, v);
  };
  Value low32 = splat64(0xFFFFFFFFu);
  auto mulWide = [&](Value m, Value x) -> Value {
    return arith::MulIOp::create(b, m, arith::AndIOp::create(b, x, low32));
  };
  // The high word moved down by a shuffle, not a shift: on AVX-512 the
  // shift would share its port with the multiplies.
  auto halves = VectorType::get({2 * wide.getNumElements()}, b.getI32Type());
  SmallVector<int64_t> highWords;
  for (int64_t l = 0; l < wide.getNumElements(); ++l)
    highWords.append({2 * l + 1, 2 * l + 1});
  auto high = [&](Value p) -> Value {
    Value h = vector::BitCastOp::create(b, halves, p);
    return vector::BitCastOp::create(
        b, wide, vector::ShuffleOp::create(b, h, h, highWords));
  };
  Value m0 = splat64(kM0), m1 = splat64(kM1);
  Value w0 = splat64(kW0), w1 = splat64(kW1);
  Value seedWide = toWide(seed);
  // The state: each block's four words, then the key's two.
  SmallVector<Value> init;
  for (Value block : blocks)
    init.append({block, high(block), toWide(sample), toWide(stream)});
  init.append({seedWide, high(seedWide)});
  size_t keys = 4 * blocks.size();
  auto round = [&](SmallVector<Value> &state) {
    Value k0 = state[keys], k1 = state[keys + 1];
    for (size_t w = 0; w < keys; w += 4) {
      Value p0 = mulWide(m0, state[w]), p1 = mulWide(m1, state[w + 2]);
      Value x0 = arith::XOrIOp::create(
          b, arith::XOrIOp::create(b, high(p1), state[w + 1]), k0);
      Value x2 = arith::XOrIOp::create(
          b, arith::XOrIOp::create(b, high(p0), state[w + 3]), k1);
      state[w] = x0;
      state[w + 1] = p1;
      state[w + 2] = x2;
      state[w + 3] = p0;
    }
    state[keys] = arith::AddIOp::create(b, k0, w0);
    state[keys + 1] = arith::AddIOp::create(b, k1, w1);
  };
  // A loop of two rounds a step, carrying the state. All ten unrolled made
  // one straight-line block that took most of the quantizer's compile time
  // (instruction combining and selection), for no faster code; one round
  // a step moved the state between registers every round.
  constexpr int64_t kRoundsPerStep = 2;
  static_assert(kRounds % kRoundsPerStep == 0);
  scf::ForOp rounds = forLoop(
      index(0), index(kRounds / kRoundsPerStep), init,
      [&](Value, ValueRange state) {
        SmallVector<Value> next(state);
        for (int64_t r = 0; r < kRoundsPerStep; ++r)
          round(next);
        return next;
      });
  SmallVector<std::array<Value, 4>> words;
  ValueRange out = rounds.getResults();
  for (size_t w = 0; w < keys; w += 4)
    words.push_back({out[w], out[w + 1], out[w + 2], out[w + 3]});
  return words;
}

/// Lane l of word w of a Philox block per lane is element 4 l + w of the
/// lanes' run of elements. Seen as i32 lanes, word w of block l is lane 2 l
/// of w's vector: two shuffles pair words 0 and 1 (2 and 3) block by block,
/// two more interleave the pairs, and each result holds the words of
/// 2 * kLanes consecutive elements in order.
std::array<Value, 2>
KernelModuleBuilder::elementOrder(const std::array<Value, 4> &w) {
  auto words = VectorType::get({2 * kLanes}, b.getI32Type());
  auto shuffle = [&](Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(b, x, y, mask).getResult();
  };
  auto narrow = [&](Value v) -> Value {
    return vector::BitCastOp::create(b, words, v);
  };
  SmallVector<int64_t> pairs, low, high;
  for (int64_t l = 0; l < kLanes; ++l) {
    pairs.push_back(2 * l);
    pairs.push_back(2 * kLanes + 2 * l);
  }
  for (int64_t l = 0; l < kLanes; ++l)
    for (int64_t j : {2 * l, 2 * l + 1, 2 * kLanes + 2 * l, 2 * kLanes + 2 * l + 1})
      (l < kLanes / 2 ? low : high).push_back(j);
  Value w01 = shuffle(narrow(w[0]), narrow(w[1]), pairs);
  Value w23 = shuffle(narrow(w[2]), narrow(w[3]), pairs);
  return {shuffle(w01, w23, low), shuffle(w01, w23, high)};
}

Value KernelModuleBuilder::laneWords(Value seed, Value stream, Value sample,
                                     Value element) {
  auto wide = cast<VectorType>(element.getType());
  NumericsBuilder nb(b, wide.getNumElements());
  std::array<Value, 4> words = philoxBlocks(
      seed, stream, sample,
      {arith::ShRUIOp::create(b, element, nb.i64(2))})[0];
  Type narrow = nb.shaped(b.getI32Type());
  Value lane = arith::TruncIOp::create(
      b, narrow, arith::AndIOp::create(b, element, nb.i64(3)));
  Value word = arith::TruncIOp::create(b, narrow, words[3]);
  for (int w = 2; w >= 0; --w) {
    Value isLane =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, nb.i32(w));
    word = arith::SelectOp::create(
        b, isLane, arith::TruncIOp::create(b, narrow, words[w]), word);
  }
  return word;
}

// NumericsBuilder::luqCode's result, with the random comparisons of
// docs/numerics.md section 2 in fewer vector operations. U = word >> 8 is
// the uniform's integer, u = U 2^-24, and r = (E, M) the exponent field
// and the 23 mantissa bits of r.
//  - 1 <= r: f = M 2^-23, so u < f is U < 2 M, which for integers is
//    W < M with W = word >> 9 = floor(U / 2). W and M are below 2^23, so
//    the bits of r + 2^23 - 1 - W carry into the exponent field exactly
//    when W < M: its top bits are E + [u < f], and e = n + 1 + [u < f] is
//    that minus 126. min(e, 7) saturates n >= 6, r = +Inf included.
//  - r < 1: e = 1 when u < r (an f32 compare, both exact), so r == 0
//    gives 0.
// u < 1 <= r in the first case: e != 0 exactly where u < r, and only there
// is the sign bit set. (r is NaN only for a NaN x, whose tensor gets zero
// codes whatever the lanes hold.)
KernelModuleBuilder::LaneCodes
KernelModuleBuilder::luqLanes(Value x, Value inv, Value word) {
  auto type = cast<VectorType>(x.getType());
  NumericsBuilder nb(b, type.getNumElements());
  Type i32Type = nb.shaped(b.getI32Type());
  Value xBits = arith::BitcastOp::create(b, i32Type, x);
  Value r = nb.luqScaled(x, inv);
  Value rBits = arith::BitcastOp::create(b, i32Type, r);
  Value carried = arith::SubIOp::create(
      b, addi(rBits, nb.i32(int64_t(kF32MantissaMask) -
                            ((kF32ExponentBias - 1) << 23))),
      arith::ShRUIOp::create(b, word, nb.i32(9)));
  Value eNormal = arith::MinSIOp::create(
      b, arith::ShRSIOp::create(b, carried, nb.i32(23)), nb.i32(7));
  Value atLeastOne = arith::CmpIOp::create(b, arith::CmpIPredicate::uge,
                                           rBits, nb.i32(kF32OneBits));
  Value keep = arith::CmpFOp::create(b, arith::CmpFPredicate::OLT,
                                     nb.wordToUniform(word), r);
  // Where u < r, e is 1 below 1 and eNormal above; elsewhere the code is 0.
  Value e = arith::SelectOp::create(b, atLeastOne, eNormal, nb.i32(1));
  Value sign = arith::AndIOp::create(
      b, arith::ShRUIOp::create(b, xBits, nb.i32(28)), nb.i32(8));
  Value code = arith::SelectOp::create(
      b, keep, arith::OrIOp::create(b, e, sign), nb.i32(0));
  Value over = arith::ExtUIOp::create(b, i32Type, nb.luqOverflows(x, inv));
  return {arith::TruncIOp::create(b, nb.shaped(b.getI8Type()), code), over,
          nb.absBits(x)};
}

// lq_quant_<side>(in, rows, cols, stride, r0, r1, codes, inv, seed, stream,
// sample, stats: [overflow count, max |x| bits]). `codes` is row-major
// [rows, cols], one 4-bit code per byte. Vectors of 2 * kLanes elements:
// Philox's block transpose yields them (elementOrder), and AVX-512 takes
// them in one register.
void KernelModuleBuilder::buildQuantize(StringRef side,
                                        const OperandSpec &op) {
  constexpr int64_t lanes = kWideLanes;
  Type i32 = b.getI32Type(), i64 = b.getI64Type(), i8 = b.getI8Type();
  QuantArgs args;
  beginFunction(("lq_quant_" + side).str(), cpu::kQuantKinds,
                {storageType(op), i8, i32}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride,
        codes = args.codes;
  bool luq = op.format == Format::Log4;

  NumericsBuilder nb(b, lanes);
  auto splat = [&](Value scalar, int64_t n) -> Value {
    return vector::BroadcastOp::create(
        b, VectorType::get({n}, scalar.getType()), scalar);
  };
  Value inv = splat(args.inv, lanes);
  // Philox takes kLanes blocks or `lanes` elements at a time.
  Value seed = splat(args.seed, lanes), stream = splat(args.stream, lanes),
        sample = splat(args.sample, lanes);
  Value blockSeed = splat(args.seed, kLanes),
        blockStream = splat(args.stream, kLanes),
        blockSample = splat(args.sample, kLanes);
  SmallVector<int64_t> laneIds;
  for (int64_t lane = 0; lane < lanes; ++lane)
    laneIds.push_back(lane);
  Value laneOffsets = arith::ConstantOp::create(
      b, DenseElementsAttr::get(VectorType::get({lanes}, i64),
                                ArrayRef<int64_t>(laneIds)));

  // Quantizes the elements at column c given their random words (LUQ) and
  // accumulates the overflow count and the max magnitude bits.
  auto quantizeLanes = [&](Value base, Value element, Value c, Value mask,
                           Value word, ValueRange a) -> SmallVector<Value> {
    Value x = loadLanes(in, addi(base, c), mask, lanes);
    LaneCodes q;
    if (luq) {
      q = luqLanes(x, inv, word);
    } else {
      q = {nb.sawbCode(x, inv, op.format == Format::UInt4), nb.i32(0),
           nb.absBits(x)};
    }
    if (mask)
      vector::MaskedStoreOp::create(b, codes, ValueRange{element}, mask,
                                    q.codes);
    else
      vector::StoreOp::create(b, q.codes, codes, ValueRange{element});
    return {addi(a[0], q.overflow), arith::MaxUIOp::create(b, a[1], q.absBits)};
  };
  // One lane per element: each lane runs Philox for its own element.
  auto laneStep = [&](Value base, Value rowStart) {
    return [&, base, rowStart](Value c, Value mask, ValueRange a) {
      // The Philox index is the element's row-major index in [rows, cols],
      // whatever the storage stride.
      Value element = addi(rowStart, c);
      Value word;
      if (luq)
        word = laneWords(seed, stream, sample,
                         addi(splat(indexToI64(element), lanes), laneOffsets));
      return quantizeLanes(base, element, c, mask, word, a);
    };
  };

  Value zero = nb.i32(0);
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1), ValueRange{zero, zero},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        Value rowStart = muli(r, cols);
        if (!luq) {
          scf::YieldOp::create(b, columnLoop(index(0), cols, acc,
                                             laneStep(base, rowStart), lanes));
          return;
        }
        // A Philox round is a chain of multiplies whose latency, not its
        // throughput, bounds one group of kLanes blocks: a step runs
        // kGroups independent groups' rounds side by side.
        constexpr int64_t kGroups = 4, kGroupElements = 4 * kLanes;
        constexpr int64_t kStepElements = kGroupElements * kGroups;
        // Philox gives four words per counter block of four elements. Where
        // a row covers whole blocks, each lane computes one block and the
        // words are transposed into element order: a quarter of the work.
        Value misalign = arith::RemUIOp::create(b, rowStart, index(4));
        Value head = arith::MinUIOp::create(
            b, arith::RemUIOp::create(
                   b, arith::SubIOp::create(b, index(4), misalign), index(4)),
            cols);
        Value mainEnd =
            addi(head, roundDown(arith::SubIOp::create(b, cols, head),
                                 kStepElements));
        auto headStep = scf::IfOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ne, head, index(0)),
            [&](OpBuilder &, Location) {
              Value mask = vector::CreateMaskOp::create(
                  b, VectorType::get({lanes}, b.getI1Type()), ValueRange{head});
              scf::YieldOp::create(
                  b, laneStep(base, rowStart)(index(0), mask, acc));
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(b, acc); });
        auto blocks = scf::ForOp::create(
            b, head, mainEnd, index(kStepElements), headStep.getResults(),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              Value firstBlock = arith::ShRUIOp::create(
                  b, splat(indexToI64(addi(rowStart, c)), kLanes),
                  arith::ConstantOp::create(
                      b, DenseElementsAttr::get(VectorType::get({kLanes}, i64),
                                                b.getI64IntegerAttr(2))));
              Value blockOffsets = vector::ExtractStridedSliceOp::create(
                  b, laneOffsets, ArrayRef<int64_t>{0},
                  ArrayRef<int64_t>{kLanes}, ArrayRef<int64_t>{1});
              SmallVector<Value> blocks;
              for (int64_t g = 0; g < kGroups; ++g) {
                Value block = addi(firstBlock, blockOffsets);
                if (g > 0)
                  block = addi(block, NumericsBuilder(b, kLanes).i64(g * kLanes));
                blocks.push_back(block);
              }
              SmallVector<std::array<Value, 4>> words =
                  philoxBlocks(blockSeed, blockStream, blockSample, blocks);
              SmallVector<Value> next(a);
              for (int64_t g = 0; g < kGroups; ++g) {
                std::array<Value, 2> ordered = elementOrder(words[g]);
                for (int64_t h = 0; h < 2; ++h) {
                  Value ch = addi(c, index(g * kGroupElements + h * lanes));
                  next = quantizeLanes(base, addi(rowStart, ch), ch, Value(),
                                       ordered[h], next);
                }
              }
              scf::YieldOp::create(b, next);
            });
        scf::YieldOp::create(b,
                             columnLoop(mainEnd, cols, blocks.getResults(),
                                        laneStep(base, rowStart), lanes));
      });
  memref::StoreOp::create(b, reduce(vector::CombiningKind::ADD,
                                    rows.getResult(0)),
                          args.stats, ValueRange{index(0)});
  memref::StoreOp::create(b, reduce(vector::CombiningKind::MAXUI,
                                    rows.getResult(1)),
                          args.stats, ValueRange{index(1)});
  endFunction();
}

// lq_pack4(codes, rows, cols, r0, r1, bytes, stride): the storage form, two
// codes per byte (low nibble first), each row padded to whole bytes with
// zero; rows of `bytes` are `stride` bytes apart. Whole runs of
// kPack4Bytes bytes go by vectors, the rest byte by byte.
void KernelModuleBuilder::buildPack4() {
  Type i8 = b.getI8Type(), i16 = b.getI16Type();
  Pack4Args args;
  beginFunction("lq_pack4", cpu::kPack4Kinds, {i8, i8}, args);
  Value codes = args.codes, cols = args.cols, bytes = args.bytes,
        stride = args.byteStride;
  Value rowBytes = ceilDiv(cols, 2);
  Value vectorBytes = roundDown(arith::DivUIOp::create(b, cols, index(2)),
                                kPack4Bytes);
  Value lastCol = arith::SubIOp::create(b, cols, index(1));
  NumericsBuilder nb(b), vnb(b, kPack4Bytes);
  auto pairs = VectorType::get({2 * kPack4Bytes}, i8);
  auto words = VectorType::get({kPack4Bytes}, i16);
  forEach(args.rowBegin, args.rowEnd, [&](Value r) {
    Value codeRow = muli(r, cols), byteRow = muli(r, stride);
    // A code pair read as an i16 is lo + 256 hi with both below 16: its
    // bits 4..7 are free for hi, so (w | w >> 4) truncated to a byte is
    // lo | hi << 4.
    scf::ForOp::create(
        b, index(0), vectorBytes, index(kPack4Bytes), ValueRange{},
        [&](OpBuilder &, Location, Value j, ValueRange) {
          Value w = vector::BitCastOp::create(
              b, words,
              vector::LoadOp::create(b, pairs, codes,
                                     ValueRange{addi(codeRow, addi(j, j))}));
          Value byte = arith::TruncIOp::create(
              b, VectorType::get({kPack4Bytes}, i8),
              arith::OrIOp::create(
                  b, w, arith::ShRUIOp::create(b, w, vnb.constant(
                                                         i16, b.getI16IntegerAttr(4)))));
          vector::StoreOp::create(b, byte, bytes, ValueRange{addi(byteRow, j)});
          scf::YieldOp::create(b);
        });
    forEach(vectorBytes, rowBytes, [&](Value j) {
      Value even = addi(codeRow, muli(j, index(2)));
      Value oddCol = addi(muli(j, index(2)), index(1));
      Value hasOdd =
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, oddCol, cols);
      Value odd = addi(codeRow, arith::MinUIOp::create(b, oddCol, lastCol));
      Value lo = memref::LoadOp::create(b, codes, ValueRange{even});
      Value hi = arith::SelectOp::create(
          b, hasOdd, memref::LoadOp::create(b, codes, ValueRange{odd}),
          nb.i8(0));
      Value byte = arith::OrIOp::create(
          b, lo, arith::ShLIOp::create(b, hi, nb.i8(4)));
      memref::StoreOp::create(b, byte, bytes, ValueRange{addi(byteRow, j)});
    });
  });
  endFunction();
}


} // namespace lq::cpu_stages
