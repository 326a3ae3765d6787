//===- lq-gpu-test.cpp - generated GPU kernels against the numerics core --===//
//
// Plain C++ with no LLVM and no GoogleTest, so that it builds and runs on GPU
// machines that have only the CUDA toolkit.
//
//   lq-gpu-test --toolchain   module info, pack stamps, PTX assembly
//                             (nvJitLink and ptxas) and ptxas resource
//                             reports; no GPU
//   lq-gpu-test --driver      the driver wrapper on a hand-written kernel
//   lq-gpu-test [--quick] [--driver-jit] [--chip CHIP] [--module NAME]
//               [--seed N] [--jobs N] PACK
//                             every module of a kernel pack (or those of
//                             one chip, or one module): ptxas must assemble
//                             it without spills, nvJitLink for its chip and
//                             for a 9.0 device; then, on a GPU, every launch
//                             must reproduce the numerics core bit for bit
//                             (codes, scales, outputs, status)
//   lq-gpu-test --static ... PACK    the same without a GPU: the checks
//                             before the first device call
//   lq-gpu-test --sass ... PACK  the instruction mix (cuobjdump -sass) of
//                             one GEMM kernel per chip: tensor-core, shared
//                             memory, copy and local-memory instructions
//   lq-gpu-test --sanitize ... PACK  a few small launches of each GEMM
//                             module (fused GEMM with TMA or cp.async, the
//                             quantize-once placement, unaligned copies):
//                             short enough for compute-sanitizer
//
// Each case prints a PASS or FAIL line as it finishes. Exit status: 0 when
// everything passed, 1 on any failure, 77 when the GPU part (or the pack)
// is missing and nothing failed before.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"
#include "lq/Runtime/CudaDriver.h"
#include "lq/Spec/GpuAbi.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/ParallelFor.h"
#include "lq/Runtime/PtxCompiler.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace num = lq::numerics;
using lq::DType;
using lq::Format;
using lq::GemmSpec;
using lq::cuda::CudaDriver;
using lq::cuda::DeviceBuffer;
using lq::cuda::GpuLauncher;

using lq::parallelFor;

namespace {

constexpr int kSkipped = 77;

//===----------------------------------------------------------------------===//
// Cases
//===----------------------------------------------------------------------===//

int passed = 0, failed = 0;

/// One named check group: prints PASS or FAIL (with the first failed
/// checks) when it goes out of scope.
class Case {
public:
  explicit Case(std::string name) : name(std::move(name)) {}
  Case(const Case &) = delete;
  Case &operator=(const Case &) = delete;
  ~Case() {
    if (problems.empty()) {
      ++passed;
      std::printf("PASS %s\n", name.c_str());
      for (const std::string &n : notes)
        std::printf("     %s\n", n.c_str());
    } else {
      ++failed;
      std::printf("FAIL %s\n", name.c_str());
      for (const std::string &p : problems)
        std::printf("     %s\n", p.c_str());
      if (more > 0)
        std::printf("     (%d more)\n", more);
      for (const std::string &n : notes)
        std::printf("     %s\n", n.c_str());
    }
    std::fflush(stdout);
  }

  bool check(bool ok, const char *expr, int line, const std::string &detail) {
    if (!ok) {
      if (problems.size() < 8)
        problems.push_back("line " + std::to_string(line) + ": " + expr +
                           (detail.empty() ? "" : " -- " + detail));
      else
        ++more;
    }
    return ok;
  }
  /// Lines printed under the result (what was found or used).
  void note(const std::string &text) {
    for (size_t begin = 0; begin < text.size();) {
      size_t end = std::min(text.find('\n', begin), text.size());
      notes.push_back(text.substr(begin, end - begin));
      begin = end + 1;
    }
  }

private:
  std::string name;
  std::vector<std::string> problems, notes;
  int more = 0;
};

#define CHECK(c, cond) (c).check(bool(cond), #cond, __LINE__, "")
#define CHECK_MSG(c, cond, detail) (c).check(bool(cond), #cond, __LINE__, (detail))
#define CHECK_OK(c, result) checkOk((c), (result), #result, __LINE__)

/// A Result must hold a value; its error is the detail otherwise.
template <typename T>
bool checkOk(Case &c, const lq::Result<T> &result, const char *expr, int line) {
  return c.check(result.ok(), expr, line,
                 result.ok() ? std::string() : result.error());
}

std::string bitsText(float v) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.9g (0x%08x)", double(v),
                unsigned(num::floatToBits(v)));
  return text;
}

/// Same bits (NaN payloads are outside the contract: any NaN equals any).
bool sameBits(float a, float b) {
  return num::floatToBits(a) == num::floatToBits(b) ||
         (std::isnan(a) && std::isnan(b));
}
#define CHECK_BITS(c, a, b)                                                    \
  CHECK_MSG(c, sameBits(a, b), bitsText(a) + " vs " + bitsText(b))

//===----------------------------------------------------------------------===//
// Toolchain: module info, PTX assembly, ptxas reports
//===----------------------------------------------------------------------===//

/// y[i] = a * x[i] + y[i] for i < n; one thread per element.
const char *kAxpyPtx = R"ptx(
.version 7.0
.target sm_80
.address_size 64

.visible .entry lq_test_axpy(.param .u64 x, .param .u64 y, .param .f32 a,
                             .param .u32 n)
{
  .reg .pred p;
  .reg .b32 r<6>;
  .reg .f32 f<4>;
  .reg .b64 rd<8>;
  ld.param.u64 rd1, [x];
  ld.param.u64 rd2, [y];
  ld.param.f32 f1, [a];
  ld.param.u32 r1, [n];
  mov.u32 r2, %ctaid.x;
  mov.u32 r3, %ntid.x;
  mov.u32 r4, %tid.x;
  mad.lo.s32 r5, r2, r3, r4;
  setp.ge.u32 p, r5, r1;
  @p bra done;
  cvta.to.global.u64 rd3, rd1;
  cvta.to.global.u64 rd4, rd2;
  mul.wide.u32 rd5, r5, 4;
  add.s64 rd6, rd3, rd5;
  add.s64 rd7, rd4, rd5;
  ld.global.f32 f2, [rd6];
  ld.global.f32 f3, [rd7];
  fma.rn.f32 f3, f1, f2, f3;
  st.global.f32 [rd7], f3;
done:
  ret;
}

.visible .entry lq_test_stack(.param .u64 out, .param .u32 i)
{
  .local .align 4 .b8 buf[64];
  .shared .align 4 .b8 sh[256];
  .reg .b32 r<4>;
  .reg .b64 rd<6>;
  ld.param.u64 rd1, [out];
  ld.param.u32 r1, [i];
  mov.u64 rd2, buf;
  cvta.local.u64 rd2, rd2;
  and.b32 r1, r1, 15;
  mul.wide.u32 rd3, r1, 4;
  add.s64 rd4, rd2, rd3;
  st.u32 [rd4], r1;
  mov.u32 r2, %tid.x;
  st.shared.u32 [sh], r2;
  ld.u32 r3, [rd2+8];
  cvta.to.global.u64 rd5, rd1;
  st.global.u32 [rd5], r3;
  ret;
}
)ptx";

bool isElf(const std::string &bytes) {
  return bytes.size() > 4 && bytes.compare(0, 4, "\x7f" "ELF") == 0;
}

void testModuleInfo() {
  {
    Case c("module info: write then parse gives the same module");
    lq::cuda::GpuModuleInfo info;
    info.spec = GemmSpec::backwardData(DType::BF16, 4);
    info.spec.hindsight = true;
    info.spec.bias = true;
    info.spec.relu = true;
    info.spec.output = DType::BF16;
    info.spec.target = lq::Target::CudaSm90a;
    info.tiles = {{64, 64, 64, 3, 128, 40960}, {128, 256, 64, 4, 256, 196608}};
    std::string text = lq::cuda::writeModuleInfo(info);
    auto parsed = lq::cuda::parseModuleInfo(text);
    if (CHECK_OK(c, parsed)) {
      CHECK_MSG(c, parsed->spec.describe() == info.spec.describe(),
                parsed->spec.describe());
      CHECK(c, parsed->spec.target == lq::Target::CudaSm90a);
      CHECK(c, !parsed->quantizeOnly);
      CHECK(c, parsed->tiles.size() == 2);
      CHECK(c, parsed->tiles.size() == 2 && parsed->tiles[1].bn == 256 &&
                   parsed->tiles[1].smemBytes == 196608 &&
                   parsed->tiles[0].stages == 3);
      CHECK(c, lq::cuda::writeModuleInfo(*parsed) == text);
    }
    // A launcher of an sm_90a module needs the TMA GEMM of every tile; one
    // of an sm_80 module has none to ask for.
    std::vector<std::string> required = lq::cuda::requiredKernels(info);
    for (const auto &t : info.tiles)
      CHECK_MSG(c,
                std::count(required.begin(), required.end(),
                           lq::cuda::gemmTmaKernel(t)) == 1,
                "sm_90a: " + lq::cuda::gemmTmaKernel(t) + " not required");
    lq::cuda::GpuModuleInfo sm80 = info;
    sm80.spec.target = lq::Target::CudaSm80;
    for (const std::string &k : lq::cuda::requiredKernels(sm80))
      CHECK_MSG(c, k.find("_tma") == std::string::npos,
                "sm_80 requires " + k);
    lq::cuda::GpuModuleInfo quant;
    quant.spec.target = lq::Target::CudaSm80;
    quant.quantizeOnly = true;
    quant.spec.lhs = {Format::SInt4, DType::F32, false};
    auto q = lq::cuda::parseModuleInfo(lq::cuda::writeModuleInfo(quant));
    if (CHECK_OK(c, q)) {
      CHECK(c, q->quantizeOnly && q->tiles.empty());
      CHECK(c, q->spec.target == lq::Target::CudaSm80);
    }
  }
  Case c("module info: every malformed text is an error naming the problem");
  lq::cuda::GpuModuleInfo info;
  info.spec = GemmSpec::forward();
  info.spec.target = lq::Target::CudaSm80;
  info.tiles = {{64, 64, 64, 3, 128, 32768}};
  std::string good = lq::cuda::writeModuleInfo(info);
  auto replace = [&](const std::string &from, const std::string &to) {
    std::string text = good;
    size_t at = text.find(from);
    return at == std::string::npos ? text
                                   : text.replace(at, from.size(), to);
  };
  // Both operands log4: a spec the GEMM rules reject.
  std::string log4Twice = replace("rhs=sint4 f32 t", "rhs=log4 f32 t");
  log4Twice.replace(log4Twice.find("lhs=sint4"), 9, "lhs=log4 ");
  std::string abiLine = "abi=" + std::to_string(lq::cuda::kAbiVersion);
  std::string otherAbi = "abi=" + std::to_string(lq::cuda::kAbiVersion + 1);
  struct Bad {
    std::string text, expected;
  } bad[] = {
      {"", "empty"},
      {replace(abiLine + "\n", ""), "first line must be abi"},
      {replace(abiLine, otherAbi), "ABI version " + otherAbi.substr(4)},
      {good + "colour=blue\n", "unknown key 'colour'"},
      {good + "relu=1\n", "repeated key 'relu'"},
      {replace("relu=0\n", ""), "lacks relu"},
      {replace("samples=1", "samples=x"), "bad value 'x' for samples"},
      {replace("chip=sm_80", "chip=sm_75"), "bad value 'sm_75' for chip"},
      {log4Twice, "at most one GEMM operand may be log4"},
      {replace("tile=64 64 64 3 128 32768\n", ""), "at least one tile"},
      {replace("tile=64 64 64 3 128 32768", "tile=64 64 64 3 128"),
       "bad value"},
      {replace("lhs=sint4 f32 n", "lhs=sint4 f32"), "bad value"},
      {replace("relu=0", "relu"), "expected key=value"},
  };
  for (const Bad &b : bad) {
    auto parsed = lq::cuda::parseModuleInfo(b.text);
    CHECK_MSG(c, !parsed.ok(), "accepted: " + b.text);
    if (!parsed.ok())
      CHECK_MSG(c, parsed.error().find(b.expected) != std::string::npos,
                "'" + parsed.error() + "' lacks '" + b.expected + "'");
  }
}

/// A scratch directory, removed with what the test wrote into it.
struct ScratchDir {
  std::string path;
  std::vector<std::string> files;
  ScratchDir() {
    const char *base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base && *base ? base : "/tmp") + "/lq-gpu-test-XXXXXX";
    if (mkdtemp(pattern.data()))
      path = pattern;
  }
  ~ScratchDir() {
    for (const std::string &f : files)
      std::remove((path + "/" + f).c_str());
    if (!path.empty())
      rmdir(path.c_str());
  }
  void write(const std::string &name, const std::string &text) {
    std::ofstream(path + "/" + name) << text;
    files.push_back(name);
  }
};

void testPackStamp() {
  lq::cuda::PackStamp stamp;
  stamp.commit = "0123456789abcdef0123456789abcdef01234567";
  stamp.dirty = "1";
  stamp.abi = lq::cuda::kAbiVersion;
  stamp.chips = {"sm_90a", "sm_80"};
  stamp.date = "2025-01-31T12:00:00Z";
  std::string good = lq::cuda::writePackStamp(stamp);
  {
    Case c("pack stamp: write then parse gives the same stamp");
    auto parsed = lq::cuda::parsePackStamp(good);
    if (CHECK_OK(c, parsed)) {
      CHECK(c, parsed->commit == stamp.commit && parsed->dirty == "1");
      CHECK(c, parsed->abi == stamp.abi && parsed->chips == stamp.chips);
      CHECK(c, lq::cuda::writePackStamp(*parsed) == good);
    }
  }
  Case c("pack stamp: a missing, malformed or other-ABI STAMP is an error");
  auto replace = [&](const std::string &from, const std::string &to) {
    std::string text = good;
    size_t at = text.find(from);
    return at == std::string::npos ? text : text.replace(at, from.size(), to);
  };
  struct Bad {
    std::string text, expected;
  } bad[] = {
      {replace("dirty=1\n", ""), "lacks dirty"},
      {good + "dirty=0\n", "repeated key 'dirty'"},
      {good + "colour=blue\n", "unknown key 'colour'"},
      {replace("dirty=1", "dirty=maybe"), "bad value 'maybe' for dirty"},
      {replace("chips=sm_90a", "chips=sm_75"), "bad chip 'sm_75'"},
      {replace("commit=0123", "commit=xyz"), "for commit"},
      {replace("date=2025", "date"), "expected key=value"},
  };
  for (const Bad &b : bad) {
    auto parsed = lq::cuda::parsePackStamp(b.text);
    CHECK_MSG(c, !parsed.ok(), "accepted: " + b.text);
    if (!parsed.ok())
      CHECK_MSG(c, parsed.error().find(b.expected) != std::string::npos,
                "'" + parsed.error() + "' lacks '" + b.expected + "'");
  }
  ScratchDir dir;
  if (!CHECK_MSG(c, !dir.path.empty(), "no scratch directory"))
    return;
  auto missing = lq::cuda::readPackStamp(dir.path);
  CHECK_MSG(c, !missing.ok() && missing.error().find("has no STAMP") !=
                                    std::string::npos,
            missing.ok() ? "accepted" : missing.error());
  std::string otherAbi = std::to_string(lq::cuda::kAbiVersion + 1);
  dir.write("STAMP", replace("abi=" + std::to_string(stamp.abi),
                             "abi=" + otherAbi));
  auto other = lq::cuda::readPackStamp(dir.path);
  CHECK_MSG(c, !other.ok() && other.error().find("made for GPU ABI " + otherAbi) !=
                                  std::string::npos,
            other.ok() ? "accepted" : other.error());
  dir.write("STAMP", good);
  CHECK_OK(c, lq::cuda::readPackStamp(dir.path));
}

void testPtxAssembly() {
  std::vector<lq::cuda::PtxAssembler> assemblers = {lq::cuda::PtxAssembler::Ptxas};
  {
    Case c("nvJitLink: loads, or its absence is explained");
    auto identity = lq::cuda::assemblerIdentity(lq::cuda::PtxAssembler::NvJitLink);
    if (identity.ok()) {
      assemblers.push_back(lq::cuda::PtxAssembler::NvJitLink);
      CHECK_MSG(c, identity->rfind("nvJitLink ", 0) == 0, *identity);
      c.note(*identity);
    } else {
      CHECK_MSG(c, identity.error().find("nvJitLink") != std::string::npos,
                identity.error());
      c.note("not available: " + identity.error());
    }
  }
  {
    Case c("ptxas: found, identity from --version");
    auto identity = lq::cuda::assemblerIdentity(lq::cuda::PtxAssembler::Ptxas);
    if (CHECK_OK(c, identity)) {
      CHECK_MSG(c, identity->rfind("ptxas ", 0) == 0 && identity->size() > 6,
                *identity);
      c.note(*identity);
    }
    auto fallback = lq::cuda::ptxCompilerIdentity();
    CHECK_OK(c, fallback);
  }
  for (lq::cuda::PtxAssembler assembler : assemblers) {
    const char *name =
        assembler == lq::cuda::PtxAssembler::Ptxas ? "ptxas" : "nvJitLink";
    for (const char *arch : {"sm_80", "sm_90a"}) {
      Case c(std::string(name) + ": hand-written PTX to a " + arch + " cubin");
      auto cubin = lq::cuda::compilePtx(kAxpyPtx, arch, assembler);
      if (CHECK_OK(c, cubin))
        CHECK_MSG(c, isElf(*cubin), "not an ELF image");
    }
    Case c(std::string(name) + ": a PTX error comes back with the log");
    std::string broken = kAxpyPtx;
    broken.replace(broken.find("fma.rn.f32"), 10, "fma.xx.f32");
    auto cubin = lq::cuda::compilePtx(broken, "sm_80", assembler);
    CHECK(c, !cubin.ok());
    if (!cubin.ok()) {
      CHECK_MSG(c, cubin.error().find(".xx") != std::string::npos,
                cubin.error());
      c.note(cubin.error().substr(0, cubin.error().find('\n', 200)));
    }
  }
  Case c("compilePtx: an invalid architecture is an error");
  for (const char *arch : {"sm80", "sm_8", "compute_80", "sm_80x", ""}) {
    auto cubin = lq::cuda::compilePtx(kAxpyPtx, arch);
    CHECK_MSG(c, !cubin.ok() && cubin.error().find("invalid GPU architecture") !=
                                    std::string::npos,
              arch);
  }
}

void testPtxasReport() {
  {
    Case c("ptxas report: registers, stack and shared memory per kernel");
    auto report = lq::cuda::ptxasReport(kAxpyPtx, "sm_80");
    if (CHECK_OK(c, report)) {
      const lq::cuda::KernelResources *axpy = nullptr, *stack = nullptr;
      for (const auto &k : report->kernels) {
        if (k.name == "lq_test_axpy")
          axpy = &k;
        if (k.name == "lq_test_stack")
          stack = &k;
      }
      CHECK_MSG(c, report->kernels.size() == 2, report->log);
      if (CHECK(c, axpy && stack)) {
        CHECK(c, axpy->registers > 0 && axpy->registers < 64);
        CHECK(c, axpy->stackBytes == 0 && axpy->sharedBytes == 0);
        CHECK(c, axpy->spillStores == 0 && axpy->spillLoads == 0);
        CHECK_MSG(c, stack->stackBytes == 64, report->log);
        CHECK_MSG(c, stack->sharedBytes == 256, report->log);
      }
    }
  }
  {
    Case c("ptxas report: spills and local memory in a log are parsed");
    const char *log =
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'lq_gemm_64x64_vec' for "
        "'sm_80'\n"
        "ptxas info    : Function properties for lq_gemm_64x64_vec\n"
        "    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill "
        "loads\n"
        "ptxas info    : Used 255 registers, 48 bytes lmem, 40960 bytes "
        "smem, 392 bytes cmem[0]\n"
        "ptxas info    : Function properties for lq_philox_block\n"
        "    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
        "ptxas info    : Compiling entry function 'lq_stats_lhs' for "
        "'sm_80'\n"
        "ptxas info    : Function properties for lq_stats_lhs\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 18 registers, used 1 barriers, 64 bytes smem, "
        "380 bytes cmem[0]\n";
    auto kernels = lq::cuda::parsePtxasLog(log);
    if (CHECK(c, kernels.size() == 2)) {
      const auto &g = kernels[0];
      CHECK(c, g.name == "lq_gemm_64x64_vec");
      CHECK(c, g.registers == 255 && g.stackBytes == 48);
      CHECK(c, g.spillStores == 40 && g.spillLoads == 36);
      CHECK(c, g.localBytes == 48 && g.sharedBytes == 40960);
      const auto &s = kernels[1];
      CHECK(c, s.name == "lq_stats_lhs" && s.registers == 18);
      CHECK(c, s.sharedBytes == 64 && s.spillStores == 0 && s.stackBytes == 0);
    }
  }
  Case c("ptxas report: a PTX error fails with the log");
  std::string broken = kAxpyPtx;
  broken.replace(broken.find("ret;"), 4, "ret");
  auto report = lq::cuda::ptxasReport(broken, "sm_90a");
  CHECK(c, !report.ok());
  if (!report.ok())
    CHECK_MSG(c, report.error().find("ptxas -arch=sm_90a -v") != std::string::npos,
              report.error());
}

//===----------------------------------------------------------------------===//
// Device memory
//===----------------------------------------------------------------------===//

CudaDriver *cuda = nullptr;
CUstream stream = nullptr;

/// What device memory holds where no kernel may write: NaN in f32 and bf16,
/// so that a kernel that reads it by mistake also shows.
constexpr unsigned char kPoison = 0xFF;
constexpr size_t kGuardBytes = 64;

using lq::elementBytes;

/// A 2-D tensor in device memory with poisoned guard bytes before, between
/// (row pitch) and after its elements. `pitched` rows start on 16-byte
/// boundaries (the `vec` kernels' layout); otherwise the base is one
/// element off 16 bytes and rows are one element longer than needed.
struct DeviceTensor {
  DeviceBuffer buffer;
  lq::TensorRef ref;
  size_t offset = 0, rowBytes = 0, pitchBytes = 0;
  std::vector<unsigned char> image;

  static lq::Result<DeviceTensor> make(DType dtype, int64_t rows,
                                       int64_t cols, bool pitched) {
    DeviceTensor t;
    size_t eb = elementBytes(dtype);
    t.rowBytes = dtype == DType::Packed4 ? size_t(cols + 1) / 2
                                         : size_t(cols) * eb;
    t.pitchBytes = pitched ? std::max<size_t>(16, (t.rowBytes + 15) / 16 * 16)
                           : t.rowBytes + eb;
    t.offset = kGuardBytes + (pitched ? 0 : eb);
    size_t size = t.offset + size_t(rows) * t.pitchBytes + kGuardBytes;
    auto buffer = DeviceBuffer::allocate(size);
    if (!buffer)
      return lq::Result<DeviceTensor>::failure(buffer.error());
    t.buffer = std::move(*buffer);
    t.ref = {reinterpret_cast<void *>(t.buffer.address() + t.offset), dtype,
             rows, cols, int64_t(t.pitchBytes / eb), lq::Device::CUDA};
    t.image.assign(size, kPoison);
    return t;
  }

  /// A view of rows [first, first + count) (stacked SMP samples).
  lq::TensorRef rowsView(int64_t first, int64_t count) const {
    lq::TensorRef view = ref;
    view.data = static_cast<char *>(ref.data) + first * pitchBytes;
    view.rows = count;
    return view;
  }

  /// Writes tightly packed rows (rowBytes each) into the image and uploads
  /// it, guards included.
  std::string upload(const void *rows) {
    for (int64_t r = 0; r < ref.rows; ++r)
      std::memcpy(&image[offset + r * pitchBytes],
                  static_cast<const char *>(rows) + r * rowBytes, rowBytes);
    return push();
  }
  /// Poisons every byte, elements included: outputs before a launch.
  std::string poison() {
    std::fill(image.begin(), image.end(), kPoison);
    return push();
  }

  /// Downloads everything; the tight rows go to `rows`. Returns how many
  /// guard bytes changed.
  size_t download(void *rows, std::string &error) {
    std::vector<unsigned char> now(image.size());
    error = sync(cuda->copyToHost(now.data(), buffer.address(), now.size(),
                                  stream));
    size_t clobbered = 0;
    for (size_t i = 0; i < now.size(); ++i) {
      size_t inRow = i >= offset ? (i - offset) % pitchBytes : pitchBytes;
      bool element = i >= offset &&
                     i < offset + size_t(ref.rows) * pitchBytes &&
                     inRow < rowBytes;
      if (element)
        static_cast<unsigned char *>(rows)[(i - offset) / pitchBytes *
                                               rowBytes +
                                           inRow] = now[i];
      else
        clobbered += now[i] != kPoison;
    }
    return clobbered;
  }

private:
  std::string push() {
    return sync(cuda->copyToDevice(buffer.address(), image.data(),
                                   image.size(), stream));
  }
  static std::string sync(const lq::Status &copy) {
    if (!copy)
      return copy.error();
    auto done = cuda->synchronize(stream);
    return done ? "" : done.error();
  }
};

//===----------------------------------------------------------------------===//
// Driver: a hand-written kernel
//===----------------------------------------------------------------------===//

void testDriver() {
  Case c("driver: PTX assembled for the device runs; pointers and events");
  auto device = cuda->currentDevice();
  if (!CHECK_OK(c, device))
    return;
  std::string arch = "sm_" + std::to_string(device->computeMajor) +
                     std::to_string(device->computeMinor);
  for (bool jit : {false, true}) {
    std::string image = kAxpyPtx;
    if (!jit) {
      auto cubin = lq::cuda::compilePtx(kAxpyPtx, arch);
      if (!CHECK_OK(c, cubin))
        continue;
      image = *cubin;
    }
    auto module = cuda->loadModule(image.data(), image.size());
    if (!CHECK_OK(c, module))
      continue;
    auto fn = cuda->function(*module, "lq_test_axpy");
    auto missing = cuda->function(*module, "lq_no_such_kernel");
    CHECK(c, !missing.ok() &&
                 missing.error().find("lq_no_such_kernel") != std::string::npos);
    const unsigned n = 1000;
    std::vector<float> x(n), y(n), got(n);
    for (unsigned i = 0; i < n; ++i) {
      x[i] = 0.25f * float(i) - 3.0f;
      y[i] = 1.0f / float(i + 1);
    }
    auto dx = DeviceBuffer::allocate(n * 4), dy = DeviceBuffer::allocate(n * 4);
    if (!CHECK_OK(c, fn) || !CHECK_OK(c, dx) || !CHECK_OK(c, dy))
      continue;
    auto px = cuda->pointerInfo(dx->data());
    auto host = cuda->pointerInfo(x.data());
    CHECK(c, px.ok() && px->device && px->rangeSize >= n * 4);
    CHECK(c, host.ok() && !host->device);
    CHECK_OK(c, cuda->copyToDevice(dx->address(), x.data(), n * 4, stream));
    CHECK_OK(c, cuda->copyToDevice(dy->address(), y.data(), n * 4, stream));
    CUdeviceptr px2 = dx->address(), py = dy->address();
    float a = 1.5f;
    unsigned count = n;
    void *params[] = {&px2, &py, &a, &count};
    auto start = cuda->createEvent(), end = cuda->createEvent();
    if (!CHECK_OK(c, start) || !CHECK_OK(c, end))
      continue;
    CHECK_OK(c, cuda->record(*start, stream));
    CHECK_OK(c, cuda->launch(*fn, (n + 127) / 128, 1, 1, 128, 0, stream, params));
    CHECK_OK(c, cuda->record(*end, stream));
    auto ms = cuda->elapsedMs(*start, *end);
    CHECK(c, ms.ok() && *ms >= 0.0f);
    CHECK_OK(c, cuda->copyToHost(got.data(), py, n * 4, stream));
    CHECK_OK(c, cuda->synchronize(stream));
    for (unsigned i = 0; i < n; ++i)
      if (!CHECK_BITS(c, got[i], std::fma(a, x[i], y[i])))
        break;
    CHECK_OK(c, cuda->destroyEvent(*start));
    CHECK_OK(c, cuda->destroyEvent(*end));
    CHECK_OK(c, cuda->unloadModule(*module));
  }
  auto huge = cuda->allocate(size_t(1) << 62);
  CHECK(c, !huge.ok() && huge.error().find("cuMemAlloc: CUDA_ERROR") == 0);
}

//===----------------------------------------------------------------------===//
// Host data and the numerics core's answers
//===----------------------------------------------------------------------===//

num::Format numericsFormat(Format f) {
  return f == Format::SInt4   ? num::Format::Int4Signed
         : f == Format::UInt4 ? num::Format::Int4Unsigned
                              : num::Format::Log4;
}

/// A float matrix as f32 and as its bf16 rounding; never a zero element.
struct HostMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;

  HostMatrix(int64_t rows, int64_t cols, std::mt19937 &rng, bool nonNegative)
      : rows(rows), cols(cols), f32(rows * cols), bf16(rows * cols) {
    // Heavy-tailed like neural gradients: a normal times 2^(uniform bin).
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> octave(-6, 3);
    for (size_t i = 0; i < f32.size(); ++i) {
      float v = 0.0f;
      while (v == 0.0f || num::floatToBf16(v) == 0)
        v = normal(rng) * std::ldexp(1.0f, octave(rng));
      set(i, nonNegative ? std::fabs(v) : v);
    }
  }
  void set(size_t i, float v) {
    f32[i] = v;
    bf16[i] = num::floatToBf16(v);
  }
  const void *data(DType dtype) const {
    return dtype == DType::BF16 ? static_cast<const void *>(bf16.data())
                                : f32.data();
  }
  num::MatrixView view(DType dtype) const {
    return dtype == DType::BF16
               ? num::MatrixView::bf16(bf16.data(), rows, cols)
               : num::MatrixView::f32(f32.data(), rows, cols);
  }
};

/// The numerics core's quantization of one operand.
struct Reference {
  std::vector<int8_t> codes; // samples x rows x cols
  float scale = 0.0f;
  bool nonfinite = false;
  uint64_t overflow = 0;
  float maxAbs = 0.0f;       // max |x| over the finite elements
  float clip = 0.0f;         // SAWB: the core's own clip
};

/// LUQ samples firstSample.. with the tensor's max (or `estimate` in
/// hindsight mode); SAWB with the clip `clip` (the kernel's, which may
/// differ from the core's in the last bits: docs/numerics.md).
Reference quantizeReference(const HostMatrix &x, DType dtype, Format format,
                            unsigned samples, uint32_t firstSample,
                            std::optional<float> estimate, float clip,
                            uint64_t seed, uint32_t stream) {
  Reference ref;
  num::MatrixView view = x.view(dtype);
  size_t count = view.size();
  ref.codes.assign(count * samples, 0);
  ref.maxAbs = num::maxAbs(view).maxAbs;
  if (format == Format::Log4) {
    for (unsigned s = 0; s < samples; ++s) {
      num::RandomKey key{seed, stream, firstSample + s};
      int8_t *codes = ref.codes.data() + s * count;
      num::LuqResult r = estimate
                             ? num::luqEncodeHindsight(view, *estimate, key, codes)
                             : num::luqEncode(view, key, codes);
      ref.scale = r.alpha;
      ref.nonfinite = r.nonfinite;
      ref.overflow += r.overflowCount;
    }
    return ref;
  }
  num::SawbClipResult own = num::sawbClip(view);
  ref.clip = own.clip;
  num::SawbResult r = num::sawbEncode(
      view, clip,
      format == Format::SInt4 ? num::SawbKind::Signed : num::SawbKind::Unsigned,
      ref.codes.data());
  ref.scale = r.step;
  ref.nonfinite = r.nonfinite || own.nonfinite;
  return ref;
}

/// A SAWB clip of the kernel agrees with the core's up to summation order,
/// the one difference the contract allows between devices (the GPU adds
/// per-block f64 partial sums in block order, the core sums row-major).
/// Each moment is a sum of n non-negative terms, within n * 2^-53 of the
/// exact sum in any order; through 12.1 sqrt(S2) - 12.2 S1 that moves the
/// clip by about 5 n 2^-53 of itself for the tensors here (the clip is
/// not near total cancellation), far below half an f32 ulp for any n
/// they use. So the two f32 roundings are equal or neighbours: at most one
/// ulp apart, where a relative tolerance would hide a wrong rule or sum.
bool closeClip(float kernel, float core) {
  if (std::isnan(core))
    return std::isnan(kernel);
  if (!(kernel >= 0.0f) || !(core >= 0.0f))
    return num::floatToBits(kernel) == num::floatToBits(core);
  uint32_t a = num::floatToBits(kernel), b = num::floatToBits(core);
  return (a > b ? a - b : b - a) <= 1;
}

std::vector<uint8_t> packed(Format format, const std::vector<int8_t> &codes,
                            int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes(size_t(rows) * num::packedRowBytes(cols));
  num::packCodes(numericsFormat(format), codes.data(), rows, cols,
                 bytes.data());
  return bytes;
}

//===----------------------------------------------------------------------===//
// Pack modules
//===----------------------------------------------------------------------===//

struct Loaded {
  lq::cuda::PackModule module;
  std::unique_ptr<GpuLauncher> launcher;
};

/// A quantize module of `format` in the pack, for packed operands the GPU
/// quantizes.
Loaded *quantizerFor(std::vector<Loaded> &loaded, Format format) {
  for (Loaded &l : loaded)
    if (l.launcher && l.module.info.quantizeOnly &&
        l.module.info.spec.lhs.format == format)
      return &l;
  return nullptr;
}

enum class Fault { None, NanLhs, InfRhs, NanEstimate, ZeroEstimate };
const char *faultName(Fault f) {
  switch (f) {
  case Fault::None:
    return "";
  case Fault::NanLhs:
    return " NaN-in-lhs";
  case Fault::InfRhs:
    return " Inf-in-rhs";
  case Fault::NanEstimate:
    return " NaN-estimate";
  case Fault::ZeroEstimate:
    return " zero-estimate";
  }
  return "";
}

struct GemmCase {
  int64_t m = 1, n = 1, k = 1;
  bool pitched = true;
  Fault fault = Fault::None;
  /// Packed operands quantized by the pack's quantize module (else by the
  /// numerics core).
  bool gpuQuantized = false;
  /// Where the launcher quantizes (Auto: its cost model).
  lq::cuda::Placement placement = lq::cuda::Placement::Auto;
};

const char *placementName(lq::cuda::Placement p) {
  switch (p) {
  case lq::cuda::Placement::Auto:
    return "";
  case lq::cuda::Placement::Fused:
    return " fused";
  case lq::cuda::Placement::Int8:
    return " int8";
  }
  return "";
}

/// What a pack exercised, against what it must.
struct Coverage {
  std::set<std::string> features;
  void add(const std::string &f) { features.insert(f); }
};

std::string roleOf(const GemmSpec &s) {
  bool luqLhs = s.lhs.format == Format::Log4;
  if (!luqLhs && !s.lhs.transposed && s.rhs.transposed)
    return "forward";
  if (luqLhs && !s.lhs.transposed && !s.rhs.transposed)
    return "backward-data";
  if (luqLhs && s.lhs.transposed && !s.rhs.transposed)
    return "weight-grad";
  return "other";
}

/// Operand `side` of a GEMM case on the device, and the core's codes of it.
struct PreparedOperand {
  DeviceTensor tensor;
  Reference ref;
  float passedScale = 0.0f; // the scale a packed operand is launched with
};

std::optional<PreparedOperand>
prepareOperand(Case &c, const lq::OperandSpec &op, const HostMatrix &x,
               unsigned samples, bool pitched, bool gpuQuantized,
               std::vector<Loaded> &loaded, uint64_t seed, uint32_t streamId) {
  PreparedOperand p;
  int64_t rows = x.rows, cols = x.cols;
  if (op.dtype != DType::Packed4) {
    auto t = DeviceTensor::make(op.dtype, rows, cols, pitched);
    if (!CHECK_OK(c, t))
      return std::nullopt;
    p.tensor = std::move(*t);
    std::string up = p.tensor.upload(x.data(op.dtype));
    if (!CHECK_MSG(c, up.empty(), up))
      return std::nullopt;
    return p;
  }
  // Packed: SMP samples stacked along rows, one scale.
  auto t = DeviceTensor::make(DType::Packed4, rows * samples, cols, pitched);
  if (!CHECK_OK(c, t))
    return std::nullopt;
  p.tensor = std::move(*t);
  if (!gpuQuantized) {
    float clip = num::sawbClip(x.view(DType::F32)).clip;
    p.ref = quantizeReference(x, DType::F32, op.format, samples, 0,
                              std::nullopt, clip, seed, streamId);
    p.passedScale = p.ref.scale;
    std::vector<uint8_t> bytes = packed(op.format, p.ref.codes, rows * samples, cols);
    std::string up = p.tensor.upload(bytes.data());
    CHECK_MSG(c, up.empty(), up);
    return p;
  }
  Loaded *q = quantizerFor(loaded, op.format);
  if (!CHECK_MSG(c, q, "no quantize module for the packed operand"))
    return std::nullopt;
  DType in = q->module.info.spec.lhs.dtype;
  auto input = DeviceTensor::make(in, rows, cols, pitched);
  if (!CHECK_OK(c, input))
    return std::nullopt;
  std::string up = input->upload(x.data(in));
  std::string poisoned = p.tensor.poison();
  if (!CHECK_MSG(c, up.empty() && poisoned.empty(), up + poisoned))
    return std::nullopt;
  float range = 0.0f;
  for (unsigned s = 0; s < samples; ++s) {
    lq::QuantizeArgs qa;
    qa.input = input->ref;
    qa.output = p.tensor.rowsView(s * rows, rows);
    qa.format = op.format;
    qa.seed = seed;
    qa.stream = streamId;
    qa.sample = s;
    auto st = q->launcher->quantize(qa, stream);
    if (!CHECK_OK(c, st))
      return std::nullopt;
    CHECK(c, s == 0 || sameBits(st->scale, p.passedScale));
    p.passedScale = st->scale;
    range = st->range;
  }
  p.ref = quantizeReference(x, in, op.format, samples, 0, std::nullopt, range,
                            seed, streamId);
  CHECK_BITS(c, p.passedScale, p.ref.scale);
  if (op.format != Format::Log4)
    CHECK_MSG(c, closeClip(range, p.ref.clip),
              bitsText(range) + " vs " + bitsText(p.ref.clip));
  std::vector<uint8_t> want = packed(op.format, p.ref.codes, rows * samples, cols);
  std::vector<uint8_t> got(want.size());
  std::string error;
  size_t clobbered = p.tensor.download(got.data(), error);
  CHECK_MSG(c, error.empty(), error);
  CHECK_MSG(c, clobbered == 0, std::to_string(clobbered) +
                                   " bytes outside the packed rows changed");
  size_t differ = 0;
  for (size_t i = 0; i < want.size(); ++i)
    differ += want[i] != got[i];
  CHECK_MSG(c, differ == 0, std::to_string(differ) +
                                " packed bytes differ from the numerics core");
  return p;
}

/// Called with a case's arguments just before its launch.
using ArgsHook = std::function<void(const lq::LaunchArgs &)>;

void runGemmCase(Loaded &module, std::vector<Loaded> &loaded,
                 const GemmCase &g, std::mt19937 &rng,
                 std::set<std::string> &kernelsUsed,
                 const ArgsHook &beforeLaunch = {}) {
  GpuLauncher &launcher = *module.launcher;
  const GemmSpec &s = module.module.info.spec;
  unsigned samples = s.samples;
  std::string name = "gemm " + module.module.name + " M=" + std::to_string(g.m) +
                     " N=" + std::to_string(g.n) + " K=" + std::to_string(g.k) +
                     (g.pitched ? " pitched" : " unaligned") + faultName(g.fault) +
                     (g.gpuQuantized ? " gpu-quantized" : "") +
                     placementName(g.placement);
  Case c(name);
  // The placement holds for this case only.
  launcher.setPlacement(g.placement);
  struct Restore {
    GpuLauncher &l;
    ~Restore() { l.setPlacement(lq::cuda::Placement::Auto); }
  } restore{launcher};
  int64_t aRows = s.lhs.transposed ? g.k : g.m, aCols = s.lhs.transposed ? g.m : g.k;
  int64_t bRows = s.rhs.transposed ? g.n : g.k, bCols = s.rhs.transposed ? g.k : g.n;
  HostMatrix a(aRows, aCols, rng, s.lhs.format == Format::UInt4);
  HostMatrix b(bRows, bCols, rng, s.rhs.format == Format::UInt4);
  std::uniform_int_distribution<size_t> pickA(0, a.f32.size() - 1),
      pickB(0, b.f32.size() - 1);
  if (g.fault == Fault::NanLhs)
    a.set(pickA(rng), std::nanf(""));
  if (g.fault == Fault::InfRhs)
    b.set(pickB(rng), -std::numeric_limits<float>::infinity());
  std::vector<float> bias(g.n);
  std::uniform_real_distribution<float> biasDist(-0.5f, 0.5f);
  for (float &v : bias)
    v = biasDist(rng);
  uint64_t seed = (uint64_t(rng()) << 32) | rng();
  uint32_t streamId = rng() % 1000;

  lq::LaunchArgs args;
  args.seed = seed;
  args.stream = streamId;
  std::optional<float> estimate;
  if (s.hindsight) {
    // Below the true max, so that elements saturate and are counted.
    float max = num::maxAbs(a.view(s.lhs.dtype)).maxAbs;
    estimate = g.fault == Fault::NanEstimate    ? std::nanf("")
               : g.fault == Fault::ZeroEstimate ? 0.0f
                                                : max * 0.75f;
    args.maxEstimate = *estimate;
  }
  auto lhs = prepareOperand(c, s.lhs, a, samples, g.pitched, g.gpuQuantized,
                            loaded, seed, streamId);
  auto rhs = prepareOperand(c, s.rhs, b, 1, g.pitched, g.gpuQuantized, loaded,
                            seed, streamId);
  auto out = DeviceTensor::make(s.output, g.m, g.n, g.pitched);
  auto biasBuffer = DeviceBuffer::allocate(size_t(g.n) * 4);
  if (!lhs || !rhs || !CHECK_OK(c, out) || !CHECK_OK(c, biasBuffer))
    return;
  std::string ready = out->poison();
  if (s.bias) {
    auto copied = cuda->copyToDevice(biasBuffer->address(), bias.data(),
                                     bias.size() * 4, stream);
    ready += copied ? "" : copied.error();
    args.bias = static_cast<const float *>(biasBuffer->data());
    args.biasLength = g.n;
  }
  if (!CHECK_MSG(c, ready.empty(), ready))
    return;
  args.lhs = lhs->tensor.ref;
  args.rhs = rhs->tensor.ref;
  args.out = out->ref;
  args.lhsScale = lhs->passedScale;
  args.rhsScale = rhs->passedScale;
  auto choice = launcher.chooseGemm(args);
  if (CHECK_OK(c, choice))
    kernelsUsed.insert(choice->kernel);
  if (beforeLaunch)
    beforeLaunch(args);
  auto status = launcher.launch(args, stream);
  if (!CHECK_OK(c, status))
    return;

  // The core's codes of float operands, with the kernel's SAWB clips.
  if (s.lhs.dtype != DType::Packed4)
    lhs->ref = quantizeReference(a, s.lhs.dtype, s.lhs.format, samples, 0,
                                 estimate, status->lhsRange, seed, streamId);
  if (s.rhs.dtype != DType::Packed4)
    rhs->ref = quantizeReference(b, s.rhs.dtype, s.rhs.format, 1, 0,
                                 std::nullopt, status->rhsRange, seed, streamId);
  bool lhsFloat = s.lhs.dtype != DType::Packed4;
  bool rhsFloat = s.rhs.dtype != DType::Packed4;
  CHECK_BITS(c, status->lhsScale, lhs->ref.scale);
  CHECK_BITS(c, status->rhsScale, rhs->ref.scale);
  CHECK(c, status->nonfinite == ((lhsFloat && lhs->ref.nonfinite) ||
                                 (rhsFloat && rhs->ref.nonfinite)));
  for (auto [floatOperand, spec, range, ref] :
       {std::tuple(lhsFloat, &s.lhs, status->lhsRange, &lhs->ref),
        std::tuple(rhsFloat, &s.rhs, status->rhsRange, &rhs->ref)}) {
    if (!floatOperand)
      CHECK(c, range == 0.0f);
    else if (spec->format != Format::Log4)
      CHECK_MSG(c, closeClip(range, ref->clip),
                bitsText(range) + " vs " + bitsText(ref->clip));
  }
  bool lhsLuqFloat = lhsFloat && s.lhs.format == Format::Log4;
  if (lhsLuqFloat && !s.hindsight) {
    CHECK_BITS(c, status->lhsRange, lhs->ref.maxAbs);
    CHECK_BITS(c, status->lhsMax, lhs->ref.maxAbs);
  } else if (s.hindsight) {
    bool usable = estimate && std::isfinite(*estimate) && *estimate >= 0x1p-120f;
    CHECK_BITS(c, status->lhsRange, *estimate);
    float max = usable && !lhs->ref.nonfinite ? lhs->ref.maxAbs : 0.0f;
    CHECK_BITS(c, status->lhsMax, max);
    CHECK_MSG(c, status->overflow == (usable ? lhs->ref.overflow : 0),
              std::to_string(status->overflow) + " vs " +
                  std::to_string(lhs->ref.overflow));
    if (g.fault == Fault::None && g.k > 0)
      CHECK(c, status->overflow > 0);
  } else {
    CHECK(c, status->lhsMax == 0.0f && status->overflow == 0);
  }

  std::vector<float> refF32(g.m * g.n);
  std::vector<uint16_t> refBf16(g.m * g.n);
  num::GemmOptions options;
  options.lhsSamples = samples;
  options.bias = s.bias ? bias.data() : nullptr;
  options.relu = s.relu;
  num::GemmResult ref = num::quantizedGemm(
      {size_t(g.m), size_t(g.n), size_t(g.k)},
      {lhs->ref.codes.data(), numericsFormat(s.lhs.format),
       lhsFloat ? lhs->ref.scale : lhs->passedScale, s.lhs.transposed},
      {rhs->ref.codes.data(), numericsFormat(s.rhs.format),
       rhsFloat ? rhs->ref.scale : rhs->passedScale, s.rhs.transposed},
      options, {refF32.data(), refBf16.data(), nullptr});
  if (!CHECK_MSG(c, ref.status == num::Status::Ok, num::statusName(ref.status)))
    return;

  bool bf16 = s.output == DType::BF16;
  std::vector<unsigned char> got(size_t(g.m * g.n) * elementBytes(s.output));
  std::string error;
  size_t clobbered = out->download(got.data(), error);
  CHECK_MSG(c, error.empty(), error);
  CHECK_MSG(c, clobbered == 0,
            std::to_string(clobbered) + " bytes outside the output changed");
  int64_t mismatches = 0;
  for (int64_t i = 0; i < g.m * g.n; ++i) {
    float kernel, core;
    if (bf16) {
      uint16_t bits;
      std::memcpy(&bits, &got[2 * i], 2);
      kernel = num::bf16ToFloat(bits);
      core = num::bf16ToFloat(refBf16[i]);
    } else {
      std::memcpy(&kernel, &got[4 * i], 4);
      core = refF32[i];
    }
    if (!sameBits(kernel, core) && mismatches++ < 4)
      CHECK_MSG(c, false, "C(" + std::to_string(i / g.n) + ", " +
                              std::to_string(i % g.n) + "): kernel " +
                              bitsText(kernel) + ", core " + bitsText(core));
  }
  CHECK_MSG(c, mismatches == 0,
            std::to_string(mismatches) + " output elements differ");
}

/// Checks of the launcher's argument rules that need device memory: host
/// memory and a tensor that runs past its allocation are errors.
void runMisuseCase(Loaded &module) {
  const GemmSpec &s = module.module.info.spec;
  Case c("gemm " + module.module.name + " rejects host and short device memory");
  const int64_t m = 8, n = 8, k = 8;
  int64_t aRows = s.lhs.transposed ? k : m, aCols = s.lhs.transposed ? m : k;
  int64_t bRows = s.rhs.transposed ? n : k, bCols = s.rhs.transposed ? k : n;
  auto a = DeviceTensor::make(s.lhs.dtype, aRows * (s.lhs.dtype == DType::Packed4 ? s.samples : 1), aCols, true);
  auto b = DeviceTensor::make(s.rhs.dtype, bRows, bCols, true);
  auto out = DeviceTensor::make(s.output, m, n, true);
  if (!CHECK_OK(c, a) || !CHECK_OK(c, b) || !CHECK_OK(c, out))
    return;
  lq::LaunchArgs args;
  args.lhs = a->ref;
  args.rhs = b->ref;
  args.out = out->ref;
  args.lhsScale = args.rhsScale = 1.0f;
  args.maxEstimate = 1.0f;
  std::vector<float> bias(n);
  auto biasBuffer = DeviceBuffer::allocate(n * 4);
  if (!CHECK_OK(c, biasBuffer))
    return;
  if (s.bias) {
    args.bias = static_cast<const float *>(biasBuffer->data());
    args.biasLength = n;
  }
  std::vector<unsigned char> host(1 << 16);
  lq::LaunchArgs onHost = args;
  onHost.out.data = host.data();
  auto st = module.launcher->launch(onHost, stream);
  CHECK_MSG(c, !st.ok() && st.error().find("out: not CUDA device memory") == 0,
            st.ok() ? "accepted" : st.error());
  lq::LaunchArgs hostDevice = args;
  hostDevice.out.device = lq::Device::CPU;
  st = module.launcher->launch(hostDevice, stream);
  CHECK_MSG(c, !st.ok() && st.error().find("device memory (Device::CUDA)") !=
                               std::string::npos,
            st.ok() ? "accepted" : st.error());
  // An output of one row, passed as M rows: its last rows lie past the
  // allocation.
  auto oneRow = DeviceTensor::make(s.output, 1, n, true);
  if (!CHECK_OK(c, oneRow))
    return;
  lq::LaunchArgs tooLong = args;
  tooLong.out.data = oneRow->ref.data;
  st = module.launcher->launch(tooLong, stream);
  CHECK_MSG(c, !st.ok() && st.error().find("past the end of its allocation") !=
                               std::string::npos,
            st.ok() ? "accepted" : st.error());
  if (s.bias) {
    lq::LaunchArgs hostBias = args;
    hostBias.bias = bias.data();
    st = module.launcher->launch(hostBias, stream);
    CHECK_MSG(c, !st.ok() && st.error().find("bias: not CUDA device memory") == 0,
              st.ok() ? "accepted" : st.error());
  }
}

void runQuantizeCase(Loaded &module, int64_t rows, int64_t cols, bool pitched,
                     bool hindsight, bool nan, std::mt19937 &rng) {
  const GemmSpec &s = module.module.info.spec;
  Format format = s.lhs.format;
  Case c("quantize " + module.module.name + " " + std::to_string(rows) + "x" +
         std::to_string(cols) + (pitched ? " pitched" : " unaligned") +
         (hindsight ? " estimate" : "") + (nan ? " NaN" : ""));
  HostMatrix x(rows, cols, rng, format == Format::UInt4);
  if (nan)
    x.set(rng() % x.f32.size(), std::nanf(""));
  auto in = DeviceTensor::make(s.lhs.dtype, rows, cols, pitched);
  auto out = DeviceTensor::make(DType::Packed4, rows, cols, pitched);
  if (!CHECK_OK(c, in) || !CHECK_OK(c, out))
    return;
  std::string up = in->upload(x.data(s.lhs.dtype)) + out->poison();
  if (!CHECK_MSG(c, up.empty(), up))
    return;
  lq::QuantizeArgs qa;
  qa.input = in->ref;
  qa.output = out->ref;
  qa.format = format;
  qa.seed = (uint64_t(rng()) << 32) | rng();
  qa.stream = rng() % 100;
  qa.sample = rng() % 4;
  float max = num::maxAbs(x.view(s.lhs.dtype)).maxAbs;
  if (hindsight)
    qa.maxEstimate = max * 0.75f;
  auto st = module.launcher->quantize(qa, stream);
  if (!CHECK_OK(c, st))
    return;
  Reference ref = quantizeReference(x, s.lhs.dtype, format, 1, qa.sample,
                                    qa.maxEstimate, st->range, qa.seed,
                                    qa.stream);
  CHECK_BITS(c, st->scale, ref.scale);
  CHECK(c, st->nonfinite == ref.nonfinite);
  if (format == Format::Log4) {
    CHECK_BITS(c, st->range, ref.nonfinite && hindsight ? 0.0f : ref.maxAbs);
    CHECK_MSG(c, st->overflow == (hindsight ? ref.overflow : 0),
              std::to_string(st->overflow) + " vs " + std::to_string(ref.overflow));
    if (hindsight && !nan)
      CHECK(c, st->overflow > 0);
  } else {
    CHECK_MSG(c, closeClip(st->range, ref.clip),
              bitsText(st->range) + " vs " + bitsText(ref.clip));
  }
  std::vector<uint8_t> want = packed(format, ref.codes, rows, cols);
  std::vector<uint8_t> got(want.size());
  std::string error;
  size_t clobbered = out->download(got.data(), error);
  CHECK_MSG(c, error.empty(), error);
  CHECK_MSG(c, clobbered == 0,
            std::to_string(clobbered) + " bytes outside the packed rows changed");
  size_t differ = 0;
  for (size_t i = 0; i < want.size(); ++i)
    differ += want[i] != got[i];
  CHECK_MSG(c, differ == 0, std::to_string(differ) + " of " +
                                std::to_string(want.size()) +
                                " packed bytes differ");
}

/// Operands of an M x N x K launch at made-up addresses, in the layout of
/// DeviceTensor (pitched or not): enough for chooseGemm.
lq::LaunchArgs shapeArgs(const GemmSpec &s, int64_t m, int64_t n, int64_t k,
                         bool pitched) {
  auto ref = [pitched](DType d, int64_t rows, int64_t cols) {
    int64_t eb = int64_t(elementBytes(d));
    int64_t rowBytes = d == DType::Packed4 ? (cols + 1) / 2 : cols * eb;
    int64_t pitch = pitched ? std::max<int64_t>(16, (rowBytes + 15) / 16 * 16)
                            : rowBytes + eb;
    uintptr_t base = (uintptr_t(1) << 20) + (pitched ? 0 : uintptr_t(eb));
    return lq::TensorRef{reinterpret_cast<void *>(base), d, rows, cols,
                         pitch / eb, lq::Device::CUDA};
  };
  int64_t lhsSamples = s.lhs.dtype == DType::Packed4 ? s.samples : 1;
  lq::LaunchArgs args;
  args.lhs = s.lhs.transposed ? ref(s.lhs.dtype, k * lhsSamples, m)
                              : ref(s.lhs.dtype, m * lhsSamples, k);
  args.rhs = s.rhs.transposed ? ref(s.rhs.dtype, n, k) : ref(s.rhs.dtype, k, n);
  args.out = ref(s.output, m, n);
  args.lhsScale = args.rhsScale = 1.0f;
  if (s.bias) {
    args.bias = reinterpret_cast<const float *>(uintptr_t(1) << 20);
    args.biasLength = n;
  }
  return args;
}

/// Launches of the int8 placement (lq_quant8_<side> and lq_gemm_ws_*):
/// ragged edges on every side, K off the 128-code stage and the 16-byte
/// pitch, several k-steps, SMP samples stacked along A's rows, partial
/// tiles next to full ones, and more tiles than multiprocessors (each
/// persistent CTA walks several, the ring's phases run on across tiles);
/// K = 0 falls back to the fused GEMM.
std::vector<GemmCase> int8Cases(const GemmSpec &s, bool quick) {
  std::vector<GemmCase> cases = {{1, 1, 1, true},    {5, 3, 2, false},
                                 {33, 17, 64, true}, {67, 45, 129, false},
                                 {6, 5, 0, true},    {13, 9, 21, true, Fault::NanLhs},
                                 {7, 19, 5, false, Fault::InfRhs}};
  if (s.hindsight) {
    cases.push_back({9, 9, 9, true, Fault::NanEstimate});
    cases.push_back({11, 300, 19, true});
  }
  if (!quick)
    for (std::array<int64_t, 3> shape :
         {std::array<int64_t, 3>{130, 257, 300}, {257, 383, 319},
          {300, 129, 17}, {128, 256, 128}, {64, 300, 768}, {200, 600, 1000},
          {2000, 2100, 64}})
      cases.push_back({shape[0], shape[1], shape[2], shape[0] % 2 == 0});
  return cases;
}

std::vector<GemmCase> gemmCases(const Loaded &module, bool quick,
                                std::mt19937 &rng, bool gpuQuantizable) {
  const GemmSpec &s = module.module.info.spec;
  std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1}, {1, 7, 1}, {5, 3, 2}, {17, 33, 1}, {33, 17, 64}, {6, 5, 0}};
  if (!quick) {
    for (std::array<int64_t, 3> shape :
         {std::array<int64_t, 3>{67, 45, 129}, {64, 64, 64}, {100, 37, 513},
          {257, 383, 319}, {301, 129, 17}, {3, 300, 250}, {128, 1, 31}})
      shapes.push_back(shape);
    std::uniform_int_distribution<int64_t> dim(1, 70);
    for (int i = 0; i < 4; ++i)
      shapes.push_back({dim(rng), dim(rng), dim(rng)});
  }
  std::vector<GemmCase> cases;
  for (size_t i = 0; i < shapes.size(); ++i)
    cases.push_back({shapes[i][0], shapes[i][1], shapes[i][2], i % 2 == 0});
  if (!quick) {
    // A shape for every GEMM kernel the launcher picks: it picks the tile,
    // copy variant and placement by the shape and layout, so search shapes
    // off the tile sizes, pitched and not, and take the first that selects
    // each kernel. K = 0 comes last: on sm_90a it is what selects `vec`
    // (every other aligned launch takes the TMA variant).
    std::set<std::string> found;
    for (int64_t k : {int64_t(37), int64_t(0)})
      for (bool pitched : {true, false})
        for (const lq::cuda::GemmTile &t : module.module.info.tiles)
          for (int64_t rm = 1; rm <= 16; ++rm)
            for (int64_t rn = 1; rn <= 64; ++rn) {
              int64_t m = std::max<int64_t>(1, t.bm * rm - 3),
                      n = t.bn * rn + 1;
              auto choice = module.launcher->chooseGemm(
                  shapeArgs(s, m, n, k, pitched));
              if (choice.ok() && found.insert(choice->kernel).second)
                cases.push_back({m, n, k, pitched});
            }
  }
  bool lhsFloat = s.lhs.dtype != DType::Packed4;
  bool rhsFloat = s.rhs.dtype != DType::Packed4;
  if (lhsFloat)
    cases.push_back({13, 9, 21, true, Fault::NanLhs});
  if (module.launcher->hasPackedLhsVariant()) {
    // Wide enough for the quantize-once placement on the smallest tile.
    int64_t wide = 4 * module.module.info.tiles.front().bn + 1;
    cases.push_back({13, wide, 21, true, Fault::NanLhs});
    if (s.hindsight)
      cases.push_back({11, wide, 19, true});
  }
  if (rhsFloat)
    cases.push_back({7, 19, 5, false, Fault::InfRhs});
  if (s.hindsight) {
    cases.push_back({9, 9, 9, true, Fault::NanEstimate});
    cases.push_back({9, 9, 9, false, Fault::ZeroEstimate});
  }
  if (gpuQuantizable) {
    cases.push_back({23, 31, 45, true, Fault::None, true});
    if (!quick)
      cases.push_back({130, 67, 99, false, Fault::None, true});
  }
  if (lq::cuda::hasInt8Gemm(s))
    for (GemmCase g : int8Cases(s, quick)) {
      g.placement = lq::cuda::Placement::Int8;
      cases.push_back(g);
    }
  return cases;
}

/// What the static checks of one module found.
struct StaticResults {
  std::optional<lq::Result<lq::cuda::PtxasReport>> report;
  /// The module assembled for each architecture it may run as.
  std::vector<std::pair<std::string, std::optional<lq::Result<std::string>>>>
      cubins;
};

/// The architectures a module is assembled for before any device is seen:
/// its own chip, and what a compute capability 9.0 device (H100, H200)
/// assembles it for (sm_90 for sm_80 code).
std::vector<std::string> staticArchs(const lq::cuda::GpuModuleInfo &info) {
  std::vector<std::string> archs = {lq::cuda::chipName(info)};
  lq::cuda::DeviceInfo hopper;
  hopper.computeMajor = 9;
  if (auto arch = lq::cuda::deviceArch(info, hopper); arch && *arch != lq::cuda::chipName(info))
    archs.push_back(*arch);
  return archs;
}

/// ptxas reports and assemblies of every module, computed on `jobs`
/// threads; the cases print them in pack order afterwards.
std::vector<StaticResults>
computeStatics(const std::vector<lq::cuda::PackModule> &modules,
               lq::cuda::PtxAssembler assembler, unsigned jobs) {
  std::vector<StaticResults> results(modules.size());
  std::vector<std::pair<size_t, int>> tasks; // (module, cubin or -1: report)
  for (size_t i = 0; i < modules.size(); ++i) {
    tasks.push_back({i, -1});
    for (const std::string &arch : staticArchs(modules[i].info)) {
      tasks.push_back({i, int(results[i].cubins.size())});
      results[i].cubins.push_back({arch, std::nullopt});
    }
  }
  parallelFor(tasks.size(), jobs, [&](size_t t) {
    auto [i, cubin] = tasks[t];
    const lq::cuda::PackModule &m = modules[i];
    if (cubin < 0) {
      results[i].report = lq::cuda::ptxasReport(m.ptx, lq::cuda::chipName(m.info));
      return;
    }
    auto &[arch, image] = results[i].cubins[cubin];
    image = lq::cuda::compilePtx(m.ptx, arch, assembler);
  });
  return results;
}

std::string moduleTitle(const lq::cuda::PackModule &m) {
  return m.name + " (" + lq::cuda::chipName(m.info) + "): " +
         (m.info.quantizeOnly
              ? "quantize " + std::string(lq::formatName(m.info.spec.lhs.format))
              : m.info.spec.describe());
}

void checkPtxasReport(const lq::cuda::PackModule &m,
                      const lq::Result<lq::cuda::PtxasReport> &report) {
  Case c("ptxas " + moduleTitle(m));
  // The pack's kernels declare the parameters the launcher passes.
  CHECK_OK(c, lq::cuda::checkSignatures(m.ptx));
  if (!CHECK_OK(c, report))
    return;
  std::set<std::string> names;
  for (const auto &k : report->kernels) {
    names.insert(k.name);
    char line[256];
    std::snprintf(line, sizeof(line),
                  "%-28s %3d registers, %6lld B smem, %4lld B stack, "
                  "%lld/%lld B spilled",
                  k.name.c_str(), k.registers, (long long)k.sharedBytes,
                  (long long)k.stackBytes, (long long)k.spillStores,
                  (long long)k.spillLoads);
    c.note(line);
    CHECK_MSG(c, k.spillStores == 0 && k.spillLoads == 0, k.name + " spills");
  }
  for (const std::string &k : lq::cuda::requiredKernels(m.info))
    CHECK_MSG(c, names.count(k), "missing kernel " + k);
  // The quantize-once GEMMs are optional, but on sm_90a come with their
  // TMA variant.
  if (m.info.spec.target == lq::Target::CudaSm90a)
    for (const auto &t : m.info.tiles)
      if (names.count(lq::cuda::gemmKernel(t, true, /*packedLhs=*/true)))
        CHECK_MSG(c, names.count(lq::cuda::gemmTmaKernel(t, /*packedLhs=*/true)),
                  "missing kernel " +
                      lq::cuda::gemmTmaKernel(t, /*packedLhs=*/true));
}

void checkAssembly(const lq::cuda::PackModule &m, const StaticResults &r,
                   const std::string &assemblerName) {
  std::string archs;
  for (const auto &[arch, image] : r.cubins)
    archs += (archs.empty() ? "" : ", ") + arch;
  Case c("assemble " + m.name + " for " + archs + " (" + assemblerName + ")");
  for (const auto &[arch, image] : r.cubins)
    if (CHECK_MSG(c, image && image->ok(),
                  arch + ": " + (image ? image->error() : "not run")))
      CHECK_MSG(c, isElf(**image), arch + ": not an ELF image");
}

void addCoverage(const lq::cuda::PackModule &m, Coverage &coverage) {
  const GemmSpec &s = m.info.spec;
  if (m.info.quantizeOnly) {
    coverage.add(std::string("quantize ") + lq::formatName(s.lhs.format));
    return;
  }
  coverage.add(roleOf(s));
  coverage.add("smp" + std::to_string(s.samples));
  if (s.hindsight)
    coverage.add("hindsight");
  if (s.lhs.dtype == DType::BF16 || s.rhs.dtype == DType::BF16)
    coverage.add("bf16 input");
  if (s.output == DType::BF16)
    coverage.add("bf16 output");
  if (s.lhs.dtype == DType::Packed4 || s.rhs.dtype == DType::Packed4)
    coverage.add("packed operand");
  if (s.bias)
    coverage.add("bias");
}

/// The assembler of the static checks: nvJitLink, what the runtime uses,
/// where it loads (ptxasReport() covers ptxas either way).
lq::cuda::PtxAssembler staticAssembler(std::string &name) {
  auto identity = lq::cuda::assemblerIdentity(lq::cuda::PtxAssembler::NvJitLink);
  if (identity) {
    name = *identity;
    return lq::cuda::PtxAssembler::NvJitLink;
  }
  name = "ptxas; " + identity.error();
  return lq::cuda::PtxAssembler::Ptxas;
}

/// ptxas reports (no spills, every kernel of the ABI) and assembly of
/// every module, before any device is needed.
void runStatics(const std::vector<lq::cuda::PackModule> &modules,
                unsigned jobs, Coverage &coverage) {
  std::string assemblerName;
  lq::cuda::PtxAssembler assembler = staticAssembler(assemblerName);
  std::vector<StaticResults> results = computeStatics(modules, assembler, jobs);
  for (size_t i = 0; i < modules.size(); ++i) {
    checkPtxasReport(modules[i], *results[i].report);
    checkAssembly(modules[i], results[i], assemblerName);
    addCoverage(modules[i], coverage);
  }
}

/// Whether the pack quantizes every packed operand of `s` (so the GPU run
/// feeds it codes from the GPU).
bool quantizedByPack(const GemmSpec &s,
                     const std::vector<lq::cuda::PackModule> &modules) {
  bool anyPacked = false, all = true;
  for (const lq::OperandSpec *op : {&s.lhs, &s.rhs}) {
    if (op->dtype != DType::Packed4)
      continue;
    anyPacked = true;
    all &= std::any_of(modules.begin(), modules.end(), [&](const auto &m) {
      return m.info.quantizeOnly && m.info.spec.lhs.format == op->format;
    });
  }
  return anyPacked && all;
}

void checkCoverage(const Coverage &coverage) {
  Case c("pack covers the three GEMM roles, SMP 2 and 4, hindsight, bf16, "
         "packed operands and quantizers");
  for (const char *f :
       {"forward", "backward-data", "weight-grad", "smp2", "smp4", "hindsight",
        "bf16 input", "bf16 output", "packed operand", "bias",
        "quantize log4", "quantize sint4", "gpu-quantized packed operand"})
    CHECK_MSG(c, coverage.features.count(f), std::string("no module with ") + f);
}

struct Options {
  bool toolchain = false, driver = false, quick = false, driverJit = false;
  /// --static: the checks that need no device only; --sanitize: a few
  /// small launches per GEMM module, for compute-sanitizer.
  bool staticOnly = false, sanitize = false;
  /// --sass: the instruction mix of one GEMM kernel per chip (cuobjdump).
  bool sass = false;
  std::string module, chip, pack;
  uint32_t seed = 2024;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
};

/// The modules of the pack that --module and --chip select, after printing
/// what made the pack; nullopt when the pack cannot be read or nothing is
/// selected.
std::optional<std::vector<lq::cuda::PackModule>>
selectModules(const Options &opt) {
  std::vector<lq::cuda::PackModule> modules;
  auto read = lq::cuda::readPack(opt.pack);
  Case c("read the kernel pack " + opt.pack);
  if (!CHECK_OK(c, read))
    return std::nullopt;
  if (auto stamp = lq::cuda::readPackStamp(opt.pack))
    c.note("made from commit " + stamp->commit + " (uncommitted changes: " +
           stamp->dirty + ") on " + stamp->date + ", ABI " +
           std::to_string(stamp->abi) + ", " + std::to_string(read->size()) +
           " modules");
  for (auto &m : *read)
    if ((opt.module.empty() || m.name == opt.module) &&
        (opt.chip.empty() || lq::cuda::chipName(m.info) == opt.chip))
      modules.push_back(std::move(m));
  std::string what = opt.module.empty() ? "" : " named " + opt.module;
  what += opt.chip.empty() ? "" : " for " + opt.chip;
  if (!CHECK_MSG(c, !modules.empty(), "no module" + what))
    return std::nullopt;
  c.note(std::to_string(modules.size()) + " selected");
  return modules;
}

/// "device: ..." with what the driver tells of clocks and versions.
void printDevice(const lq::cuda::DeviceInfo &d) {
  auto mhz = [&](CUdevice_attribute attribute) {
    auto khz = cuda->attribute(attribute, d.device);
    return khz ? std::to_string(*khz / 1000) + " MHz" : khz.error();
  };
  auto version = cuda->driverVersion();
  std::string driver =
      version ? std::to_string(*version / 1000) + "." +
                    std::to_string(*version % 1000 / 10)
              : version.error();
  std::printf("device: %s, compute capability %d.%d, %d SMs, SM clock %s, "
              "memory clock %s, CUDA driver %s\n",
              d.name.c_str(), d.computeMajor, d.computeMinor,
              d.multiprocessors, mhz(CU_DEVICE_ATTRIBUTE_CLOCK_RATE).c_str(),
              mhz(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).c_str(),
              driver.c_str());
}

/// Device 0's primary context, a stream, and the device line.
std::optional<lq::cuda::DeviceInfo> openDevice() {
  Case c("CUDA context and stream on device 0");
  auto context = cuda->usePrimaryContext(0);
  auto created = cuda->createStream();
  if (!CHECK_OK(c, context) || !CHECK_OK(c, created))
    return std::nullopt;
  stream = *created;
  auto device = cuda->currentDevice();
  if (!CHECK_OK(c, device))
    return std::nullopt;
  printDevice(*device);
  return *device;
}

/// Loads every module the device can run: assembled on every core first,
/// then loaded in pack order.
std::vector<Loaded> loadModules(std::vector<lq::cuda::PackModule> &modules,
                                const lq::cuda::DeviceInfo &device,
                                const Options &opt) {
  std::vector<size_t> runnable;
  for (size_t i = 0; i < modules.size(); ++i) {
    // A pack holds modules for several chips: sm_90a code runs on compute
    // capability 9.0 only.
    if (auto arch = lq::cuda::deviceArch(modules[i].info, device); !arch)
      std::printf("SKIP %s: %s\n", modules[i].name.c_str(),
                  arch.error().c_str());
    else
      runnable.push_back(i);
  }
  std::vector<std::optional<lq::Result<std::string>>> images(modules.size());
  if (!opt.driverJit)
    parallelFor(runnable.size(), opt.jobs, [&](size_t r) {
      size_t i = runnable[r];
      images[i] = lq::cuda::assemblePackModule(modules[i], device);
    });
  std::vector<Loaded> loaded;
  for (size_t i : runnable) {
    lq::cuda::PackModule &m = modules[i];
    Case c("load " + m.name + (opt.driverJit ? " (driver JIT)" : " (assembled)"));
    using R = lq::Result<std::unique_ptr<GpuLauncher>>;
    R launcher = opt.driverJit    ? GpuLauncher::load(m.ptx, m.info)
                 : images[i]->ok() ? GpuLauncher::load(**images[i], m.info)
                                   : R::failure(images[i]->error());
    CHECK_OK(c, launcher);
    loaded.push_back({m, launcher.ok() ? std::move(*launcher) : nullptr});
  }
  return loaded;
}

void runQuantizeModules(std::vector<Loaded> &loaded, bool quick,
                        std::mt19937 &rng) {
  for (Loaded &l : loaded) {
    if (!l.launcher || !l.module.info.quantizeOnly)
      continue;
    std::vector<std::array<int64_t, 2>> shapes = {{1, 1}, {3, 7}, {17, 64}};
    if (!quick)
      for (std::array<int64_t, 2> s : {std::array<int64_t, 2>{129, 33},
                                       {1000, 3}, {5, 1001}, {300, 257}})
        shapes.push_back(s);
    bool luq = l.module.info.spec.lhs.format == Format::Log4;
    for (size_t i = 0; i < shapes.size(); ++i)
      runQuantizeCase(l, shapes[i][0], shapes[i][1], i % 2 == 0, false, false,
                      rng);
    runQuantizeCase(l, 19, 23, true, false, true, rng);
    if (luq) {
      runQuantizeCase(l, 31, 45, false, true, false, rng);
      runQuantizeCase(l, 19, 23, true, true, true, rng);
    }
  }
}

/// Every tile, copy variant and placement of a module ran.
void checkKernelsReached(const Loaded &l,
                         const std::set<std::string> &kernelsUsed) {
  Case c("gemm " + l.module.name + ": shapes reach every tile, copy "
         "variant and placement");
  // On sm_90a the aligned quantize-once GEMM is always the TMA one.
  bool tma = l.module.info.spec.target == lq::Target::CudaSm90a;
  std::vector<std::string> kernels;
  for (const auto &t : l.module.info.tiles) {
    kernels.push_back(lq::cuda::gemmKernel(t, true));
    kernels.push_back(lq::cuda::gemmKernel(t, false));
    if (tma)
      kernels.push_back(lq::cuda::gemmTmaKernel(t));
    if (l.launcher->hasPackedLhsVariant())
      kernels.push_back(tma ? lq::cuda::gemmTmaKernel(t, /*packedLhs=*/true)
                            : lq::cuda::gemmKernel(t, true, /*packedLhs=*/true));
  }
  if (lq::cuda::hasInt8Gemm(l.module.info.spec))
    for (const lq::cuda::WsTile &t : lq::cuda::wsTiles())
      kernels.push_back(lq::cuda::gemmWsKernel(t));
  for (const std::string &k : kernels)
    CHECK_MSG(c, kernelsUsed.count(k), k + " never ran");
}

/// The module loaded as the runtime loads generated kernels: each on its
/// first use (here from the module's assembled image). A first launch must
/// ask for exactly the kernels planGemmLaunch names, later launches of the
/// same placement for none, and every result must match the core as the
/// whole module's does.
void runLazyCases(Loaded &whole, std::vector<Loaded> &loaded,
                  const lq::cuda::DeviceInfo &device, std::mt19937 &rng) {
  const lq::cuda::PackModule &m = whole.module;
  auto image = std::make_shared<lq::Result<std::string>>(
      lq::cuda::assemblePackModule(m, device));
  auto requests = std::make_shared<std::vector<std::vector<std::string>>>();
  Loaded lazy{m, nullptr};
  {
    Case c("lazy " + m.name + ": a launcher that loads kernels on first use");
    if (!CHECK_OK(c, *image))
      return;
    auto launcher = GpuLauncher::load(
        m.info, [image, requests](const std::vector<std::string> &names) {
          requests->push_back(names);
          return lq::Result<std::vector<std::string>>(
              std::vector<std::string>{**image});
        });
    if (!CHECK_OK(c, launcher))
      return;
    lazy.launcher = std::move(*launcher);
  }
  std::set<std::string> used;
  std::vector<std::string> planned;
  auto plan = [&](const lq::LaunchArgs &args) {
    auto p = lq::cuda::planGemmLaunch(m.info, args, device);
    planned = p ? p->kernels : std::vector<std::string>{"(no plan)"};
  };
  // Many column tiles (the quantize-once placement where the module has
  // it), then the same shape again: nothing more to load.
  GemmCase wide{40, 600, 96, true};
  runGemmCase(lazy, loaded, wide, rng, used, plan);
  runGemmCase(lazy, loaded, wide, rng, used);
  Case c("lazy " + m.name + ": the first launch loads the planned kernels");
  CHECK_MSG(c, requests->size() == 1,
            std::to_string(requests->size()) + " requests");
  if (!requests->empty()) {
    std::set<std::string> asked(requests->front().begin(),
                                requests->front().end());
    std::set<std::string> want(planned.begin(), planned.end());
    std::string text;
    for (const std::string &k : requests->front())
      text += " " + k;
    CHECK_MSG(c, asked == want, "asked for" + text);
  }
}

/// Weight element (k, n) of the huge case: multiples of 1/4 in [-1.75,
/// 1.75], so that every sum of squares and magnitudes is exact in f64 and
/// the SAWB clip does not depend on the summation order.
float hugeWeight(int64_t k, int64_t n) {
  return 0.25f * float(int((n * 7 + k * 3) % 15) - 7);
}

/// Columns of the huge case checked against the core: both ends and both
/// sides of 2^28 and 2^29 columns, where 32-bit byte offsets of f32 data
/// wrap.
std::vector<int64_t> hugeColumns(int64_t n) {
  std::vector<int64_t> cols;
  for (int64_t at : {int64_t(0), int64_t(1) << 28, int64_t(1) << 29, n - 16})
    for (int64_t d = -16; d < 16; ++d)
      if (at + d >= 0 && at + d < n)
        cols.push_back(at + d);
  return cols;
}

/// A backward-data GEMM whose N-contiguous f32 weight has 2^29 + 1000
/// columns (4 GiB): every byte offset past 2^32 must land where it should
/// (the cp.async copies of sm_80 modules, the tensor maps of sm_90a). The
/// statistics are checked bit for bit; sampled output columns against the
/// numerics core.
void runHugeCase(Loaded &l, std::mt19937 &rng) {
  const int64_t M = 3, K = 2, N = (int64_t(1) << 29) + 1000;
  Case c("huge " + l.module.name + ": dx[3, 2^29 + 1000] = dy[3, 2] W[2, " +
         "2^29 + 1000], f32 byte offsets past 2^32");
  HostMatrix a(M, K, rng, false);
  std::vector<float> w(size_t(K * N));
  // Filled on every core; the partial sums are exact, so any order adds up
  // to the same moments.
  constexpr size_t kChunks = 256;
  std::vector<std::array<double, 2>> partial(kChunks, {0.0, 0.0});
  parallelFor(kChunks, std::max(1u, std::thread::hardware_concurrency()),
              [&](size_t chunk) {
    size_t begin = w.size() * chunk / kChunks;
    size_t end = w.size() * (chunk + 1) / kChunks;
    for (size_t i = begin; i < end; ++i) {
      float v = hugeWeight(int64_t(i) / N, int64_t(i) % N);
      w[i] = v;
      partial[chunk][0] += double(v) * double(v);
      partial[chunk][1] += std::fabs(double(v));
    }
  });
  double sumSquares = 0.0, sumMagnitudes = 0.0;
  for (const std::array<double, 2> &p : partial) {
    sumSquares += p[0];
    sumMagnitudes += p[1];
  }
  auto da = DeviceBuffer::allocate(size_t(M * K) * 4);
  auto dw = DeviceBuffer::allocate(w.size() * 4);
  auto dc = DeviceBuffer::allocate(size_t(M * N) * 4);
  if (!CHECK_OK(c, da) || !CHECK_OK(c, dw) || !CHECK_OK(c, dc))
    return;
  auto upA = cuda->copyToDevice(da->address(), a.f32.data(), a.f32.size() * 4,
                                stream);
  auto upW = cuda->copyToDevice(dw->address(), w.data(), w.size() * 4, stream);
  if (!CHECK_OK(c, upA) || !CHECK_OK(c, upW))
    return;
  std::vector<float>().swap(w);
  lq::LaunchArgs args;
  args.lhs = {da->data(), DType::F32, M, K, K, lq::Device::CUDA};
  args.rhs = {dw->data(), DType::F32, K, N, N, lq::Device::CUDA};
  args.out = {dc->data(), DType::F32, M, N, N, lq::Device::CUDA};
  args.seed = 77;
  args.stream = 5;
  auto choice = l.launcher->chooseGemm(args);
  if (CHECK_OK(c, choice))
    c.note("ran " + choice->kernel);
  auto status = l.launcher->launch(args, stream);
  if (!CHECK_OK(c, status) || !CHECK_OK(c, cuda->synchronize(stream)))
    return;
  float clip = num::sawbClipFromMoments(sumSquares, sumMagnitudes,
                                        double(K * N), 1.75f);
  CHECK_BITS(c, status->rhsRange, clip);

  std::vector<int64_t> cols = hugeColumns(N);
  HostMatrix ws(K, int64_t(cols.size()), rng, false);
  for (int64_t k = 0; k < K; ++k)
    for (size_t j = 0; j < cols.size(); ++j)
      ws.set(size_t(k) * cols.size() + j, hugeWeight(k, cols[j]));
  Reference ra = quantizeReference(a, DType::F32, Format::Log4, 1, 0,
                                   std::nullopt, 0.0f, args.seed, args.stream);
  Reference rw = quantizeReference(ws, DType::F32, Format::SInt4, 1, 0,
                                   std::nullopt, status->rhsRange, args.seed,
                                   args.stream);
  CHECK_BITS(c, status->lhsScale, ra.scale);
  CHECK_BITS(c, status->rhsScale, rw.scale);
  std::vector<float> want(size_t(M) * cols.size());
  num::GemmResult r = num::quantizedGemm(
      {size_t(M), cols.size(), size_t(K)},
      {ra.codes.data(), numericsFormat(Format::Log4), ra.scale, false},
      {rw.codes.data(), numericsFormat(Format::SInt4), rw.scale, false}, {},
      {want.data(), nullptr, nullptr});
  if (!CHECK(c, r.status == num::Status::Ok))
    return;
  int mismatches = 0;
  for (int64_t m = 0; m < M; ++m)
    for (size_t j = 0; j < cols.size(); ++j) {
      float got = 0.0f;
      auto copied = cuda->copyToHost(
          &got, dc->address() + size_t(m * N + cols[j]) * 4, 4, stream);
      if (!CHECK_OK(c, copied) || !CHECK_OK(c, cuda->synchronize(stream)))
        return;
      float core = want[size_t(m) * cols.size() + j];
      if (!sameBits(got, core) && mismatches++ < 4)
        CHECK_MSG(c, false, "C(" + std::to_string(m) + ", " +
                                std::to_string(cols[j]) + "): kernel " +
                                bitsText(got) + ", core " + bitsText(core));
    }
  CHECK_MSG(c, mismatches == 0,
            std::to_string(mismatches) + " sampled outputs differ");
}

/// The huge case on the backward-data f32 module of each chip the device
/// runs.
void runHugeCases(std::vector<Loaded> &loaded, std::mt19937 &rng) {
  for (Loaded &l : loaded) {
    const GemmSpec &s = l.module.info.spec;
    if (l.launcher && !l.module.info.quantizeOnly &&
        roleOf(s) == "backward-data" && s.lhs.dtype == DType::F32 &&
        s.rhs.dtype == DType::F32 && s.samples == 1 && !s.hindsight &&
        !s.bias && s.output == DType::F32)
      runHugeCase(l, rng);
  }
}

void runGemmModules(std::vector<Loaded> &loaded, bool quick,
                    std::mt19937 &rng, Coverage &coverage,
                    const lq::cuda::DeviceInfo &device) {
  for (Loaded &l : loaded) {
    if (!l.launcher || l.module.info.quantizeOnly)
      continue;
    const GemmSpec &s = l.module.info.spec;
    // Packed operands can come from the GPU when the pack quantizes every
    // one of them.
    bool anyPacked = false, allQuantizable = true;
    for (const lq::OperandSpec *op : {&s.lhs, &s.rhs})
      if (op->dtype == DType::Packed4) {
        anyPacked = true;
        allQuantizable &= quantizerFor(loaded, op->format) != nullptr;
      }
    bool gpuQuantizable = anyPacked && allQuantizable;
    if (gpuQuantizable)
      coverage.add("gpu-quantized packed operand");
    std::set<std::string> kernelsUsed;
    for (const GemmCase &g : gemmCases(l, quick, rng, gpuQuantizable))
      runGemmCase(l, loaded, g, rng, kernelsUsed);
    runMisuseCase(l);
    if (!quick)
      checkKernelsReached(l, kernelsUsed);
    runLazyCases(l, loaded, device, rng);
  }
}

/// A few small launches of each GEMM module, for compute-sanitizer (which
/// slows kernels down a hundredfold): the fused GEMM with its fastest copy
/// (TMA on sm_90a, cp.async on sm_80), the quantize-once placement where
/// the module has it, and the unaligned `any` copies.
void runSanitizeCases(std::vector<Loaded> &loaded, std::mt19937 &rng) {
  size_t gemms = 0;
  for (Loaded &l : loaded) {
    if (!l.launcher || l.module.info.quantizeOnly)
      continue;
    ++gemms;
    const lq::cuda::GemmTile &t = l.module.info.tiles.front();
    bool packedLhs = l.launcher->hasPackedLhsVariant();
    std::vector<GemmCase> cases = {{33, 17, 64, true}, {17, 33, 21, false}};
    // Columns for three tiles and more: the quantize-once placement.
    if (packedLhs)
      cases.push_back({13, 4 * int64_t(t.bn) + 1, 40, true});
    bool int8 = lq::cuda::hasInt8Gemm(l.module.info.spec);
    if (int8) {
      GemmCase ws{130, 300, 200, true};
      ws.placement = lq::cuda::Placement::Int8;
      cases.push_back(ws);
    }
    std::set<std::string> used;
    for (const GemmCase &g : cases)
      runGemmCase(l, loaded, g, rng, used);
    Case c("sanitize " + l.module.name + ": the fused GEMM ran");
    bool tma = l.module.info.spec.target == lq::Target::CudaSm90a;
    std::vector<std::string> wanted = {
        tma ? lq::cuda::gemmTmaKernel(t) : lq::cuda::gemmKernel(t, true),
        lq::cuda::gemmKernel(t, false)};
    if (packedLhs)
      wanted.push_back(tma ? lq::cuda::gemmTmaKernel(t, true)
                           : lq::cuda::gemmKernel(t, true, true));
    if (int8)
      wanted.push_back(lq::cuda::gemmWsKernel(lq::cuda::wsTiles().front()));
    for (const std::string &k : wanted)
      CHECK_MSG(c, used.count(k), k + " never ran");
  }
  if (gemms == 0) {
    Case c("sanitize: a GEMM module to run");
    CHECK_MSG(c, false, "the selection holds quantize modules only");
  }
}

//===----------------------------------------------------------------------===//
// SASS: the instruction mix of a GEMM kernel
//===----------------------------------------------------------------------===//

using OpcodeCounts = std::map<std::string, int>;

/// Opcode counts per function of a `cuobjdump -sass` listing: "Function :
/// NAME" starts a function, "/*0a30*/ @!P0 IMMA.16832.S8.S8 R4, ... ;" is
/// an instruction (address, optional predicate, opcode with modifiers).
std::map<std::string, OpcodeCounts> parseSass(std::string_view listing) {
  std::map<std::string, OpcodeCounts> functions;
  OpcodeCounts *current = nullptr;
  auto trim = [](std::string_view s) {
    size_t begin = s.find_first_not_of(" \t{");
    return begin == std::string_view::npos ? std::string_view() : s.substr(begin);
  };
  while (!listing.empty()) {
    size_t newline = std::min(listing.find('\n'), listing.size());
    std::string_view line = trim(listing.substr(0, newline));
    listing.remove_prefix(std::min(newline + 1, listing.size()));
    if (line.rfind("Function : ", 0) == 0) {
      std::string_view name = line.substr(11);
      current = &functions[std::string(name.substr(0, name.find_first_of(" \t\r")))];
      continue;
    }
    size_t close = line.find("*/");
    if (!current || line.rfind("/*", 0) != 0 || close == std::string_view::npos ||
        close == 2 ||
        line.substr(2, close - 2).find_first_not_of("0123456789abcdef") !=
            std::string_view::npos)
      continue;
    std::string_view rest = trim(line.substr(close + 2));
    if (!rest.empty() && rest[0] == '@')
      rest = trim(rest.substr(std::min(rest.find(' '), rest.size())));
    std::string_view opcode = rest.substr(0, rest.find_first_of(" .;"));
    if (!opcode.empty())
      ++(*current)[std::string(opcode)];
  }
  return functions;
}

/// The instruction classes the SASS facts count: tensor cores (Hopper's
/// warpgroup HGMMA/IGMMA, mma.sync's HMMA/IMMA), shared memory, the copy
/// engines (cp.async LDGSTS, TMA UTMALDG) and local memory.
const char *const kSassClasses[] = {"HGMMA", "IGMMA", "IMMA",   "HMMA",
                                    "LDS",   "STS",   "LDSM",   "LDGSTS",
                                    "UTMALDG", "LDL", "STL"};

std::string sassSummary(const OpcodeCounts &counts) {
  std::string text;
  int total = 0;
  for (const auto &[opcode, n] : counts)
    total += n;
  for (const char *k : kSassClasses) {
    auto it = counts.find(k);
    text += std::string(k) + " " +
            std::to_string(it == counts.end() ? 0 : it->second) + ", ";
  }
  return text + std::to_string(total) + " instructions";
}

std::string mostFrequent(const OpcodeCounts &counts, size_t n) {
  std::vector<std::pair<int, std::string>> order;
  for (const auto &[opcode, count] : counts)
    order.push_back({-count, opcode});
  std::sort(order.begin(), order.end());
  std::string text;
  for (size_t i = 0; i < std::min(n, order.size()); ++i)
    text += (i ? ", " : "") + order[i].second + " " +
            std::to_string(-order[i].first);
  return text;
}

/// An executable on PATH, else in $CUDA_HOME/bin or /usr/local/cuda/bin;
/// empty when none.
std::string findTool(const std::string &name) {
  std::vector<std::string> dirs;
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  for (size_t begin = 0; begin <= path.size();) {
    size_t end = std::min(path.find(':', begin), path.size());
    dirs.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  if (const char *home = std::getenv("CUDA_HOME"))
    dirs.push_back(std::string(home) + "/bin");
  dirs.push_back("/usr/local/cuda/bin");
  for (const std::string &dir : dirs)
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0)
      return dir + "/" + name;
  return "";
}

/// What `command` prints (stderr too); an error when it fails.
lq::Result<std::string> runCommand(const std::string &command) {
  FILE *pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe)
    return lq::Result<std::string>::failure("cannot run " + command);
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;)
    output.append(buffer, n);
  int status = pclose(pipe);
  if (status != 0)
    return lq::Result<std::string>::failure(
        command + " failed (status " + std::to_string(status) + "): " +
        output.substr(0, 400));
  return output;
}

void testSassParser() {
  Case c("sass: cuobjdump listings are counted per function");
  const char *listing =
      "\n\tcode for sm_90a\n"
      "\t\tFunction : lq_gemm_64x64_tma\n"
      "\t.headerflags\t@\"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)\"\n"
      "        /*0000*/                   LDC R1, c[0x0][0x28] ;"
      "                 /* 0x00000a00ff017b82 */\n"
      "                                                          "
      "                 /* 0x000fe40000000800 */\n"
      "        /*0010*/              @!P0 UTMALDG.2D [UR8], [UR4] ;\n"
      "        /*0020*/                   IGMMA.64x64x32.S8.S8 R24, gdesc[UR8], RZ ;\n"
      "        /*0030*/               @P1 IGMMA.64x64x32.S8.S8 R24, gdesc[UR12], R24 ;\n"
      "        /*0040*/                   LDS.128 R4, [R2] ;\n"
      "        /*0050*/                   EXIT ;\n"
      "\t\t..........\n\n"
      "\t\tFunction : lq_stats_lhs\n"
      "        /*0000*/                   LDL R2, [R1] ;\n"
      "        /*0010*/                   STL [R1], R2 ;\n";
  auto functions = parseSass(listing);
  CHECK(c, functions.size() == 2);
  const OpcodeCounts &gemm = functions["lq_gemm_64x64_tma"];
  CHECK_MSG(c, gemm.at("IGMMA") == 2 && gemm.at("UTMALDG") == 1,
            sassSummary(gemm));
  CHECK_MSG(c, gemm.at("LDC") == 1 && gemm.at("LDS") == 1 && gemm.size() == 5,
            sassSummary(gemm));
  CHECK(c, gemm.count("LDL") == 0 && functions["lq_stats_lhs"].at("LDL") == 1);
  CHECK_MSG(c, sassSummary(gemm).find("IGMMA 2, IMMA 0,") != std::string::npos,
            sassSummary(gemm));
  CHECK_MSG(c, mostFrequent(gemm, 2) == "IGMMA 2, EXIT 1", mostFrequent(gemm, 2));
}

/// The SASS module of a chip: bwd_data_bf16 (a LUQ GEMM with the TMA
/// variant on sm_90a), else the first GEMM module.
const lq::cuda::PackModule *
sassModule(const std::vector<lq::cuda::PackModule> &modules,
           const std::string &chip) {
  const lq::cuda::PackModule *found = nullptr;
  for (const auto &m : modules)
    if (lq::cuda::chipName(m.info) == chip && !m.info.quantizeOnly &&
        (!found || m.name == "bwd_data_bf16." + chip))
      found = &m;
  return found;
}

/// The instruction mix of the module's main GEMM kernel (TMA on sm_90a,
/// cp.async on sm_80), with what it must and must not hold.
void sassFacts(const lq::cuda::PackModule &m, const std::string &cuobjdump) {
  const lq::cuda::GemmTile &t = m.info.tiles.front();
  bool hopper = m.info.spec.target == lq::Target::CudaSm90a;
  std::string kernel = hopper ? lq::cuda::gemmTmaKernel(t)
                              : lq::cuda::gemmKernel(t, true);
  Case c("sass " + kernel + " of " + m.name + ": tensor cores, " +
         (hopper ? "TMA" : "cp.async") + ", no local memory");
  auto cubin = lq::cuda::compilePtx(m.ptx, lq::cuda::chipName(m.info));
  ScratchDir dir;
  if (!CHECK_OK(c, cubin) || !CHECK_MSG(c, !dir.path.empty(), "no scratch directory"))
    return;
  dir.write("module.cubin", *cubin);
  auto listing = runCommand(cuobjdump + " -sass " + dir.path + "/module.cubin");
  if (!CHECK_OK(c, listing))
    return;
  auto functions = parseSass(*listing);
  auto it = functions.find(kernel);
  if (!CHECK_MSG(c, it != functions.end(),
                 "no function " + kernel + " among the " +
                     std::to_string(functions.size()) + " of the listing"))
    return;
  const OpcodeCounts &n = it->second;
  auto count = [&](const char *k) { return n.count(k) ? n.at(k) : 0; };
  c.note("SASS " + kernel + " (" + m.name + "): " + sassSummary(n));
  c.note("most frequent: " + mostFrequent(n, 12));
  CHECK_MSG(c, count("HGMMA") + count("IGMMA") + count("IMMA") + count("HMMA") > 0,
            "no tensor-core instruction");
  CHECK_MSG(c, count(hopper ? "UTMALDG" : "LDGSTS") > 0,
            hopper ? "no TMA load (UTMALDG)" : "no cp.async (LDGSTS)");
  CHECK_MSG(c, count("LDL") + count("STL") == 0, "local memory (LDL/STL)");
}

/// SASS facts of one GEMM kernel per chip of the selection.
int runSass(const Options &opt) {
  auto modules = selectModules(opt);
  if (!modules)
    return 1;
  std::string cuobjdump = findTool("cuobjdump");
  if (cuobjdump.empty()) {
    std::printf("SKIPPED: cuobjdump not found (PATH, $CUDA_HOME/bin, "
                "/usr/local/cuda/bin): no SASS facts\n");
    return failed ? 1 : kSkipped;
  }
  for (const char *chip : {"sm_90a", "sm_80"})
    if (const lq::cuda::PackModule *m = sassModule(*modules, chip))
      sassFacts(*m, cuobjdump);
  return failed ? 1 : 0;
}

int runPack(const Options &opt) {
  struct stat st;
  if (!opt.staticOnly && stat((opt.pack + "/index.txt").c_str(), &st) != 0) {
    std::printf("SKIPPED: no kernel pack at %s (no index.txt)\n",
                opt.pack.c_str());
    return kSkipped;
  }
  auto modules = selectModules(opt);
  if (!modules)
    return 1;
  Coverage coverage;
  if (!opt.sanitize)
    runStatics(*modules, opt.jobs, coverage);
  if (opt.staticOnly) {
    for (const auto &m : *modules)
      if (!m.info.quantizeOnly && quantizedByPack(m.info.spec, *modules))
        coverage.add("gpu-quantized packed operand");
    if (opt.module.empty())
      checkCoverage(coverage);
    return failed ? 1 : 0;
  }

  auto driver = CudaDriver::get();
  if (!driver) {
    std::printf("SKIPPED: %s\n", driver.error().c_str());
    return failed ? 1 : kSkipped;
  }
  cuda = *driver;
  auto device = openDevice();
  if (!device)
    return 1;
  std::vector<Loaded> loaded = loadModules(*modules, *device, opt);
  if (loaded.empty()) {
    std::printf("SKIPPED: no module of the selection runs on %s\n",
                device->name.c_str());
    return failed ? 1 : kSkipped;
  }
  std::mt19937 rng(opt.seed);
  if (opt.sanitize) {
    runSanitizeCases(loaded, rng);
    return failed ? 1 : 0;
  }
  runQuantizeModules(loaded, opt.quick, rng);
  runGemmModules(loaded, opt.quick, rng, coverage, *device);
  if (!opt.quick)
    runHugeCases(loaded, rng);
  if (opt.module.empty())
    checkCoverage(coverage);
  return failed ? 1 : 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: lq-gpu-test --toolchain\n"
               "       lq-gpu-test --driver\n"
               "       lq-gpu-test [--static | --sanitize | --sass] [--quick] "
               "[--driver-jit] [--chip sm_80|sm_90a] [--module NAME] "
               "[--seed N] [--jobs N] PACK_DIR\n");
  return 2;
}

/// The options; nullopt on a bad command line.
std::optional<Options> parseOptions(int argc, char **argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool value = i + 1 < argc;
    if (arg == "--toolchain")
      opt.toolchain = true;
    else if (arg == "--driver")
      opt.driver = true;
    else if (arg == "--quick")
      opt.quick = true;
    else if (arg == "--driver-jit")
      opt.driverJit = true;
    else if (arg == "--static")
      opt.staticOnly = true;
    else if (arg == "--sanitize")
      opt.sanitize = true;
    else if (arg == "--sass")
      opt.sass = true;
    else if (arg == "--module" && value)
      opt.module = argv[++i];
    else if (arg == "--chip" && value)
      opt.chip = argv[++i];
    else if (arg == "--seed" && value)
      opt.seed = uint32_t(std::strtoul(argv[++i], nullptr, 10));
    else if (arg == "--jobs" && value)
      opt.jobs = unsigned(std::max(1l, std::strtol(argv[++i], nullptr, 10)));
    else if (!arg.empty() && arg[0] != '-' && opt.pack.empty())
      opt.pack = arg;
    else
      return std::nullopt;
  }
  bool chipOk = opt.chip.empty() || opt.chip == "sm_80" || opt.chip == "sm_90a";
  if (int(opt.toolchain) + int(opt.driver) + int(!opt.pack.empty()) != 1 ||
      int(opt.staticOnly) + int(opt.sanitize) + int(opt.sass) > 1 || !chipOk)
    return std::nullopt;
  return opt;
}

int runDriver() {
  auto driver = CudaDriver::get();
  if (!driver) {
    std::printf("SKIPPED: %s\n", driver.error().c_str());
    return kSkipped;
  }
  cuda = *driver;
  {
    Case c("driver: primary context and a stream on device 0");
    auto context = cuda->usePrimaryContext(0);
    auto created = cuda->createStream();
    if (CHECK_OK(c, context) && CHECK_OK(c, created))
      stream = *created;
  }
  if (stream) {
    if (auto device = cuda->currentDevice())
      printDevice(*device);
    testDriver();
  }
  return failed ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  // A line per case as it finishes, also into a pipe: a run cut short by
  // a timeout or a faulting kernel keeps every line before it.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::optional<Options> opt = parseOptions(argc, argv);
  if (!opt)
    return usage();
  int result;
  if (opt->toolchain) {
    testModuleInfo();
    testPtxAssembly();
    testPtxasReport();
    testPackStamp();
    testSassParser();
    result = failed ? 1 : 0;
  } else if (opt->driver) {
    result = runDriver();
    if (result == kSkipped)
      return result;
  } else if (opt->sass) {
    result = runSass(*opt);
  } else {
    result = runPack(*opt);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return result;
}
