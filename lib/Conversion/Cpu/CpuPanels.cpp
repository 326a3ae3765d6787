//===- CpuPanels.cpp - packing into micro-kernel panels ---------------------===//

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
  // registers.
  Value sums;
  if (correction)
    sums = memref::AllocaOp::create(b, MemRefType::get({kCpuTileRows}, i32));

  // The value at (m, k) of a sample. Checked reads clamp the indices into
  // the operand and zero the padding; interior blocks skip that work.
  auto value = [&](Value sampleSrc, Value m, Value k, bool checked) {
    Value mc = checked ? arith::MinUIOp::create(b, m, lastM).getResult() : m;
    Value kc = checked ? arith::MinUIOp::create(b, k, lastK).getResult() : k;
    Value v = op.transposed ? loadCodeValue(op, sampleSrc, kc, mc, rowStride)
                            : loadCodeValue(op, sampleSrc, mc, kc, rowStride);
    if (!checked)
      return v;
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, m, M),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K));
    return arith::SelectOp::create(b, inside, v, nb.i32(0)).getResult();
  };
  auto packQuads = [&](Value mb, Value s, Value sampleSrc, Value qBegin,
                       Value qEnd, bool checked) {
    forEach(qBegin, qEnd, [&](Value q) {
      Value k0 = muli(q, index(kCpuKQuad));
      Value base = addi(muli(mb, blockWords),
                        muli(addi(muli(s, Kq), addi(q, index(1))),
                             index(kCpuTileRows)));
      for (int64_t r = 0; r < kCpuTileRows; ++r) {
        Value m = addi(muli(mb, index(kCpuTileRows)), index(r));
        SmallVector<Value> values;
        for (int64_t j = 0; j < kCpuKQuad; ++j)
          values.push_back(value(sampleSrc, m, addi(k0, index(j)), checked));
        memref::StoreOp::create(b, quadWord(values, offset), panel,
                                ValueRange{addi(base, index(r))});
        if (!correction)
          continue;
        Value sum = memref::LoadOp::create(b, sums, ValueRange{index(r)});
        for (Value v : values)
          sum = addi(sum, v);
        memref::StoreOp::create(b, sum, sums, ValueRange{index(r)});
      }
    });
  };
  Value wholeQuads = arith::DivUIOp::create(b, K, index(kCpuKQuad));
  forEach(args.blockBegin, args.blockEnd, [&](Value mb) {
    if (correction)
      for (int64_t r = 0; r < kCpuTileRows; ++r)
        memref::StoreOp::create(b, nb.i32(0), sums, ValueRange{index(r)});
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
            packQuads(mb, s, sampleSrc, index(0), wholeQuads, false);
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
        header = muli(memref::LoadOp::create(b, sums, ValueRange{index(r)}),
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

  auto value = [&](Value k, Value n, bool checked) {
    Value nc = checked ? arith::MinUIOp::create(b, n, lastN).getResult() : n;
    Value kc = checked ? arith::MinUIOp::create(b, k, lastK).getResult() : k;
    Value v = op.transposed ? loadCodeValue(op, src, nc, kc, rowStride)
                            : loadCodeValue(op, src, kc, nc, rowStride);
    if (!checked)
      return v;
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, n, N));
    return arith::SelectOp::create(b, inside, v, nb.i32(0)).getResult();
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
