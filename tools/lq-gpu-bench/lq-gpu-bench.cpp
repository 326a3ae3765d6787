//===- lq-gpu-bench.cpp - fused 4-bit GEMMs of a kernel pack vs cuBLAS ----===//
//
//   lq-gpu-bench [--pack DIR] [--out FILE.md] [--json FILE] [--chip CHIP]
//                [--iters N] [--warmup N] [--jobs N] [--quick] [--driver-jit]
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
// "fused" is the launch as the runtime places it (its cost model); where
// a module has the int8 placement (sm_90a, two float operands) each
// placement is also timed alone: on load (the fused GEMMs) and int8 (both
// operands once to int8 codes, then the persistent warp-specialized
// GEMM). A launch includes its statistics pass and the read-back of their
// few bytes, as an application sees it. TFLOP/s count 2 M N K operations.
// It also measures device-to-device copy bandwidth and each quantizer's
// bandwidth (bytes read and written) as a fraction of it.
//
// cuBLAS is opened with dlopen (libcublas.so.13 / libcublas.so, and
// cuBLASLt likewise, on LD_LIBRARY_PATH or in /usr/local/cuda/lib64; its
// types are declared in CublasAbi.h, so no cuBLAS header is needed); a
// baseline that cannot run is a note with the reason, and is left out.
// The result is a Markdown table on stdout and in --out, and JSON in
// --json, both rewritten after every module so that a run cut short keeps
// what it measured. A module that does not load or launch is a problem:
// it is left out, the run goes on, and the exit status is 1 at the end
// (77: no CUDA device). --quick measures the smaller shapes only; --chip
// the modules of one target; --driver-jit hands the PTX to the driver
// instead of assembling it (with nvJitLink or ptxas, on --jobs threads).
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/CudaDriver.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/ParallelFor.h"
#include "lq/Runtime/PtxCompiler.h"

#include "CublasAbi.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using lq::DType;
using lq::Format;
using lq::GemmSpec;
using lq::Result;
using lq::cuda::CudaDriver;
using lq::cuda::DeviceBuffer;
using lq::cuda::GpuLauncher;

using lq::parallelFor;

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
    if (lqblas::Status s = b->create(&b->handle))
      return R::failure("cublasCreate: " + b->text(s));
    if (lqblas::Status s = b->setStream(b->handle, stream))
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
    lqblas::Status s = gemmEx(
        handle, lqblas::kOpN, lqblas::kOpN, m, n, k, &alpha,
        reinterpret_cast<void *>(a), lqblas::kR16BF, m,
        reinterpret_cast<void *>(b), lqblas::kR16BF, k, &beta,
        reinterpret_cast<void *>(c), lqblas::kR16BF, m, lqblas::kCompute32F,
        lqblas::kGemmDefault);
    return s ? "cublasGemmEx: " + text(s) : "";
  }

private:
  Cublas() = default;
  std::string text(lqblas::Status s) const {
    return statusString ? statusString(s) : "status " + std::to_string(int(s));
  }
  lqblas::CreateFn create = nullptr;
  lqblas::DestroyFn destroy = nullptr;
  lqblas::SetStreamFn setStream = nullptr;
  lqblas::GemmExFn gemmEx = nullptr;
  lqblas::StatusStringFn statusString = nullptr;
  lqblas::Handle handle = nullptr;
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
    if (lqblas::Status s = lt->create(&lt->handle))
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
    lqblas::Status s =
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
    lqblas::LtMatmulDesc desc = nullptr;
    lqblas::LtMatrixLayout a = nullptr, b = nullptr, d = nullptr;
    lqblas::LtMatmulAlgo algo{};
  };

  CublasLt() = default;
  std::string text(lqblas::Status s) const {
    return statusString ? statusString(s) : "status " + std::to_string(int(s));
  }

  std::string prepare(Plan &p) {
    bool fp8 = p.kind == LowPrecision::Fp8;
    int in = fp8 ? lqblas::kR8FE4M3 : lqblas::kR8I;
    int out = fp8 ? lqblas::kR16BF : lqblas::kR32I;
    int compute = fp8 ? lqblas::kCompute32F : lqblas::kCompute32I;
    int scale = fp8 ? lqblas::kR32F : lqblas::kR32I;
    std::string what = std::string(fp8 ? "FP8" : "INT8") + " " +
                       std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                       std::to_string(p.k) + ": ";
    if (lqblas::Status s = descCreate(&p.desc, compute, scale))
      return what + "cublasLtMatmulDescCreate: " + text(s);
    int transA = lqblas::kOpT, transB = lqblas::kOpN;
    if (lqblas::Status s = descSet(p.desc, lqblas::kDescTransA, &transA,
                                   sizeof(transA)))
      return what + "TRANSA: " + text(s);
    if (lqblas::Status s = descSet(p.desc, lqblas::kDescTransB, &transB,
                                   sizeof(transB)))
      return what + "TRANSB: " + text(s);
    if (lqblas::Status s = layoutCreate(&p.a, in, p.k, p.m, p.k))
      return what + "layout of A: " + text(s);
    if (lqblas::Status s = layoutCreate(&p.b, in, p.k, p.n, p.k))
      return what + "layout of B: " + text(s);
    if (lqblas::Status s = layoutCreate(&p.d, out, p.m, p.n, p.m))
      return what + "layout of D: " + text(s);
    lqblas::LtPreference pref = nullptr;
    if (lqblas::Status s = prefCreate(&pref))
      return what + "cublasLtMatmulPreferenceCreate: " + text(s);
    size_t bytes = kWorkspaceBytes;
    prefSet(pref, lqblas::kPrefMaxWorkspaceBytes, &bytes, sizeof(bytes));
    lqblas::LtHeuristicResult result{};
    int found = 0;
    lqblas::Status s = heuristic(handle, p.desc, p.a, p.b, p.d, p.d, pref, 1,
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
    for (lqblas::LtMatrixLayout l : {p.a, p.b, p.d})
      if (l)
        layoutDestroy(l);
    if (p.desc)
      descDestroy(p.desc);
  }

  lqblas::LtCreateFn create = nullptr;
  lqblas::LtDestroyFn destroy = nullptr;
  lqblas::StatusStringFn statusString = nullptr;
  lqblas::LtDescCreateFn descCreate = nullptr;
  lqblas::LtDescDestroyFn descDestroy = nullptr;
  lqblas::LtDescSetFn descSet = nullptr;
  lqblas::LtLayoutCreateFn layoutCreate = nullptr;
  lqblas::LtLayoutDestroyFn layoutDestroy = nullptr;
  lqblas::LtPrefCreateFn prefCreate = nullptr;
  lqblas::LtPrefDestroyFn prefDestroy = nullptr;
  lqblas::LtPrefSetFn prefSet = nullptr;
  lqblas::LtHeuristicFn heuristic = nullptr;
  lqblas::LtMatmulFn run = nullptr;
  lqblas::LtHandle handle = nullptr;
  DeviceBuffer workspace;
  std::vector<Plan> plans;
};

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

struct Settings {
  std::string pack = "gpu-pack", out, json, chip;
  int iters = 20, warmup = 3;
  bool quick = false;
  lq::cuda::PtxLoading loading = lq::cuda::PtxLoading::Assemble;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
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

std::string status(const lq::Status &s) { return s ? "" : s.error(); }
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

using LoadedModule =
    std::pair<lq::cuda::PackModule, std::unique_ptr<GpuLauncher>>;

/// The pack's packed GEMM of the same chip computing what `s` computes
/// from quantized codes.
GpuLauncher *packedTwin(const std::vector<LoadedModule> &loaded,
                        const std::string &chip, const GemmSpec &s) {
  for (const auto &[module, launcher] : loaded) {
    const GemmSpec &p = module.info.spec;
    if (!launcher || module.info.quantizeOnly || lq::cuda::chipName(module.info) != chip)
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

//===----------------------------------------------------------------------===//
// Report
//===----------------------------------------------------------------------===//

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '"' || ch == '\\')
      out += std::string("\\") + ch;
    else if (static_cast<unsigned char>(ch) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", unsigned(ch));
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

/// A measurement in ms, or null where there is none (<= 0).
std::string jsonMs(double ms) { return ms > 0 ? fixed(ms, 4) : "null"; }

std::string jsonList(const std::vector<std::string> &items, bool quote) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i)
    out += (i ? ",\n    " : "\n    ") + (quote ? jsonString(items[i]) : items[i]);
  return out + (items.empty() ? "]" : "\n  ]");
}

/// What a run measured and what went wrong, written as Markdown and JSON
/// after every module, so that a run cut short still leaves its results.
struct Report {
  std::string header, jsonHeader;
  std::string gemmRows, bandwidthRows;
  std::vector<std::string> gemmJson, bandwidthJson;
  /// lq's failures: modules that did not load, launches that failed.
  std::vector<std::string> problems;
  /// Baselines left out, and why.
  std::vector<std::string> notes;

  void problem(const std::string &text) {
    std::printf("PROBLEM %s\n", text.c_str());
    problems.push_back(text);
  }
  void note(const std::string &text) {
    std::printf("%s\n", text.c_str());
    notes.push_back(text);
  }
  std::string markdown(bool complete) const;
  std::string json(bool complete) const;
  /// Writes both files (where asked for); an error names the file.
  std::string write(const Settings &settings, bool complete) const;
};

std::string Report::markdown(bool complete) const {
  std::string text = header;
  text += "| module | workload | M x N x K | fused ms | fused TFLOP/s | "
          "on-load ms | int8 placement ms | "
          "unfused ms | speedup vs unfused | cuBLAS BF16 TFLOP/s | speedup "
          "vs BF16 | FP8 TFLOP/s | speedup vs FP8 | INT8 TOPS | speedup vs "
          "INT8 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  text += gemmRows;
  text += "\n| bandwidth | bytes moved | ms | GB/s | of copy |\n"
          "|---|---|---|---|---|\n" +
          bandwidthRows;
  if (!complete)
    text += "\n**Incomplete: the run stopped before the end.**\n";
  for (const auto &[title, lines] :
       {std::pair("Problems", &problems), std::pair("Notes", &notes)}) {
    if (lines->empty())
      continue;
    text += std::string("\n## ") + title + "\n\n";
    for (const std::string &line : *lines)
      text += "- " + line + "\n";
  }
  return text;
}

std::string Report::json(bool complete) const {
  return "{\n" + jsonHeader + "  \"complete\": " +
         (complete ? "true" : "false") + ",\n  \"gemms\": " +
         jsonList(gemmJson, false) + ",\n  \"bandwidth\": " +
         jsonList(bandwidthJson, false) + ",\n  \"problems\": " +
         jsonList(problems, true) + ",\n  \"notes\": " + jsonList(notes, true) +
         "\n}\n";
}

std::string Report::write(const Settings &settings, bool complete) const {
  for (const auto &[path, text] :
       {std::pair(settings.out, markdown(complete)),
        std::pair(settings.json, json(complete))}) {
    if (path.empty())
      continue;
    std::ofstream out(path);
    out << text;
    if (!out)
      return "cannot write " + path;
  }
  return "";
}

//===----------------------------------------------------------------------===//
// Measurements
//===----------------------------------------------------------------------===//

/// Baseline times per shape (cuBLAS BF16, cuBLASLt FP8 and INT8), measured
/// once per shape; 0 where a baseline cannot run.
struct Baselines {
  const Settings &settings;
  const Inputs &in;
  Report &report;
  Cublas *cublas = nullptr;
  CublasLt *lt = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::array<double, 3>> ms;

  std::array<double, 3> of(const Shape &s);
};

std::array<double, 3> Baselines::of(const Shape &s) {
  auto key = std::make_tuple(s.m, s.n, s.k);
  if (auto it = ms.find(key); it != ms.end())
    return it->second;
  std::array<double, 3> times = {0, 0, 0};
  int m = int(s.m), n = int(s.n), k = int(s.k);
  std::string shape = std::to_string(m) + "x" + std::to_string(n) + "x" +
                      std::to_string(k);
  if (cublas) {
    auto t = medianMs(settings, [&] {
      return cublas->gemmBf16(m, n, k, in.aBf16.address(), in.bBf16.address(),
                              in.outWide.address());
    });
    if (t)
      times[0] = *t;
    else
      report.note("cuBLAS BF16 " + shape + " left out: " + t.error());
  }
  for (auto [slot, kind] : {std::pair(1, LowPrecision::Fp8),
                            std::pair(2, LowPrecision::Int8)}) {
    if (!lt)
      break;
    auto t = medianMs(settings, [&, kind = kind] {
      return lt->matmul(kind, m, n, k, in.bytesA.address(),
                        in.bytesB.address(), in.outWide.address());
    });
    if (t)
      times[slot] = *t;
    else
      report.note(std::string("cuBLASLt ") +
                  (kind == LowPrecision::Fp8 ? "FP8 " : "INT8 ") + shape +
                  " left out: " + t.error());
  }
  return ms[key] = times;
}

/// The unfused pipeline of `args`: the module's quantizers write packed
/// codes (every SMP sample), then the packed GEMM multiplies them.
std::string runUnfused(GpuLauncher &launcher, GpuLauncher &twin,
                       const lq::LaunchArgs &args,
                       lq::LaunchArgs packedArgs) {
  const GemmSpec &spec = launcher.info().spec;
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
    auto q = launcher.quantize(qa, stream, lq::cuda::Operand::Lhs);
    if (!q)
      return q.error();
    packedArgs.lhsScale = q->scale;
  }
  lq::QuantizeArgs qb;
  qb.input = args.rhs;
  qb.output = packedArgs.rhs;
  qb.format = spec.rhs.format;
  auto q = launcher.quantize(qb, stream, lq::cuda::Operand::Rhs);
  if (!q)
    return q.error();
  packedArgs.rhsScale = q->scale;
  return status(twin.launch(packedArgs, stream));
}

/// One table row (and JSON record) of a fused GEMM module at one shape.
void measureGemm(const LoadedModule &module, GpuLauncher *twin,
                 const Shape &shape, const Inputs &in,
                 const Settings &settings, Baselines &baselines,
                 Report &report) {
  GpuLauncher &launcher = *module.second;
  const GemmSpec &spec = module.first.info.spec;
  const std::string &name = module.first.name;
  lq::LaunchArgs args = gemmArgs(spec, in, shape.m, shape.n, shape.k);
  auto fused = medianMs(settings,
                        [&] { return status(launcher.launch(args, stream)); });
  if (!fused)
    return report.problem(name + " " + shape.label + ": " + fused.error());
  double unfusedMs = 0;
  if (twin) {
    lq::LaunchArgs packedArgs =
        gemmArgs(twin->info().spec, in, shape.m, shape.n, shape.k);
    auto unfused = medianMs(settings, [&] {
      return runUnfused(launcher, *twin, args, packedArgs);
    });
    if (unfused)
      unfusedMs = *unfused;
    else
      report.problem(name + " " + shape.label + " unfused: " + unfused.error());
  }
  // Each placement on its own where the module has the int8 one: the
  // cost model's choice above is one of them.
  double placementMs[2] = {0, 0};
  if (lq::cuda::hasInt8Gemm(spec)) {
    const lq::cuda::Placement placements[2] = {lq::cuda::Placement::Fused,
                                               lq::cuda::Placement::Int8};
    for (int i = 0; i < 2; ++i) {
      launcher.setPlacement(placements[i]);
      auto ms = medianMs(settings,
                         [&] { return status(launcher.launch(args, stream)); });
      if (ms)
        placementMs[i] = *ms;
      else
        report.problem(name + " " + shape.label +
                       (i ? " int8: " : " on load: ") + ms.error());
    }
    launcher.setPlacement(lq::cuda::Placement::Auto);
  }
  std::array<double, 3> base = baselines.of(shape);
  auto cell = [&](double ms) {
    return ms > 0 ? fixed(tflops(shape, ms), 1) : std::string("n/a");
  };
  auto ratio = [&](double ms) {
    return ms > 0 ? fixed(ms / *fused, 2) + "x" : std::string("n/a");
  };
  // The tile and placement the launcher picked for this shape.
  auto choice = launcher.chooseGemm(args);
  std::string kernel = choice ? choice->kernel : choice.error();
  std::string mnk = std::to_string(shape.m) + " x " + std::to_string(shape.n) +
                    " x " + std::to_string(shape.k);
  report.gemmRows += "| " + name + " (" + kernel + ") | " + shape.label +
                     " | " + mnk + " | " + fixed(*fused, 3) + " | " +
                     cell(*fused) + " | " +
                     (placementMs[0] > 0 ? fixed(placementMs[0], 3) : "n/a") +
                     " | " +
                     (placementMs[1] > 0 ? fixed(placementMs[1], 3) : "n/a") +
                     " | " +
                     (unfusedMs > 0 ? fixed(unfusedMs, 3) : "n/a") + " | " +
                     ratio(unfusedMs) + " | " + cell(base[0]) + " | " +
                     ratio(base[0]) + " | " + cell(base[1]) + " | " +
                     ratio(base[1]) + " | " + cell(base[2]) + " | " +
                     ratio(base[2]) + " |\n";
  report.gemmJson.push_back(
      "{\"module\": " + jsonString(name) + ", \"kernel\": " +
      jsonString(kernel) + ", \"workload\": " + jsonString(shape.label) +
      ", \"m\": " + std::to_string(shape.m) + ", \"n\": " +
      std::to_string(shape.n) + ", \"k\": " + std::to_string(shape.k) +
      ", \"fused_ms\": " + jsonMs(*fused) + ", \"onload_ms\": " +
      jsonMs(placementMs[0]) + ", \"int8_ms\": " + jsonMs(placementMs[1]) +
      ", \"fused_tflops\": " +
      fixed(tflops(shape, *fused), 2) + ", \"unfused_ms\": " +
      jsonMs(unfusedMs) + ", \"cublas_bf16_ms\": " + jsonMs(base[0]) +
      ", \"cublaslt_fp8_ms\": " + jsonMs(base[1]) +
      ", \"cublaslt_int8_ms\": " + jsonMs(base[2]) + "}");
  std::printf("%s %s: %.3f ms\n", name.c_str(), shape.label.c_str(), *fused);
}

/// Quantizer bandwidth of the module's float operands (bytes read and
/// written, the statistics pass's second read not counted) against a copy.
void measureQuantizers(const LoadedModule &module, const Inputs &in,
                       int64_t side, double copyGbs, const Settings &settings,
                       Report &report) {
  const GemmSpec &spec = module.first.info.spec;
  const std::string &name = module.first.name;
  for (auto [operand, which] : {std::pair(lq::cuda::Operand::Lhs, "lhs"),
                                std::pair(lq::cuda::Operand::Rhs, "rhs")}) {
    const lq::OperandSpec &op =
        operand == lq::cuda::Operand::Lhs ? spec.lhs : spec.rhs;
    if (op.dtype == DType::Packed4 ||
        (module.first.info.quantizeOnly && operand == lq::cuda::Operand::Rhs))
      continue;
    lq::QuantizeArgs qa;
    qa.input = deviceRef(op.dtype == DType::BF16 ? in.aBf16 : in.aF32,
                         op.dtype, side, side);
    qa.output = deviceRef(in.packedA, DType::Packed4, side, side);
    qa.format = op.format;
    auto t = medianMs(settings, [&, operand = operand] {
      return status(module.second->quantize(qa, stream, operand));
    });
    if (!t) {
      report.problem(name + " quantizer of " + which + ": " + t.error());
      continue;
    }
    double bytes = double(side) * double(side) *
                       (op.dtype == DType::BF16 ? 2.0 : 4.0) +
                   double(side) * double((side + 1) / 2);
    double gbs = bytes / (*t * 1e-3) / 1e9;
    std::string what = name + " quantizer of " + which + " (" +
                       lq::formatName(op.format) + ", " +
                       std::to_string(side) + "^2)";
    report.bandwidthRows += "| " + what + " | " + fixed(bytes, 0) + " | " +
                            fixed(*t, 3) + " | " + fixed(gbs, 0) + " | " +
                            (copyGbs > 0 ? fixed(gbs / copyGbs, 2) : "n/a") +
                            " |\n";
    report.bandwidthJson.push_back(
        "{\"what\": " + jsonString(what) + ", \"bytes\": " + fixed(bytes, 0) +
        ", \"ms\": " + jsonMs(*t) + ", \"gbs\": " + fixed(gbs, 1) + "}");
  }
}

/// Device-to-device copy bandwidth (each byte read and written), in GB/s;
/// 0 when the copy fails.
double measureCopy(const Inputs &in, size_t bytes, const Settings &settings,
                   Report &report) {
  auto copy = medianMs(settings, [&] {
    return status(cuda->copyOnDevice(in.out.address(), in.aF32.address(),
                                     bytes, stream));
  });
  if (!copy) {
    report.problem("copy bandwidth: " + copy.error());
    return 0;
  }
  double gbs = 2.0 * double(bytes) / (*copy * 1e-3) / 1e9;
  report.bandwidthRows += "| cuMemcpyDtoD | " + std::to_string(2 * bytes) +
                          " | " + fixed(*copy, 3) + " | " + fixed(gbs, 0) +
                          " | 1.00 |\n";
  report.bandwidthJson.push_back(
      "{\"what\": \"cuMemcpyDtoD\", \"bytes\": " + std::to_string(2 * bytes) +
      ", \"ms\": " + jsonMs(*copy) + ", \"gbs\": " + fixed(gbs, 1) + "}");
  return gbs;
}

//===----------------------------------------------------------------------===//
// Setup
//===----------------------------------------------------------------------===//

/// Every module of the pack (of --chip) the device runs, assembled on
/// every core first; a module that fails is a problem and left out.
std::vector<LoadedModule> loadModules(std::vector<lq::cuda::PackModule> &pack,
                                      const lq::cuda::DeviceInfo &device,
                                      const Settings &settings,
                                      Report &report) {
  std::vector<lq::cuda::PackModule *> wanted;
  for (lq::cuda::PackModule &m : pack)
    if ((settings.chip.empty() || lq::cuda::chipName(m.info) == settings.chip) &&
        lq::cuda::deviceArch(m.info, device))
      wanted.push_back(&m);
  std::vector<std::optional<Result<std::string>>> images(wanted.size());
  if (settings.loading == lq::cuda::PtxLoading::Assemble)
    parallelFor(wanted.size(), settings.jobs, [&](size_t i) {
      images[i] = lq::cuda::assemblePackModule(*wanted[i], device);
    });
  std::vector<LoadedModule> loaded;
  for (size_t i = 0; i < wanted.size(); ++i) {
    lq::cuda::PackModule &m = *wanted[i];
    using R = Result<std::unique_ptr<GpuLauncher>>;
    R launcher = !images[i]        ? GpuLauncher::load(m.ptx, m.info)
                 : images[i]->ok() ? GpuLauncher::load(**images[i], m.info)
                                   : R::failure(images[i]->error());
    if (!launcher) {
      report.problem(m.name + " left out: " + launcher.error());
      continue;
    }
    loaded.emplace_back(std::move(m), std::move(*launcher));
  }
  return loaded;
}

std::optional<Settings> parseSettings(int argc, char **argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool value = i + 1 < argc;
    if (arg == "--pack" && value)
      settings.pack = argv[++i];
    else if (arg == "--out" && value)
      settings.out = argv[++i];
    else if (arg == "--json" && value)
      settings.json = argv[++i];
    else if (arg == "--chip" && value)
      settings.chip = argv[++i];
    else if (arg == "--iters" && value)
      settings.iters = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--warmup" && value)
      settings.warmup = std::max(0, std::atoi(argv[++i]));
    else if (arg == "--jobs" && value)
      settings.jobs = unsigned(std::max(1, std::atoi(argv[++i])));
    else if (arg == "--quick")
      settings.quick = true;
    else if (arg == "--driver-jit")
      settings.loading = lq::cuda::PtxLoading::DriverJit;
    else
      return std::nullopt;
  }
  return settings;
}

/// The Markdown and JSON headers: device, driver, assembler, pack, method.
void describeRun(const lq::cuda::DeviceInfo &device, const Settings &settings,
                 Report &report) {
  auto version = cuda->driverVersion();
  auto assembler = lq::cuda::ptxCompilerIdentity();
  auto stamp = lq::cuda::readPackStamp(settings.pack);
  std::string driver = version ? std::to_string(*version) : version.error();
  std::string assembled = assembler ? *assembler : assembler.error();
  std::string pack = stamp ? "commit " + stamp->commit + " (uncommitted "
                             "changes: " + stamp->dirty + "), made " +
                                 stamp->date
                           : stamp.error();
  std::string cc = std::to_string(device.computeMajor) + "." +
                   std::to_string(device.computeMinor);
  report.header =
      "# lq GPU GEMMs\n\nDevice: " + device.name + " (compute capability " +
      cc + ", " + std::to_string(device.multiprocessors) + " SMs), driver " +
      driver + ", PTX assembled by " + assembled + ". Pack: " + pack +
      ". Median of " + std::to_string(settings.iters) + " runs after " +
      std::to_string(settings.warmup) + " warm-up runs; TFLOP/s count "
      "2MNK. A fused launch includes its statistics pass. A speedup is the "
      "other's time over the fused GEMM's.\n\n";
  report.jsonHeader =
      "  \"device\": " + jsonString(device.name) +
      ",\n  \"compute_capability\": " + jsonString(cc) +
      ",\n  \"multiprocessors\": " + std::to_string(device.multiprocessors) +
      ",\n  \"driver\": " + jsonString(driver) + ",\n  \"assembler\": " +
      jsonString(assembled) + ",\n  \"pack\": " + jsonString(pack) +
      ",\n  \"iters\": " + std::to_string(settings.iters) +
      ",\n  \"warmup\": " + std::to_string(settings.warmup) +
      ",\n  \"quick\": " + (settings.quick ? "true" : "false") + ",\n";
}

/// The device, its context and the bench stream; 77 when there is no
/// device (the caller's exit status), 0 when all is set.
int openDevice(std::optional<lq::cuda::DeviceInfo> &device) {
  auto driver = CudaDriver::get();
  if (!driver) {
    std::printf("SKIPPED: %s\n", driver.error().c_str());
    return 77;
  }
  cuda = *driver;
  auto context = cuda->usePrimaryContext(0);
  auto created = context ? cuda->createStream()
                         : Result<CUstream>::failure(context.error());
  auto info = created ? cuda->currentDevice()
                      : Result<lq::cuda::DeviceInfo>::failure(created.error());
  if (!info) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n", info.error().c_str());
    return 1;
  }
  stream = *created;
  device = *info;
  return 0;
}

/// Measures every float GEMM module and quantizer; a failure is a problem
/// of the report, and the run goes on.
void measureAll(std::vector<LoadedModule> &loaded, const Settings &settings,
                Report &report) {
  int64_t maxElements = 0;
  unsigned maxSamples = 1;
  for (const auto &[module, launcher] : loaded) {
    maxSamples = std::max(maxSamples, module.info.spec.samples);
    for (const Shape &s : shapesFor(roleOf(module.info.spec), settings.quick))
      maxElements = std::max({maxElements, s.m * s.k, s.k * s.n, s.m * s.n});
  }
  auto inputs = makeInputs(maxElements, maxSamples);
  if (!inputs)
    return report.problem("device inputs: " + inputs.error());
  auto cublas = Cublas::open();
  auto lt = CublasLt::open();
  if (!cublas)
    report.note("cuBLAS BF16 baseline left out: " + cublas.error());
  if (!lt)
    report.note("cuBLASLt FP8/INT8 baselines left out: " + lt.error());
  Baselines baselines{settings, *inputs, report,
                      cublas ? cublas->get() : nullptr,
                      lt ? lt->get() : nullptr, {}};
  for (const LoadedModule &module : loaded) {
    const GemmSpec &spec = module.first.info.spec;
    if (module.first.info.quantizeOnly || spec.lhs.dtype == DType::Packed4 ||
        spec.rhs.dtype == DType::Packed4)
      continue;
    GpuLauncher *twin = packedTwin(loaded, lq::cuda::chipName(module.first.info), spec);
    for (const Shape &shape : shapesFor(roleOf(spec), settings.quick))
      measureGemm(module, twin, shape, *inputs, settings, baselines, report);
    if (std::string error = report.write(settings, false); !error.empty())
      report.problem(error);
  }
  double copyGbs =
      measureCopy(*inputs, size_t(maxElements) * 4, settings, report);
  int64_t side = int64_t(std::sqrt(double(maxElements)));
  for (const LoadedModule &module : loaded)
    measureQuantizers(module, *inputs, side, copyGbs, settings, report);
}

} // namespace

int main(int argc, char **argv) {
  // A line per measurement as it is made, also into a pipe.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::optional<Settings> settings = parseSettings(argc, argv);
  if (!settings) {
    std::fprintf(stderr, "usage: lq-gpu-bench [--pack DIR] [--out FILE.md] "
                         "[--json FILE] [--chip sm_80|sm_90a] [--iters N] "
                         "[--warmup N] [--jobs N] [--quick] [--driver-jit]\n");
    return 2;
  }
  std::optional<lq::cuda::DeviceInfo> device;
  if (int status = openDevice(device); status != 0)
    return status;
  auto pack = lq::cuda::readPack(settings->pack);
  if (!pack) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n", pack.error().c_str());
    return 1;
  }
  Report report;
  describeRun(*device, *settings, report);
  std::vector<LoadedModule> loaded =
      loadModules(*pack, *device, *settings, report);
  if (loaded.empty())
    report.problem("no module of the pack runs on " + device->name);
  else
    measureAll(loaded, *settings, report);
  std::printf("\n%s", report.markdown(true).c_str());
  if (std::string error = report.write(*settings, true); !error.empty()) {
    std::fprintf(stderr, "lq-gpu-bench: %s\n", error.c_str());
    return 1;
  }
  if (!report.problems.empty()) {
    std::printf("lq-gpu-bench: %zu problem(s), listed above and in the "
                "report\n", report.problems.size());
    return 1;
  }
  return 0;
}
