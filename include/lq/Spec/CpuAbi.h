//===- CpuAbi.h - the contract between generated CPU stages and callers -*- C++ -*-===//
//
// The x86-64 kernels of a GEMM are stage functions with C interfaces
// (`_mlir_ciface_lq_<stage>`, see lq/Conversion/Cpu/CpuKernels.h). Each
// stage's parameters are written here once, as X(name, kind): the
// generator builds every stage's function type from these lists (the
// element type of each memref is the generator's, by spec) and reads its
// arguments by these names; the host runtime calls the stages through
// function pointer types made from the same lists (StageFn). Plain C++.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_SPEC_CPUABI_H
#define LQ_SPEC_CPUABI_H

#include <cstdint>

namespace lq::cpu {

/// How a stage parameter is passed: a 1-D memref (by pointer to its
/// descriptor), an index, a 64- or 32-bit integer, an f32.
enum class ParamKind { Memref, Index, I64, I32, F32 };

/// lq_maxabs_<side>(in, rows, cols, rowStride, rowBegin, rowEnd, out):
/// max |x| bits of rows [rowBegin, rowEnd). lq_moments_<side> takes the
/// same, with the f64 moments out.
#define LQ_CPU_STATS_PARAMS(X)                                                 \
  X(in, Memref) X(rows, Index) X(cols, Index) X(rowStride, Index)              \
  X(rowBegin, Index) X(rowEnd, Index) X(out, Memref)

#define LQ_CPU_QUANT_PARAMS(X)                                                 \
  X(in, Memref) X(rows, Index) X(cols, Index) X(rowStride, Index)              \
  X(rowBegin, Index) X(rowEnd, Index) X(codes, Memref) X(inv, F32)             \
  X(seed, I64) X(stream, I32) X(sample, I32) X(stats, Memref)

#define LQ_CPU_PACK4_PARAMS(X)                                                 \
  X(codes, Memref) X(rows, Index) X(cols, Index) X(rowBegin, Index)            \
  X(rowEnd, Index) X(bytes, Memref) X(byteStride, Index)

#define LQ_CPU_PACK_A_PARAMS(X)                                                \
  X(src, Memref) X(m, Index) X(k, Index) X(samples, Index)                     \
  X(rowStride, Index) X(sampleStride, Index) X(blockBegin, Index)              \
  X(blockEnd, Index) X(panel, Memref)

#define LQ_CPU_PACK_B_PARAMS(X)                                                \
  X(src, Memref) X(k, Index) X(n, Index) X(rowStride, Index)                   \
  X(blockBegin, Index) X(blockEnd, Index) X(panel, Memref)

#define LQ_CPU_GEMM_PARAMS(X)                                                  \
  X(panelA, Memref) X(panelB, Memref) X(m, Index) X(n, Index)                  \
  X(kQuads, Index) X(samples, Index) X(blockBegin, Index) X(blockEnd, Index)   \
  X(scale, F32) X(bias, Memref) X(out, Memref) X(ldc, Index) X(group, Index)

/// A 1-D memref descriptor as the C interfaces take it: kernel memrefs
/// have an identity layout (offset 0, stride 1).
struct MemRef1D {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t size;
  int64_t stride;
};

/// The C type of a parameter of `Kind`.
template <ParamKind Kind> struct ParamType;
template <> struct ParamType<ParamKind::Memref> { using type = MemRef1D *; };
template <> struct ParamType<ParamKind::Index> { using type = int64_t; };
template <> struct ParamType<ParamKind::I64> { using type = uint64_t; };
template <> struct ParamType<ParamKind::I32> { using type = uint32_t; };
template <> struct ParamType<ParamKind::F32> { using type = float; };

template <typename First, typename... Params> struct FnOf {
  using type = void (*)(Params...);
};
#define LQ_CPU_PARAM_TYPE(name, kind)                                          \
  , typename ParamType<ParamKind::kind>::type

/// The function pointer types of the stages' C interfaces.
using StatsFn = FnOf<void LQ_CPU_STATS_PARAMS(LQ_CPU_PARAM_TYPE)>::type;
using QuantFn = FnOf<void LQ_CPU_QUANT_PARAMS(LQ_CPU_PARAM_TYPE)>::type;
using Pack4Fn = FnOf<void LQ_CPU_PACK4_PARAMS(LQ_CPU_PARAM_TYPE)>::type;
using PackAFn = FnOf<void LQ_CPU_PACK_A_PARAMS(LQ_CPU_PARAM_TYPE)>::type;
using PackBFn = FnOf<void LQ_CPU_PACK_B_PARAMS(LQ_CPU_PARAM_TYPE)>::type;
using GemmFn = FnOf<void LQ_CPU_GEMM_PARAMS(LQ_CPU_PARAM_TYPE)>::type;

/// The stages, each with its parameter kinds in order.
enum class Stage { Stats, Quant, Pack4, PackA, PackB, Gemm };

#define LQ_CPU_PARAM_KIND(name, kind) ParamKind::kind,
constexpr ParamKind kStatsKinds[] = {LQ_CPU_STATS_PARAMS(LQ_CPU_PARAM_KIND)};
constexpr ParamKind kQuantKinds[] = {LQ_CPU_QUANT_PARAMS(LQ_CPU_PARAM_KIND)};
constexpr ParamKind kPack4Kinds[] = {LQ_CPU_PACK4_PARAMS(LQ_CPU_PARAM_KIND)};
constexpr ParamKind kPackAKinds[] = {LQ_CPU_PACK_A_PARAMS(LQ_CPU_PARAM_KIND)};
constexpr ParamKind kPackBKinds[] = {LQ_CPU_PACK_B_PARAMS(LQ_CPU_PARAM_KIND)};
constexpr ParamKind kGemmKinds[] = {LQ_CPU_GEMM_PARAMS(LQ_CPU_PARAM_KIND)};
#undef LQ_CPU_PARAM_KIND

} // namespace lq::cpu

#endif // LQ_SPEC_CPUABI_H
