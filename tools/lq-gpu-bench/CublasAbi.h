//===- CublasAbi.h - what lq-gpu-bench calls of cuBLAS(Lt) -*- C++ -*-===//
//
// lq-gpu-bench opens cuBLAS and cuBLASLt with dlopen, so it needs their
// types and constants only, not their headers: GPU machines may carry the
// libraries (a CUDA toolkit, or Python's nvidia-cublas package) without the
// headers. The values are cuBLAS's stable ABI; where the headers are found
// at configure time (LQ_CUBLAS_HEADERS) they are checked against them.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TOOLS_CUBLASABI_H
#define LQ_TOOLS_CUBLASABI_H

#include <cstddef>
#include <cstdint>

#include <cuda.h>

namespace lqblas {

using Status = int; // cublasStatus_t: 0 is CUBLAS_STATUS_SUCCESS
using Handle = struct cublasContext *;
using LtHandle = struct cublasLtContext *;
using LtMatmulDesc = struct LtMatmulDescOpaque *;
using LtMatrixLayout = struct LtMatrixLayoutOpaque *;
using LtPreference = struct LtPreferenceOpaque *;

// cudaDataType_t
constexpr int kR32F = 0, kR8I = 3, kR32I = 10, kR16BF = 14, kR8FE4M3 = 28;
// cublasOperation_t
constexpr int kOpN = 0, kOpT = 1;
// cublasComputeType_t
constexpr int kCompute32F = 68, kCompute32I = 72;
// cublasGemmAlgo_t
constexpr int kGemmDefault = -1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3, kDescTransB = 4;
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;

struct LtMatmulAlgo {
  uint64_t data[8];
};

struct LtHeuristicResult {
  LtMatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// Entry points, by their unversioned names.
using CreateFn = Status (*)(Handle *);
using DestroyFn = Status (*)(Handle);
using SetStreamFn = Status (*)(Handle, CUstream);
using GemmExFn = Status (*)(Handle, int, int, int, int, int, const void *,
                            const void *, int, int, const void *, int, int,
                            const void *, void *, int, int, int, int);
using StatusStringFn = const char *(*)(Status);
using LtCreateFn = Status (*)(LtHandle *);
using LtDestroyFn = Status (*)(LtHandle);
using LtDescCreateFn = Status (*)(LtMatmulDesc *, int, int);
using LtDescDestroyFn = Status (*)(LtMatmulDesc);
using LtDescSetFn = Status (*)(LtMatmulDesc, int, const void *, size_t);
using LtLayoutCreateFn = Status (*)(LtMatrixLayout *, int, uint64_t, uint64_t,
                                    int64_t);
using LtLayoutDestroyFn = Status (*)(LtMatrixLayout);
using LtPrefCreateFn = Status (*)(LtPreference *);
using LtPrefDestroyFn = Status (*)(LtPreference);
using LtPrefSetFn = Status (*)(LtPreference, int, const void *, size_t);
using LtHeuristicFn = Status (*)(LtHandle, LtMatmulDesc, LtMatrixLayout,
                                 LtMatrixLayout, LtMatrixLayout,
                                 LtMatrixLayout, LtPreference, int,
                                 LtHeuristicResult *, int *);
using LtMatmulFn = Status (*)(LtHandle, LtMatmulDesc, const void *,
                              const void *, LtMatrixLayout, const void *,
                              LtMatrixLayout, const void *, const void *,
                              LtMatrixLayout, void *, LtMatrixLayout,
                              const LtMatmulAlgo *, void *, size_t, CUstream);

} // namespace lqblas

#ifdef LQ_CUBLAS_HEADERS
#include <cublasLt.h>
#include <cublas_api.h>

namespace lqblas {
static_assert(CUBLAS_STATUS_SUCCESS == 0 && sizeof(cublasStatus_t) == sizeof(Status));
static_assert(CUDA_R_32F == kR32F && CUDA_R_8I == kR8I && CUDA_R_32I == kR32I &&
              CUDA_R_16BF == kR16BF && CUDA_R_8F_E4M3 == kR8FE4M3);
static_assert(CUBLAS_OP_N == kOpN && CUBLAS_OP_T == kOpT);
static_assert(CUBLAS_COMPUTE_32F == kCompute32F &&
              CUBLAS_COMPUTE_32I == kCompute32I);
static_assert(CUBLAS_GEMM_DEFAULT == kGemmDefault);
static_assert(CUBLASLT_MATMUL_DESC_TRANSA == kDescTransA &&
              CUBLASLT_MATMUL_DESC_TRANSB == kDescTransB);
static_assert(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ==
              kPrefMaxWorkspaceBytes);
static_assert(sizeof(cublasLtMatmulAlgo_t) == sizeof(LtMatmulAlgo));
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) ==
                  sizeof(LtHeuristicResult) &&
              offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) ==
                  offsetof(LtHeuristicResult, workspaceSize) &&
              offsetof(cublasLtMatmulHeuristicResult_t, state) ==
                  offsetof(LtHeuristicResult, state) &&
              offsetof(cublasLtMatmulHeuristicResult_t, wavesCount) ==
                  offsetof(LtHeuristicResult, wavesCount));
static_assert(sizeof(cudaDataType) == sizeof(int) &&
              sizeof(cublasComputeType_t) == sizeof(int) &&
              sizeof(cublasOperation_t) == sizeof(int) &&
              sizeof(cublasGemmAlgo_t) == sizeof(int));
} // namespace lqblas
#endif

#endif // LQ_TOOLS_CUBLASABI_H
