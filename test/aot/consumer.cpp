//===- consumer.cpp - a program that ships lq kernels compiled ahead of time -===//
//
// Links lq_gemm0.host.o from lq-compile and the LLVM-free numerics core
// only: runs the LUQ stages of the backward-data GEMM on a tensor and checks
// every code against the numerics core. At compile time it checks that the
// GPU parameter structs of lq_kernels.h lay every field where the
// launcher's (lq/Spec/GpuAbi.h) does: both come from the ABI's table.
//
//===----------------------------------------------------------------------===//

#include "lq_kernels.h"

#include "lq/Numerics/Luq.h"
#include "lq/Spec/GpuAbi.h"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

#define LQ_CHECK_FIELD(cStruct, abiStruct, name)                               \
  static_assert(offsetof(cStruct, name) == offsetof(abiStruct, name) &&        \
                    sizeof(cStruct::name) == sizeof(abiStruct::name),          \
                #cStruct "." #name " is where the launcher puts it");
#define LQ_STATS_FIELD(name, kind)                                             \
  LQ_CHECK_FIELD(lq_gpu_stats_params, lq::cuda::StatsParams, name)
#define LQ_QUANT_FIELD(name, kind)                                             \
  LQ_CHECK_FIELD(lq_gpu_quant_params, lq::cuda::QuantParams, name)
#define LQ_GEMM_FIELD(name, kind)                                              \
  LQ_CHECK_FIELD(lq_gpu_gemm_params, lq::cuda::GemmParams, name)
#define LQ_GEMM_TMA_FIELD(name, kind)                                          \
  LQ_CHECK_FIELD(lq_gpu_gemm_tma_params, lq::cuda::GemmParams, name)
#define LQ_GEMM_WS_FIELD(name, kind)                                           \
  LQ_CHECK_FIELD(lq_gpu_gemm_ws_params, lq::cuda::GemmWsParams, name)
#define LQ_FILL_FIELD(name, kind)                                              \
  LQ_CHECK_FIELD(lq_gpu_fill_params, lq::cuda::FillParams, name)
LQ_GPU_STATS_PARAMS(LQ_STATS_FIELD)
LQ_GPU_QUANT_PARAMS(LQ_QUANT_FIELD)
LQ_GPU_GEMM_PARAMS(LQ_GEMM_FIELD)
LQ_GPU_GEMM_PARAMS(LQ_GEMM_TMA_FIELD)
LQ_GPU_GEMM_TMA_PARAMS(LQ_GEMM_TMA_FIELD)
LQ_GPU_GEMM_WS_PARAMS(LQ_GEMM_WS_FIELD)
LQ_GPU_FILL_PARAMS(LQ_FILL_FIELD)
static_assert(sizeof(lq_tensor_map) == lq::cuda::kTensorMapBytes &&
                  alignof(lq_tensor_map) == lq::cuda::kTensorMapAlign,
              "tensor maps are CUtensorMaps by value");

lq_memref1d memref(void *data, int64_t size) { return {data, data, 0, size, 1}; }

} // namespace

int main() {
  constexpr int64_t rows = 5, cols = 37;
  constexpr uint64_t seed = 0x5eed;
  constexpr uint32_t stream = 3;
  std::vector<float> dy(rows * cols);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  for (float &v : dy)
    v = normal(rng);

  // max |dy| bits: [finite max, max] from the statistics stage.
  int32_t bits[2] = {0, 0};
  lq_memref1d in = memref(dy.data(), rows * cols), maxOut = memref(bits, 2);
  _mlir_ciface_lq_gemm0_maxabs_lhs(&in, rows, cols, cols, 0, rows, &maxOut);
  float m;
  std::memcpy(&m, &bits[0], sizeof(m));

  std::vector<int8_t> codes(rows * cols, -1), expected(rows * cols);
  int32_t stats[2] = {0, 0};
  lq_memref1d codesOut = memref(codes.data(), rows * cols),
              statsOut = memref(stats, 2);
  _mlir_ciface_lq_gemm0_quant_lhs(&in, rows, cols, cols, 0, rows, &codesOut,
                                  64.0f / m, int64_t(seed), int32_t(stream), 0,
                                  &statsOut);

  lq::numerics::MatrixView view = lq::numerics::MatrixView::f32(dy.data(), rows, cols);
  lq::numerics::MaxAbsResult max = lq::numerics::maxAbs(view);
  lq::numerics::LuqResult ref =
      lq::numerics::luqEncode(view, {seed, stream, 0}, expected.data());
  int mismatches = 0;
  for (int64_t i = 0; i < rows * cols; ++i)
    mismatches += codes[size_t(i)] != expected[size_t(i)];
  std::printf("max |dy| %g (core %g), alpha %g, %d of %lld codes differ\n", m,
              max.maxAbs, ref.alpha, mismatches, (long long)(rows * cols));
  bool ok = m == max.maxAbs && mismatches == 0 && stats[0] == 0;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
