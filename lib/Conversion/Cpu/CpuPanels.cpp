//===- CpuPanels.cpp - packing into micro-kernel panels -------------------===//

#include "KernelModuleBuilder.h"

namespace lq::cpu_stages {

//===----------------------------------------------------------------------===//
// Packing into micro-kernel panels
//===----------------------------------------------------------------------===//

// Exactness of the 8-bit micro-kernel. Every code value fits a byte: log4
// is 0 or +-2^(e-1) with |v| <= 64, sint4 is -8..7 (packed input may hold
// -8), uint4 is 0..15. vpdpbusd and vpmaddubsw multiply unsigned bytes by
// signed ones, so one operand u, never the log4 one (a spec has at most
// one), enters as u + o, with o = 8 for sint4 and o = 0 for uint4, and
//   sum_k a_k b_k = sum_k (u_k + o) s_k - o * sum_k s_k,
// where s is the other operand. Its sums (per row of A over K and the SMP
// samples, or per column of B over K) are taken exactly in i32 when s is
// packed, negated and scaled by o into the panel's header word, and start
// the accumulators. Bounds, with 0 <= u + o <= 15 and |s| <= 64, so
// |product| <= 960:
//  - vpmaddubsw adds two products into a saturating i16: at most 1920 <
//    2^15, never saturated. At most kAvx2QuadBlock = 16 of its results are
//    added in i16 (vpaddw, wrapping): at most 30720 < 2^15, never wrapped.
//    vpmaddwd by ones then widens adjacent i16 lanes into i32 exactly.
//  - vpdpbusd adds four products straight into i32 (unsaturated).
//  - No i32 sum overflows. Once the K steps before k are added, a lane
//    holds sum_{j<k} u_j s_j - o * sum_{j>=k} s_j (the correction starts
//    it), at most max(|u|, o) * sum |s| in magnitude: 8 * 64 * K * samples
//    with o = 8 (u in -8..7), 15 * 64 * K * samples with o = 0. The
//    contract bounds K * samples * 960 below 2^31.

/// Quads of a row that a vector step of lq_pack_a takes: 32 bytes.
constexpr int64_t kPackAQuads = 8;

ByteOperands byteOperands(const GemmSpec &spec) {
  auto offsetOf = [](const OperandSpec &op) {
    return op.format == Format::UInt4 ? 0 : 8;
  };
  // The log4 operand needs the signed side; else an operand that is
  // unsigned already needs no correction; else B takes the offset.
  bool lhsUnsigned = spec.rhs.format == Format::Log4 ||
                     (spec.lhs.format == Format::UInt4 &&
                      spec.rhs.format != Format::UInt4 &&
                      spec.lhs.format != Format::Log4);
  return {lhsUnsigned, offsetOf(lhsUnsigned ? spec.lhs : spec.rhs)};
}

Value KernelModuleBuilder::loadCodeValue(const OperandSpec &op, Value src,
                                         Value row, Value col,
                                         Value rowStride) {
  NumericsBuilder nb(b);
  Value code;
  if (op.dtype == DType::Packed4) {
    Value byte = memref::LoadOp::create(
        b, src,
        ValueRange{addi(muli(row, rowStride),
                        arith::DivUIOp::create(b, col, index(2)))});
    Value odd = arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                      arith::RemUIOp::create(b, col, index(2)),
                                      index(0));
    code = arith::SelectOp::create(
        b, odd, arith::ShRUIOp::create(b, byte, nb.i8(4)),
        arith::AndIOp::create(b, byte, nb.i8(0xF)));
  } else {
    code = memref::LoadOp::create(b, src,
                                  ValueRange{addi(muli(row, rowStride), col)});
  }
  return nb.decode(code, op.format);
}

Value KernelModuleBuilder::operandValue(const OperandSpec &op, Value src,
                                        Value r, Value c,
                                        const OperandBounds &bounds,
                                        Value rowStride, bool checked) {
  Value rc =
      checked ? arith::MinUIOp::create(b, r, bounds.lastRow).getResult() : r;
  Value cc =
      checked ? arith::MinUIOp::create(b, c, bounds.lastCol).getResult() : c;
  Value v = op.transposed ? loadCodeValue(op, src, cc, rc, rowStride)
                          : loadCodeValue(op, src, rc, cc, rowStride);
  if (!checked)
    return v;
  Value inside = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, r, bounds.rows),
      arith::CmpIOp::create(b, arith::CmpIPredicate::ult, c, bounds.cols));
  return arith::SelectOp::create(b, inside, v, NumericsBuilder(b).i32(0))
      .getResult();
}

namespace {

/// The values of byte codes (a vector of i8) as NumericsBuilder::decode
/// gives them, but in i8 lanes: every value fits a byte (see above).
Value decodeBytes(ImplicitLocOpBuilder &b, Value codes, Format format) {
  NumericsBuilder nb(b, cast<VectorType>(codes.getType()).getNumElements());
  switch (format) {
  case Format::UInt4:
    return codes;
  case Format::SInt4:
    return arith::ShRSIOp::create(
        b, arith::ShLIOp::create(b, codes, nb.i8(4)), nb.i8(4));
  case Format::Log4: {
    Value e = arith::AndIOp::create(b, codes, nb.i8(7));
    // (1 << e) >> 1, unsigned: 1 << 7 is the sign bit of a byte.
    Value magnitude = arith::ShRUIOp::create(
        b, arith::ShLIOp::create(b, nb.i8(1), e), nb.i8(1));
    Value negative = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, codes, nb.i8(8)), nb.i8(0));
    return arith::SelectOp::create(
        b, negative, arith::SubIOp::create(b, nb.i8(0), magnitude),
        magnitude);
  }
  }
  llvm_unreachable("unknown lq format");
}

/// The elements of `x`, then those of `y`, as one vector.
Value concat(ImplicitLocOpBuilder &b, Value x, Value y) {
  int64_t n = cast<VectorType>(x.getType()).getNumElements() +
              cast<VectorType>(y.getType()).getNumElements();
  return vector::ShuffleOp::create(
      b, x, y, llvm::to_vector(llvm::seq<int64_t>(0, n)));
}

/// The words of `rows` (vectors of `quads` words each, row r's quad j at
/// r * quads + j once concatenated) in panel order, quad by quad: at most
/// 16 words per vector.
SmallVector<Value> interleaveRows(ImplicitLocOpBuilder &b,
                                  ArrayRef<Value> rows, int64_t quads) {
  static_assert(kCpuTileRows == 6, "the row pairs below assume six rows");
  Value head =
      concat(b, concat(b, rows[0], rows[1]), concat(b, rows[2], rows[3]));
  Value tail = concat(b, rows[4], rows[5]);
  int64_t total = int64_t(rows.size()) * quads;
  SmallVector<Value> chunks;
  for (int64_t begin = 0; begin < total; begin += 16) {
    SmallVector<int64_t> mask;
    for (int64_t i = begin; i < std::min(total, begin + 16); ++i)
      mask.push_back((i % int64_t(rows.size())) * quads +
                     i / int64_t(rows.size()));
    chunks.push_back(vector::ShuffleOp::create(b, head, tail, mask));
  }
  return chunks;
}

} // namespace

Value KernelModuleBuilder::quadWord(ArrayRef<Value> values, int64_t offset) {
  NumericsBuilder nb(b);
  Value word;
  for (size_t j = 0; j < values.size(); ++j) {
    Value byte = arith::AndIOp::create(
        b, arith::AddIOp::create(b, values[j], nb.i32(offset)), nb.i32(0xFF));
    if (j != 0)
      byte = arith::ShLIOp::create(b, byte, nb.i32(8 * int64_t(j)));
    word = word ? arith::OrIOp::create(b, word, byte).getResult() : byte;
  }
  return word;
}

// lq_pack_a(src, M, K, S, rowStride, sampleStride, mb0, mb1, panel): for
// each block of kCpuTileRows rows, a header word per row, then for each
// SMP sample and K quad q a word per row holding the bytes of
// a[m, 4q .. 4q+3] (offset when A is the unsigned operand): what the
// micro-kernel broadcasts. When B takes the offset, a row's header is
// -offset * (its sum over K and the samples); else 0. `src` holds codes as
// stored (one per byte, or packed), [M, K] or transposed [K, M]; rows past
// M and the K pad are 0 before the offset.
void KernelModuleBuilder::buildPackA() {
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  PackAArgs args;
  beginFunction("lq_pack_a", cpu::kPackAKinds, {i8, i32}, args);
  Value src = args.src, M = args.m, K = args.k, S = args.samples,
        rowStride = args.rowStride, sampleStride = args.sampleStride,
        panel = args.panel;
  Value Kq = ceilDiv(K, kCpuKQuad);
  Value blockWords =
      muli(addi(muli(S, Kq), index(1)), index(kCpuTileRows));
  Value lastM = arith::SubIOp::create(b, M, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const OperandSpec &op = spec.lhs;
  ByteOperands bytes = byteOperands(spec);
  int64_t offset = bytes.lhsUnsigned ? bytes.offset : 0;
  int64_t correction = bytes.lhsUnsigned ? 0 : bytes.offset;
  NumericsBuilder nb(b);
  // Row sums on the stack at constant indices: LLVM keeps them in
  // registers. The checked quads, which loop over the rows, add theirs
  // apart (a dynamic index would keep all of them in memory).
  Value sums, edgeSums;
  if (correction) {
    sums = memref::AllocaOp::create(b, MemRefType::get({kCpuTileRows}, i32));
    edgeSums =
        memref::AllocaOp::create(b, MemRefType::get({kCpuTileRows}, i32));
  }

  // The value at (m, k) of a sample.
  OperandBounds bounds{M, K, lastM, lastK};
  auto value = [&](Value sampleSrc, Value m, Value k, bool checked) {
    return operandValue(op, sampleSrc, m, k, bounds, rowStride, checked);
  };
  // Where the words of quad q of sample s of row block mb start.
  auto quadBase = [&](Value mb, Value s, Value q) {
    return addi(muli(mb, blockWords),
                muli(addi(muli(s, Kq), addi(q, index(1))),
                     index(kCpuTileRows)));
  };
  // The word of row r (an index) of a quad, and its sum into `rowSums`.
  auto packRow = [&](Value sampleSrc, Value mb, Value k0, Value base,
                     Value r, Value rowSums, bool checked) {
    Value m = addi(muli(mb, index(kCpuTileRows)), r);
    SmallVector<Value> values;
    for (int64_t j = 0; j < kCpuKQuad; ++j)
      values.push_back(value(sampleSrc, m, addi(k0, index(j)), checked));
    memref::StoreOp::create(b, quadWord(values, offset), panel,
                            ValueRange{addi(base, r)});
    if (!correction)
      return;
    Value sum = memref::LoadOp::create(b, rowSums, ValueRange{r});
    for (Value v : values)
      sum = addi(sum, v);
    memref::StoreOp::create(b, sum, rowSums, ValueRange{r});
  };
  // Interior quads unroll the rows; the checked ones, at the edges of the
  // operand, loop over them: unrolled, they were half of this stage's
  // compile time for a few percent of its words.
  auto packQuads = [&](Value mb, Value s, Value sampleSrc, Value qBegin,
                       Value qEnd, bool checked) {
    forEach(qBegin, qEnd, [&](Value q) {
      Value k0 = muli(q, index(kCpuKQuad));
      Value base = quadBase(mb, s, q);
      if (checked) {
        forEach(index(0), index(kCpuTileRows), [&](Value r) {
          packRow(sampleSrc, mb, k0, base, r, edgeSums, true);
        });
        return;
      }
      for (int64_t r = 0; r < kCpuTileRows; ++r)
        packRow(sampleSrc, mb, k0, base, index(r), sums, false);
    });
  };
  // A stored [M, K] one code per byte: a row's run of `quads` quads is one
  // vector of bytes, decoded in i8 lanes and offset there, and the rows'
  // words are interleaved by shuffles. Quads [qBegin, qBegin + steps *
  // quads) of interior rows; generated so, the loops need none of LLVM's
  // vectorizers, whose time on this stage dominated its compile.
  bool byteRows = !op.transposed && op.dtype != DType::Packed4;
  auto packQuadVectors = [&](Value mb, Value s, Value sampleSrc,
                             Value qBegin, Value steps, int64_t quads) {
    auto bytes = VectorType::get({kCpuKQuad * quads}, i8);
    auto words = VectorType::get({quads}, i32);
    NumericsBuilder vnb(b, kCpuKQuad * quads);
    forEach(index(0), steps, [&](Value step) {
      Value q = addi(qBegin, muli(step, index(quads)));
      Value k0 = muli(q, index(kCpuKQuad));
      SmallVector<Value> rows;
      for (int64_t r = 0; r < kCpuTileRows; ++r) {
        Value m = addi(muli(mb, index(kCpuTileRows)), index(r));
        Value codes = vector::LoadOp::create(
            b, bytes, sampleSrc, ValueRange{addi(muli(m, rowStride), k0)});
        Value values = decodeBytes(b, codes, op.format);
        Value offsetValues =
            offset ? arith::AddIOp::create(b, values, vnb.i8(offset))
                         .getResult()
                   : values;
        rows.push_back(vector::BitCastOp::create(b, words, offsetValues));
        if (!correction)
          continue;
        Value sum = reduce(vector::CombiningKind::ADD,
                           arith::ExtSIOp::create(b, vnb.shaped(i32), values));
        memref::StoreOp::create(
            b,
            addi(memref::LoadOp::create(b, sums, ValueRange{index(r)}), sum),
            sums, ValueRange{index(r)});
      }
      Value at = quadBase(mb, s, q);
      for (Value chunk : interleaveRows(b, rows, quads)) {
        vector::StoreOp::create(b, chunk, panel, ValueRange{at});
        at = addi(at, index(cast<VectorType>(chunk.getType()).getNumElements()));
      }
    });
  };
  // Interior quads: vectors of kPackAQuads quads, then of one.
  auto packInterior = [&](Value mb, Value s, Value sampleSrc,
                          Value wholeQuads) {
    if (!byteRows) {
      packQuads(mb, s, sampleSrc, index(0), wholeQuads, false);
      return;
    }
    Value steps = arith::DivUIOp::create(b, wholeQuads, index(kPackAQuads));
    packQuadVectors(mb, s, sampleSrc, index(0), steps, kPackAQuads);
    Value vectorEnd = muli(steps, index(kPackAQuads));
    packQuadVectors(mb, s, sampleSrc, vectorEnd,
                    arith::SubIOp::create(b, wholeQuads, vectorEnd), 1);
  };
  Value wholeQuads = arith::DivUIOp::create(b, K, index(kCpuKQuad));
  forEach(args.blockBegin, args.blockEnd, [&](Value mb) {
    if (correction)
      for (int64_t r = 0; r < kCpuTileRows; ++r)
        for (Value rowSums : {sums, edgeSums})
          memref::StoreOp::create(b, nb.i32(0), rowSums, ValueRange{index(r)});
    Value rowsInside = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ule,
        muli(addi(mb, index(1)), index(kCpuTileRows)), M);
    forEach(index(0), S, [&](Value s) {
      Value sampleSrc = memref::SubViewOp::create(
          b, src,
          ArrayRef<OpFoldResult>{OpFoldResult(muli(s, sampleStride))},
          ArrayRef<OpFoldResult>{OpFoldResult(sampleStride)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
      scf::IfOp::create(
          b, rowsInside,
          [&](OpBuilder &, Location) {
            packInterior(mb, s, sampleSrc, wholeQuads);
            packQuads(mb, s, sampleSrc, wholeQuads, Kq, true);
            scf::YieldOp::create(b);
          },
          [&](OpBuilder &, Location) {
            packQuads(mb, s, sampleSrc, index(0), Kq, true);
            scf::YieldOp::create(b);
          });
    });
    for (int64_t r = 0; r < kCpuTileRows; ++r) {
      Value header = nb.i32(0);
      if (correction)
        header = muli(
            addi(memref::LoadOp::create(b, sums, ValueRange{index(r)}),
                 memref::LoadOp::create(b, edgeSums, ValueRange{index(r)})),
            nb.i32(-correction));
      memref::StoreOp::create(b, header, panel,
                              ValueRange{addi(muli(mb, blockWords), index(r))});
    }
  });
  endFunction();
}

// lq_pack_b(src, K, N, rowStride, nb0, nb1, panel): for each block of
// kCpuTileCols columns, a header word per column, then for each K quad q a
// word per column holding the bytes of b[4q .. 4q+3, n] (offset when B is
// the unsigned operand): what the micro-kernel loads as vectors. When A
// takes the offset, a column's header is -offset * (its sum over K); else
// 0. Zero outside [K, N] before the offset. `src` is [K, N] or transposed
// [N, K].
void KernelModuleBuilder::buildPackB() {
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  PackBArgs args;
  beginFunction("lq_pack_b", cpu::kPackBKinds, {i8, i32}, args);
  Value src = args.src, K = args.k, N = args.n, rowStride = args.rowStride,
        panel = args.panel;
  Value Kq = ceilDiv(K, kCpuKQuad);
  Value blockWords = muli(addi(Kq, index(1)), index(kCpuTileCols));
  Value lastN = arith::SubIOp::create(b, N, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const OperandSpec &op = spec.rhs;
  ByteOperands bytes = byteOperands(spec);
  int64_t offset = bytes.lhsUnsigned ? 0 : bytes.offset;
  int64_t correction = bytes.lhsUnsigned ? bytes.offset : 0;
  NumericsBuilder nb(b);

  OperandBounds bounds{K, N, lastK, lastN};
  auto value = [&](Value k, Value n, bool checked) {
    return operandValue(op, src, k, n, bounds, rowStride, checked);
  };
  auto packQuads = [&](Value nblock, Value qBegin, Value qEnd, bool checked) {
    Value header = muli(nblock, blockWords);
    forEach(qBegin, qEnd, [&](Value q) {
      Value k0 = muli(q, index(kCpuKQuad));
      Value base = addi(header, muli(addi(q, index(1)), index(kCpuTileCols)));
      // A loop, not unrolled: unrolled, LLVM spends seconds on the
      // transposed gathers for a stage that is a few percent of a launch.
      forEach(index(0), index(kCpuTileCols), [&](Value c) {
        Value n = addi(muli(nblock, index(kCpuTileCols)), c);
        SmallVector<Value> values;
        for (int64_t j = 0; j < kCpuKQuad; ++j)
          values.push_back(value(addi(k0, index(j)), n, checked));
        memref::StoreOp::create(b, quadWord(values, offset), panel,
                                ValueRange{addi(base, c)});
        if (!correction)
          return;
        // Column sums gather in the header, scaled when the block is done.
        Value sum = memref::LoadOp::create(b, panel, ValueRange{addi(header, c)});
        for (Value v : values)
          sum = addi(sum, v);
        memref::StoreOp::create(b, sum, panel, ValueRange{addi(header, c)});
      });
    });
  };
  // B stored [K, N] one code per byte: a quad of the block's columns is
  // four row vectors, decoded in i8 lanes and offset there, whose bytes
  // one shuffle interleaves into the columns' words. Quads [0, qEnd) of an
  // interior block; the column sums are carried and added to the header.
  bool byteRows = !op.transposed && op.dtype != DType::Packed4;
  auto packQuadVectors = [&](Value nblock, Value qEnd) {
    Value header = muli(nblock, blockWords);
    Value n0 = muli(nblock, index(kCpuTileCols));
    auto rowType = VectorType::get({kCpuTileCols}, i8);
    auto wordsType = VectorType::get({kCpuTileCols}, i32);
    NumericsBuilder vnb(b, kCpuTileCols);
    SmallVector<int64_t> interleave;
    for (int64_t c = 0; c < kCpuTileCols; ++c)
      for (int64_t j = 0; j < kCpuKQuad; ++j)
        interleave.push_back(j * kCpuTileCols + c);
    scf::ForOp quads = forLoop(
        index(0), qEnd, ValueRange{vnb.i32(0)},
        [&](Value q, ValueRange sums) -> SmallVector<Value> {
          Value k0 = muli(q, index(kCpuKQuad));
          SmallVector<Value> rows;
          Value colSums = sums[0];
          for (int64_t j = 0; j < kCpuKQuad; ++j) {
            Value codes = vector::LoadOp::create(
                b, rowType, src,
                ValueRange{addi(muli(addi(k0, index(j)), rowStride), n0)});
            Value values = decodeBytes(b, codes, op.format);
            rows.push_back(
                offset ? arith::AddIOp::create(b, values, vnb.i8(offset))
                             .getResult()
                       : values);
            if (correction)
              colSums = addi(colSums,
                             arith::ExtSIOp::create(b, wordsType, values));
          }
          Value quad = vector::ShuffleOp::create(
              b, concat(b, rows[0], rows[1]), concat(b, rows[2], rows[3]),
              interleave);
          vector::StoreOp::create(
              b, vector::BitCastOp::create(b, wordsType, quad), panel,
              ValueRange{addi(header,
                              muli(addi(q, index(1)), index(kCpuTileCols)))});
          return {colSums};
        });
    if (!correction)
      return;
    Value before =
        vector::LoadOp::create(b, wordsType, panel, ValueRange{header});
    vector::StoreOp::create(b, addi(before, quads.getResult(0)), panel,
                            ValueRange{header});
  };
  Value wholeQuads = arith::DivUIOp::create(b, K, index(kCpuKQuad));
  forEach(args.blockBegin, args.blockEnd, [&](Value nblock) {
    Value header = muli(nblock, blockWords);
    for (int64_t c = 0; c < kCpuTileCols; ++c)
      memref::StoreOp::create(b, nb.i32(0), panel,
                              ValueRange{addi(header, index(c))});
    Value colsInside = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ule,
        muli(addi(nblock, index(1)), index(kCpuTileCols)), N);
    scf::IfOp::create(
        b, colsInside,
        [&](OpBuilder &, Location) {
          if (byteRows)
            packQuadVectors(nblock, wholeQuads);
          else
            packQuads(nblock, index(0), wholeQuads, false);
          packQuads(nblock, wholeQuads, Kq, true);
          scf::YieldOp::create(b);
        },
        [&](OpBuilder &, Location) {
          packQuads(nblock, index(0), Kq, true);
          scf::YieldOp::create(b);
        });
    if (correction)
      for (int64_t c = 0; c < kCpuTileCols; ++c) {
        Value at = addi(header, index(c));
        Value sum = memref::LoadOp::create(b, panel, ValueRange{at});
        memref::StoreOp::create(b, muli(sum, nb.i32(-correction)), panel,
                                ValueRange{at});
      }
  });
  endFunction();
}


} // namespace lq::cpu_stages
