//===- lq-gpu-bench.cpp - fused 4-bit GEMMs of a kernel pack vs cuBLAS ----===//
//
//   lq-gpu-bench [--pack DIR] [--out FILE] [--iters N] [--warmup N] [--quick]
//                [--driver-jit]
//
// Times (CUDA events around each launch, warm-up runs first, the median of
// N) every float GEMM module of a kernel pack at 4096^3, 8192^3 and
// training shapes (an MLP layer 784->512 at batch 128 and 256, a
// transformer projection 4096x4096 over 2048..8192 tokens, each in the
// GEMM role of the module), against
//   - cuBLAS BF16 (cublasGemmEx, f32 accumulation),
//   - cuBLASLt FP8 e4m3 (bf16 output) and INT8 (int32 output), TN layout,
//   - the unfused pipeline: the module's quantizers to packed codes, then
//     the pack's packed GEMM of the same spec.
// A fused launch includes its statistics pass and the read-back of their
// few bytes, as an application sees it. TFLOP/s count 2 M N K operations.
// It also measures device-to-device copy bandwidth and each quantizer's
// bandwidth (bytes read and written) as a fraction of it.
//
// cuBLAS is opened with dlopen (libcublas.so.13 / libcublas.so, and
// cuBLASLt likewise); a baseline that cannot run prints why and is left out.
// The result is a Markdown table on stdout and in --out. --quick measures
// the smaller shapes only; --driver-jit hands the PTX to the driver instead
// of assembling it with nvJitLink or ptxas.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/CudaDriver.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/PtxCompiler.h"

#include <cublasLt.h>
#include <cublas_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using lq::DType;
using lq::Format;
using lq::GemmSpec;
using lq::Result;
using lq::gpu::CudaDriver;
using lq::gpu::DeviceBuffer;
using lq::gpu::GpuLauncher;

namespace {

CudaDriver *cuda = nullptr;
CUstream stream = nullptr;

void *openFirst(std::initializer_list<const char *> names, std::string &why) {
  for (const char *name : names) {
    if (void *library = dlopen(name, RTLD_NOW | RTLD_LOCAL))
      return library;
    const char *error = dlerror();
    why += std::string(why.empty() ? "" : "; ") + (error ? error : name);
  }
  return nullptr;
}

template <typename Fn> bool resolve(void *library, const char *name, Fn &fn,
                                    std::string &missing) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  if (!fn)
    missing += std::string(missing.empty() ? "" : ", ") + name;
  return fn != nullptr;
}

//===----------------------------------------------------------------------===//
// cuBLAS BF16
//===----------------------------------------------------------------------===//

class Cublas {
public:
  /// cuBLAS on the current context and the bench stream, or why not.
  static Result<std::unique_ptr<Cublas>> open() {
    using R = Result<std::unique_ptr<Cublas>>;
    std::string why;
    void *library = openFirst({"libcublas.so.13", "libcublas.so",
                               "/usr/local/cuda/lib64/libcublas.so.13"},
                              why);
    if (!library)
      return R::failure("cuBLAS not found (" + why + ")");
    std::unique_ptr<Cublas> b(new Cublas);
    std::string missing;
    resolve(library, "cublasCreate_v2", b->create, missing);
    resolve(library, "cublasDestroy_v2", b->destroy, missing);
    resolve(library, "cublasSetStream_v2", b->setStream, missing);
    resolve(library, "cublasGemmEx", b->gemmEx, missing);
    resolve(library, "cublasGetStatusString", b->statusString, missing);
    if (!missing.empty())
      return R::failure("cuBLAS lacks " + missing);
    if (cublasStatus_t s = b->create(&b->handle))
      return R::failure("cublasCreate: " + b->text(s));
    if (cublasStatus_t s = b->setStream(b->handle, stream))
      return R::failure("cublasSetStream: " + b->text(s));
    return R(std::move(b));
  }
  ~Cublas() {
    if (handle)
      destroy(handle);
  }

  /// C[m, n] = A[m, k] B[k, n] in bf16 with f32 accumulation (column-major
  /// as cuBLAS counts; the cost is the same either way).
  std::string gemmBf16(int m, int n, int k, CUdeviceptr a, CUdeviceptr b,
                       CUdeviceptr c) {
    float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = gemmEx(
        handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha,
        reinterpret_cast<void *>(a), CUDA_R_16BF, m,
        reinterpret_cast<void *>(b), CUDA_R_16BF, k, &beta,
        reinterpret_cast<void *>(c), CUDA_R_16BF, m, CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT);
    return s ? "cublasGemmEx: " + text(s) : "";
  }

private:
  Cublas() = default;
  std::string text(cublasStatus_t s) const {
    return statusString ? statusString(s) : "status " + std::to_string(int(s));
  }
  cublasStatus_t (*create)(cublasHandle_t *) = nullptr;
  cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
  cublasStatus_t (*setStream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*gemmEx)(cublasHandle_t, cublasOperation_t,
                           cublasOperation_t, int, int, int, const void *,
                           const void *, cudaDataType, int, const void *,
                           cudaDataType, int, const void *, void *,
                           cudaDataType, int, cublasComputeType_t,
                           cublasGemmAlgo_t) = nullptr;
  const char *(*statusString)(cublasStatus_t) = nullptr;
  cublasHandle_t handle = nullptr;
};

//===----------------------------------------------------------------------===//
// cuBLASLt FP8 and INT8
//===----------------------------------------------------------------------===//

enum class LowPrecision { Fp8, Int8 };

class CublasLt {
public:
  static Result<std::unique_ptr<CublasLt>> open() {
    using R = Result<std::unique_ptr<CublasLt>>;
    std::string why;
    void *library = openFirst({"libcublasLt.so.13", "libcublasLt.so",
                               "/usr/local/cuda/lib64/libcublasLt.so.13"},
                              why);
    if (!library)
      return R::failure("cuBLASLt not found (" + why + ")");
    std::unique_ptr<CublasLt> lt(new CublasLt);
    std::string missing;
    resolve(library, "cublasLtCreate", lt->create, missing);
    resolve(library, "cublasLtDestroy", lt->destroy, missing);
    resolve(library, "cublasLtGetStatusString", lt->statusString, missing);
    resolve(library, "cublasLtMatmulDescCreate", lt->descCreate, missing);
    resolve(library, "cublasLtMatmulDescDestroy", lt->descDestroy, missing);
    resolve(library, "cublasLtMatmulDescSetAttribute", lt->descSet, missing);
    resolve(library, "cublasLtMatrixLayoutCreate", lt->layoutCreate, missing);
    resolve(library, "cublasLtMatrixLayoutDestroy", lt->layoutDestroy, missing);
    resolve(library, "cublasLtMatmulPreferenceCreate", lt->prefCreate, missing);
    resolve(library, "cublasLtMatmulPreferenceDestroy", lt->prefDestroy,
            missing);
    resolve(library, "cublasLtMatmulPreferenceSetAttribute", lt->prefSet,
            missing);
    resolve(library, "cublasLtMatmulAlgoGetHeuristic", lt->heuristic, missing);
    resolve(library, "cublasLtMatmul", lt->run, missing);
    if (!missing.empty())
      return R::failure("cuBLASLt lacks " + missing);
    if (cublasStatus_t s = lt->create(&lt->handle))
      return R::failure("cublasLtCreate: " + lt->text(s));
    auto workspace = DeviceBuffer::allocate(kWorkspaceBytes);
    if (!workspace)
      return R::failure(workspace.error());
    lt->workspace = std::move(*workspace);
    return R(std::move(lt));
  }
  ~CublasLt() {
    for (Plan &p : plans)
      release(p);
    if (handle)
      destroy(handle);
  }

  /// D[m, n] = A^T B with A [k, m] and B [k, n] column-major (the TN layout
  /// that FP8 and INT8 tensor-core kernels take): FP8 e4m3 to bf16, or INT8
  /// to int32. Plans once per shape; an error says why a shape cannot run.
  std::string matmul(LowPrecision kind, int m, int n, int k, CUdeviceptr a,
                     CUdeviceptr b, CUdeviceptr d) {
    Plan *plan = nullptr;
    for (Plan &p : plans)
      if (p.kind == kind && p.m == m && p.n == n && p.k == k)
        plan = &p;
    if (!plan) {
      plan = &plans.emplace_back();
      plan->kind = kind;
      plan->m = m;
      plan->n = n;
      plan->k = k;
      plan->error = prepare(*plan);
    }
    if (!plan->error.empty())
      return plan->error;
    float alphaF = 1.0f, betaF = 0.0f;
    int32_t alphaI = 1, betaI = 0;
    bool fp8 = kind == LowPrecision::Fp8;
    const void *alpha = fp8 ? static_cast<const void *>(&alphaF) : &alphaI;
    const void *beta = fp8 ? static_cast<const void *>(&betaF) : &betaI;
    void *dp = reinterpret_cast<void *>(d);
    cublasStatus_t s =
        run(handle, plan->desc, alpha, reinterpret_cast<void *>(a), plan->a,
            reinterpret_cast<void *>(b), plan->b, beta, dp, plan->d, dp,
            plan->d, &plan->algo, workspace.data(), kWorkspaceBytes, stream);
    return s ? "cublasLtMatmul: " + text(s) : "";
  }

private:
  static constexpr size_t kWorkspaceBytes = size_t(64) << 20;
  struct Plan {
    LowPrecision kind = LowPrecision::Fp8;
    int m = 0, n = 0, k = 0;
    std::string error;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  CublasLt() = default;
  std::string text(cublasStatus_t s) const {
    return statusString ? statusString(s) : "status " + std::to_string(int(s));
  }

  std::string prepare(Plan &p) {
    bool fp8 = p.kind == LowPrecision::Fp8;
    cudaDataType in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_8I;
    cudaDataType out = fp8 ? CUDA_R_16BF : CUDA_R_32I;
    cublasComputeType_t compute = fp8 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I;
    cudaDataType scale = fp8 ? CUDA_R_32F : CUDA_R_32I;
    std::string what = std::string(fp8 ? "FP8" : "INT8") + " " +
                       std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                       std::to_string(p.k) + ": ";
    if (cublasStatus_t s = descCreate(&p.desc, compute, scale))
      return what + "cublasLtMatmulDescCreate: " + text(s);
    cublasOperation_t transA = CUBLAS_OP_T, transB = CUBLAS_OP_N;
    if (cublasStatus_t s = descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                   &transA, sizeof(transA)))
      return what + "TRANSA: " + text(s);
    if (cublasStatus_t s = descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                   &transB, sizeof(transB)))
      return what + "TRANSB: " + text(s);
    if (cublasStatus_t s = layoutCreate(&p.a, in, p.k, p.m, p.k))
      return what + "layout of A: " + text(s);
    if (cublasStatus_t s = layoutCreate(&p.b, in, p.k, p.n, p.k))
      return what + "layout of B: " + text(s);
    if (cublasStatus_t s = layoutCreate(&p.d, out, p.m, p.n, p.m))
      return what + "layout of D: " + text(s);
    cublasLtMatmulPreference_t pref = nullptr;
    if (cublasStatus_t s = prefCreate(&pref))
      return what + "cublasLtMatmulPreferenceCreate: " + text(s);
    size_t bytes = kWorkspaceBytes;
    prefSet(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
            sizeof(bytes));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t s = heuristic(handle, p.desc, p.a, p.b, p.d, p.d, pref, 1,
                                 &result, &found);
    prefDestroy(pref);
    if (s)
      return what + "cublasLtMatmulAlgoGetHeuristic: " + text(s);
    if (found == 0)
      return what + "cuBLASLt has no algorithm for it on this device";
    p.algo = result.algo;
    return "";
  }

  void release(Plan &p) {
    for (cublasLtMatrixLayout_t l : {p.a, p.b, p.d})
      if (l)
        layoutDestroy(l);
    if (p.desc)
      descDestroy(p.desc);
  }

  cublasStatus_t (*create)(cublasLtHandle_t *) = nullptr;
  cublasStatus_t (*destroy)(cublasLtHandle_t) = nullptr;
  const char *(*statusString)(cublasStatus_t) = nullptr;
  cublasStatus_t (*descCreate)(cublasLtMatmulDesc_t *, cublasComputeType_t,
                               cudaDataType_t) = nullptr;
  cublasStatus_t (*descDestroy)(cublasLtMatmulDesc_t) = nullptr;
  cublasStatus_t (*descSet)(cublasLtMatmulDesc_t,
                            cublasLtMatmulDescAttributes_t, const void *,
                            size_t) = nullptr;
  cublasStatus_t (*layoutCreate)(cublasLtMatrixLayout_t *, cudaDataType,
                                 uint64_t, uint64_t, int64_t) = nullptr;
  cublasStatus_t (*layoutDestroy)(cublasLtMatrixLayout_t) = nullptr;
  cublasStatus_t (*prefCreate)(cublasLtMatmulPreference_t *) = nullptr;
  cublasStatus_t (*prefDestroy)(cublasLtMatmulPreference_t) = nullptr;
  cublasStatus_t (*prefSet)(cublasLtMatmulPreference_t,
                            cublasLtMatmulPreferenceAttributes_t, const void *,
                            size_t) = nullptr;
  cublasStatus_t (*heuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t,
                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                              cublasLtMatmulPreference_t, int,
                              cublasLtMatmulHeuristicResult_t *,
                              int *) = nullptr;
  cublasStatus_t (*run)(cublasLtHandle_t, cublasLtMatmulDesc_t,
                           const void *, const void *, cublasLtMatrixLayout_t,
                           const void *, cublasLtMatrixLayout_t, const void *,
                           const void *, cublasLtMatrixLayout_t, void *,
                           cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t *,
                           void *, size_t, cudaStream_t) = nullptr;
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace;
  std::vector<Plan> plans;
};

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

struct Settings {
  std::string pack = "gpu-pack", out;
  int iters = 20, warmup = 3;
  bool quick = false;
  lq::gpu::PtxLoading loading = lq::gpu::PtxLoading::Assemble;
};

/// The median of `iters` timed runs after `warmup` untimed ones, in ms; a
/// run returns "" or why it failed.
Result<double> medianMs(const Settings &settings,
                        const std::function<std::string()> &run) {
  using R = Result<double>;
  for (int i = 0; i < settings.warmup; ++i)
    if (std::string error = run(); !error.empty())
      return R::failure(error);
  auto start = cuda->createEvent(), end = cuda->createEvent();
  if (!start || !end)
    return R::failure(start ? end.error() : start.error());
  std::vector<double> times;
  std::string error;
  for (int i = 0; i < settings.iters && error.empty(); ++i) {
    auto begun = cuda->record(*start, stream);
    error = begun ? run() : begun.error();
    if (!error.empty())
      break;
    auto ended = cuda->record(*end, stream);
    auto ms = ended ? cuda->elapsedMs(*start, *end) : Result<float>::failure(ended.error());
    if (!ms)
      error = ms.error();
    else
      times.push_back(*ms);
  }
  (void)cuda->destroyEvent(*start);
  (void)cuda->destroyEvent(*end);
  if (!error.empty())
    return R::failure(error);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string status(const lq::gpu::Status &s) { return s ? "" : s.error(); }
template <typename T> std::string status(const Result<T> &r) {
  return r ? "" : r.error();
}

//===----------------------------------------------------------------------===//
// Workloads
//===----------------------------------------------------------------------===//

struct Shape {
  std::string label;
  int64_t m, n, k;
};

std::string roleOf(const GemmSpec &s) {
  bool luq = s.lhs.format == Format::Log4;
  if (!luq && !s.lhs.transposed && s.rhs.transposed)
    return "forward";
  if (luq && !s.lhs.transposed && !s.rhs.transposed)
    return "backward-data";
  if (luq && s.lhs.transposed && !s.rhs.transposed)
    return "weight-grad";
  return "gemm";
}

/// The shapes a module of `role` is measured at: the square ones and the
/// role's GEMM of an MLP layer (784 -> 512) and of a transformer
/// projection (4096 -> 4096).
std::vector<Shape> shapesFor(const std::string &role, bool quick) {
  std::vector<Shape> shapes = {{"square", 4096, 4096, 4096}};
  if (!quick)
    shapes.push_back({"square", 8192, 8192, 8192});
  auto layer = [&](const std::string &what, int64_t batch, int64_t in,
                   int64_t out) {
    if (role == "forward")
      shapes.push_back({what, batch, out, in});
    else if (role == "backward-data")
      shapes.push_back({what, batch, in, out});
    else if (role == "weight-grad")
      shapes.push_back({what, out, in, batch});
  };
  for (int64_t batch : {128, 256})
    layer("MLP 784->512, batch " + std::to_string(batch), batch, 784, 512);
  for (int64_t tokens : quick ? std::vector<int64_t>{2048}
                              : std::vector<int64_t>{2048, 4096, 8192})
    layer("4096->4096, " + std::to_string(tokens) + " tokens", tokens, 4096,
          4096);
  return shapes;
}

/// Device inputs big enough for every workload: random f32 values, their
/// bf16 rounding, random bytes for the FP8/INT8 baselines.
struct Inputs {
  DeviceBuffer aF32, bF32, aBf16, bBf16, bytesA, bytesB, out, outWide, bias,
      packedA, packedB;
};

lq::Result<Inputs> makeInputs(int64_t maxElements, unsigned maxSamples) {
  using R = Result<Inputs>;
  Inputs in;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> f32(maxElements);
  std::vector<uint16_t> bf16(maxElements);
  for (int64_t i = 0; i < maxElements; ++i) {
    f32[i] = normal(rng) * 0.05f;
    uint32_t bits;
    std::memcpy(&bits, &f32[i], 4);
    bf16[i] = uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  }
  std::vector<unsigned char> bytes(maxElements);
  for (auto &b : bytes)
    b = (rng() % 61) + 2; // small positive values in int8 and in e4m3
  struct Fill {
    DeviceBuffer *buffer;
    size_t size;
    const void *data;
  } fills[] = {{&in.aF32, size_t(maxElements) * 4, f32.data()},
               {&in.bF32, size_t(maxElements) * 4, f32.data()},
               {&in.aBf16, size_t(maxElements) * 2, bf16.data()},
               {&in.bBf16, size_t(maxElements) * 2, bf16.data()},
               {&in.bytesA, size_t(maxElements), bytes.data()},
               {&in.bytesB, size_t(maxElements), bytes.data()},
               {&in.out, size_t(maxElements) * 4, nullptr},
               {&in.outWide, size_t(maxElements) * 4, nullptr},
               {&in.bias, size_t(1) << 16, nullptr},
               {&in.packedA, size_t(maxElements) * maxSamples / 2 + 64, nullptr},
               {&in.packedB, size_t(maxElements) / 2 + 64, nullptr}};
  for (const Fill &f : fills) {
    auto buffer = DeviceBuffer::allocate(f.size);
    if (!buffer)
      return R::failure(buffer.error());
    *f.buffer = std::move(*buffer);
    auto done = f.data ? cuda->copyToDevice(f.buffer->address(), f.data,
                                            f.size, stream)
                       : cuda->fill(f.buffer->address(), 0, f.size, stream);
    if (!done)
      return R::failure(done.error());
  }
  if (auto done = cuda->synchronize(stream); !done)
    return R::failure(done.error());
  return in;
}

lq::TensorRef deviceRef(const DeviceBuffer &buffer, DType dtype, int64_t rows,
                        int64_t cols) {
  int64_t stride = dtype == DType::Packed4 ? (cols + 1) / 2 : cols;
  return {buffer.data(), dtype, rows, cols, stride, lq::Device::CUDA};
}

/// The launch arguments of an M x N x K GEMM of spec `s` over `in`.
lq::LaunchArgs gemmArgs(const GemmSpec &s, const Inputs &in, int64_t m,
                        int64_t n, int64_t k) {
  auto operand = [&](const lq::OperandSpec &op, bool lhs, int64_t rows,
                     int64_t cols, unsigned samples) {
    const DeviceBuffer &buffer =
        op.dtype == DType::Packed4 ? (lhs ? in.packedA : in.packedB)
        : op.dtype == DType::BF16  ? (lhs ? in.aBf16 : in.bBf16)
                                   : (lhs ? in.aF32 : in.bF32);
    return deviceRef(buffer, op.dtype,
                     rows * (op.dtype == DType::Packed4 ? samples : 1), cols);
  };
  lq::LaunchArgs args;
  args.lhs = s.lhs.transposed ? operand(s.lhs, true, k, m, s.samples)
                              : operand(s.lhs, true, m, k, s.samples);
  args.rhs = s.rhs.transposed ? operand(s.rhs, false, n, k, 1)
                              : operand(s.rhs, false, k, n, 1);
  args.out = deviceRef(in.out, s.output, m, n);
  if (s.bias) {
    args.bias = static_cast<const float *>(in.bias.data());
    args.biasLength = n;
  }
  args.seed = 42;
  args.stream = 1;
  args.maxEstimate = 0.2f;
  args.lhsScale = args.rhsScale = 1.0f / 64.0f;
  return args;
}

/// The pack's packed GEMM computing what `s` computes from quantized codes.
GpuLauncher *packedTwin(const std::vector<std::pair<lq::gpu::PackModule,
                                                    std::unique_ptr<GpuLauncher>>> &loaded,
                        const GemmSpec &s) {
  for (const auto &[module, launcher] : loaded) {
    const GemmSpec &p = module.info.spec;
    if (!launcher || module.info.quantizeOnly)
      continue;
    bool match = p.lhs.format == s.lhs.format && p.rhs.format == s.rhs.format &&
                 p.lhs.transposed == s.lhs.transposed &&
                 p.rhs.transposed == s.rhs.transposed &&
                 p.samples == s.samples && p.bias == s.bias &&
                 p.relu == s.relu && p.output == s.output &&
                 p.lhs.dtype == DType::Packed4 && p.rhs.dtype == DType::Packed4;
    if (match)
      return launcher.get();
  }
  return nullptr;
}

std::string fixed(double v, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, v);
  return text;
}

double tflops(const Shape &s, double ms) {
  return 2.0 * double(s.m) * double(s.n) * double(s.k) / (ms * 1e-3) / 1e12;
}

} // namespace

int main(int argc, char **argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--pack" && i + 1 < argc)
      settings.pack = argv[++i];
    else if (arg == "--out" && i + 1 < argc)
      settings.out = argv[++i];
    else if (arg == "--iters" && i + 1 < argc)
      settings.iters = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--warmup" && i + 1 < argc)
      settings.warmup = std::max(0, std::atoi(argv[++i]));
    else if (arg == "--quick")
      settings.quick = true;
    else if (arg == "--driver-jit")
      settings.loading = lq::gpu::PtxLoading::DriverJit;
    else {
      std::fprintf(stderr, "usage: lq-gpu-bench [--pack DIR] [--out FILE] "
                           "[--iters N] [--warmup N] [--quick] "
                           "[--driver-jit]\n");
      return 2;
    }
  }
  auto driver = CudaDriver::get();
  if (!driver) {
    std::printf("SKIPPED: %s\n", driver.error().c_str());
    return 77;
  }
  cuda = *driver;
  auto context = cuda->usePrimaryContext(0);
  auto created = context ? cuda->createStream() : Result<CUstream>::failure(context.error());
  if (!created) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n", created.error().c_str());
    return 1;
  }
  stream = *created;
  auto device = cuda->currentDevice();
  auto pack = lq::gpu::readPack(settings.pack);
  if (!device || !pack) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n",
                 (device ? pack.error() : device.error()).c_str());
    return 1;
  }
  std::vector<std::pair<lq::gpu::PackModule, std::unique_ptr<GpuLauncher>>> loaded;
  for (auto &m : *pack) {
    auto launcher = lq::gpu::loadPackModule(m, settings.loading);
    if (!launcher) {
      std::fprintf(stderr, "lq-gpu-bench: %s: %s\n", m.name.c_str(),
                   launcher.error().c_str());
      return 1;
    }
    loaded.emplace_back(std::move(m), std::move(*launcher));
  }

  int64_t maxElements = 0;
  unsigned maxSamples = 1;
  for (const auto &[module, launcher] : loaded) {
    maxSamples = std::max(maxSamples, module.info.spec.samples);
    for (const Shape &s : shapesFor(roleOf(module.info.spec), settings.quick))
      maxElements = std::max({maxElements, s.m * s.k, s.k * s.n, s.m * s.n});
  }
  auto inputs = makeInputs(maxElements, maxSamples);
  if (!inputs) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n", inputs.error().c_str());
    return 1;
  }
  Inputs &in = *inputs;
  auto cublas = Cublas::open();
  auto lt = CublasLt::open();
  if (!cublas)
    std::printf("cuBLAS BF16 baseline left out: %s\n", cublas.error().c_str());
  if (!lt)
    std::printf("cuBLASLt FP8/INT8 baselines left out: %s\n", lt.error().c_str());

  auto version = cuda->driverVersion();
  auto assembler = lq::gpu::ptxCompilerIdentity();
  std::string report = "# lq GPU GEMMs\n\n";
  report += "Device: " + device->name + " (compute capability " +
            std::to_string(device->computeMajor) + "." +
            std::to_string(device->computeMinor) + ", " +
            std::to_string(device->multiprocessors) + " SMs), driver " +
            (version ? std::to_string(*version) : version.error()) +
            ", PTX assembled by " + (assembler ? *assembler : assembler.error()) +
            ". Median of " + std::to_string(settings.iters) + " runs after " +
            std::to_string(settings.warmup) + " warm-up runs; TFLOP/s count "
            "2MNK. A fused launch includes its statistics pass. A speedup is "
            "the other's time over the fused GEMM's.\n\n";
  report += "| module | workload | M x N x K | fused ms | fused TFLOP/s | "
            "unfused ms | speedup vs unfused | cuBLAS BF16 TFLOP/s | speedup "
            "vs BF16 | FP8 TFLOP/s | speedup vs FP8 | INT8 TOPS | speedup vs "
            "INT8 |\n";
  report += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

  // Baselines depend on the shape only.
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::array<double, 3>> baselines;
  auto baselineOf = [&](const Shape &s) {
    auto key = std::make_tuple(s.m, s.n, s.k);
    if (auto it = baselines.find(key); it != baselines.end())
      return it->second;
    std::array<double, 3> ms = {0, 0, 0};
    int m = int(s.m), n = int(s.n), k = int(s.k);
    if (cublas) {
      auto t = medianMs(settings, [&] {
        return (*cublas)->gemmBf16(m, n, k, in.aBf16.address(),
                                   in.bBf16.address(), in.outWide.address());
      });
      if (t)
        ms[0] = *t;
      else
        std::printf("cuBLAS BF16 %dx%dx%d: %s\n", m, n, k, t.error().c_str());
    }
    if (lt)
      for (auto [slot, kind] : {std::pair(1, LowPrecision::Fp8),
                                std::pair(2, LowPrecision::Int8)}) {
        auto t = medianMs(settings, [&, kind = kind] {
          return (*lt)->matmul(kind, m, n, k, in.bytesA.address(),
                               in.bytesB.address(), in.outWide.address());
        });
        if (t)
          ms[slot] = *t;
        else
          std::printf("cuBLASLt %s %dx%dx%d left out: %s\n",
                      kind == LowPrecision::Fp8 ? "FP8" : "INT8", m, n, k,
                      t.error().c_str());
      }
    baselines[key] = ms;
    return ms;
  };

  for (auto &[module, launcher] : loaded) {
    const GemmSpec &spec = module.info.spec;
    if (module.info.quantizeOnly || spec.lhs.dtype == DType::Packed4 ||
        spec.rhs.dtype == DType::Packed4)
      continue;
    GpuLauncher *twin = packedTwin(loaded, spec);
    for (const Shape &shape : shapesFor(roleOf(spec), settings.quick)) {
      lq::LaunchArgs args = gemmArgs(spec, in, shape.m, shape.n, shape.k);
      auto fused = medianMs(settings, [&] {
        return status(launcher->launch(args, stream));
      });
      if (!fused) {
        std::printf("%s %s: %s\n", module.name.c_str(), shape.label.c_str(),
                    fused.error().c_str());
        continue;
      }
      // Unfused: the module's quantizers write packed codes (every SMP
      // sample), then the packed GEMM multiplies them.
      std::string unfusedCell = "n/a", ratioCell = "n/a";
      if (twin) {
        GemmSpec packedSpec = twin->info().spec;
        lq::LaunchArgs packedArgs =
            gemmArgs(packedSpec, in, shape.m, shape.n, shape.k);
        auto unfused = medianMs(settings, [&]() -> std::string {
          for (unsigned s = 0; s < spec.samples; ++s) {
            lq::QuantizeArgs qa;
            qa.input = args.lhs;
            qa.output = packedArgs.lhs;
            qa.output.rows = args.lhs.rows;
            qa.output.data = static_cast<char *>(packedArgs.lhs.data) +
                             s * args.lhs.rows * packedArgs.lhs.rowStride;
            qa.format = spec.lhs.format;
            qa.seed = args.seed;
            qa.stream = args.stream;
            qa.sample = s;
            if (spec.hindsight)
              qa.maxEstimate = args.maxEstimate;
            auto q = launcher->quantize(qa, stream, lq::gpu::Operand::Lhs);
            if (!q)
              return q.error();
            packedArgs.lhsScale = q->scale;
          }
          lq::QuantizeArgs qb;
          qb.input = args.rhs;
          qb.output = packedArgs.rhs;
          qb.format = spec.rhs.format;
          auto q = launcher->quantize(qb, stream, lq::gpu::Operand::Rhs);
          if (!q)
            return q.error();
          packedArgs.rhsScale = q->scale;
          return status(twin->launch(packedArgs, stream));
        });
        if (unfused) {
          unfusedCell = fixed(*unfused, 3);
          ratioCell = fixed(*unfused / *fused, 2) + "x";
        } else {
          std::printf("%s %s unfused: %s\n", module.name.c_str(),
                      shape.label.c_str(), unfused.error().c_str());
        }
      }
      std::array<double, 3> base = baselineOf(shape);
      auto cell = [&](double ms) {
        return ms > 0 ? fixed(tflops(shape, ms), 1) : std::string("n/a");
      };
      auto ratio = [&](double ms) {
        return ms > 0 ? fixed(ms / *fused, 2) + "x" : std::string("n/a");
      };
      // The tile and placement the launcher picked for this shape.
      auto choice = launcher->chooseGemm(args);
      std::string kernel = choice ? choice->kernel : choice.error();
      report += "| " + module.name + " (" + kernel + ") | " + shape.label + " | " +
                std::to_string(shape.m) + " x " + std::to_string(shape.n) +
                " x " + std::to_string(shape.k) + " | " + fixed(*fused, 3) +
                " | " + cell(*fused) + " | " + unfusedCell + " | " +
                ratioCell + " | " + cell(base[0]) + " | " + ratio(base[0]) +
                " | " + cell(base[1]) + " | " + ratio(base[1]) + " | " +
                cell(base[2]) + " | " + ratio(base[2]) + " |\n";
      std::printf("%s %s: %.3f ms\n", module.name.c_str(), shape.label.c_str(),
                  *fused);
      std::fflush(stdout);
    }
  }

  // Bandwidth: a device-to-device copy moves each byte twice (read and
  // write); a quantizer reads its input (twice with the statistics pass)
  // and writes half a byte per element, counted as input + output bytes.
  report += "\n| bandwidth | bytes moved | ms | GB/s | of copy |\n"
            "|---|---|---|---|---|\n";
  size_t copyBytes = size_t(maxElements) * 4;
  auto copy = medianMs(settings, [&] {
    return status(cuda->copyOnDevice(in.out.address(), in.aF32.address(),
                                     copyBytes, stream));
  });
  double copyGbs = copy ? 2.0 * double(copyBytes) / (*copy * 1e-3) / 1e9 : 0;
  if (copy)
    report += "| cuMemcpyDtoD | " + std::to_string(2 * copyBytes) + " | " +
              fixed(*copy, 3) + " | " + fixed(copyGbs, 0) + " | 1.00 |\n";
  else
    std::printf("copy bandwidth: %s\n", copy.error().c_str());
  int64_t side = int64_t(std::sqrt(double(maxElements)));
  for (auto &[module, launcher] : loaded) {
    const GemmSpec &spec = module.info.spec;
    for (auto [operand, name] : {std::pair(lq::gpu::Operand::Lhs, "lhs"),
                                 std::pair(lq::gpu::Operand::Rhs, "rhs")}) {
      const lq::OperandSpec &op =
          operand == lq::gpu::Operand::Lhs ? spec.lhs : spec.rhs;
      if (op.dtype == DType::Packed4 ||
          (module.info.quantizeOnly && operand == lq::gpu::Operand::Rhs))
        continue;
      lq::QuantizeArgs qa;
      qa.input = deviceRef(op.dtype == DType::BF16 ? in.aBf16 : in.aF32,
                           op.dtype, side, side);
      qa.output = deviceRef(in.packedA, DType::Packed4, side, side);
      qa.format = op.format;
      auto t = medianMs(settings, [&] {
        return status(launcher->quantize(qa, stream, operand));
      });
      if (!t) {
        std::printf("%s quantizer of %s: %s\n", module.name.c_str(), name,
                    t.error().c_str());
        continue;
      }
      double bytes = double(side) * double(side) *
                     (op.dtype == DType::BF16 ? 2.0 : 4.0) +
                     double(side) * double((side + 1) / 2);
      double gbs = bytes / (*t * 1e-3) / 1e9;
      report += "| " + module.name + " quantizer of " + name + " (" +
                lq::formatName(op.format) + ", " + std::to_string(side) + "^2) | " +
                fixed(bytes, 0) + " | " + fixed(*t, 3) + " | " + fixed(gbs, 0) +
                " | " + (copyGbs > 0 ? fixed(gbs / copyGbs, 2) : "n/a") + " |\n";
    }
  }

  std::printf("\n%s", report.c_str());
  if (!settings.out.empty()) {
    std::ofstream out(settings.out);
    out << report;
    if (!out) {
      std::fprintf(stderr, "lq-gpu-bench: cannot write %s\n",
                   settings.out.c_str());
      return 1;
    }
    std::printf("\nwritten to %s\n", settings.out.c_str());
  }
  return 0;
}
