//===- GpuPtxasTest.cpp - every generated GPU kernel assembles cleanly ----===//
//
// Without a GPU, the proof that the CUDA kernels are sound stops at the
// assembler: each module of the standard set is generated for each target
// and assembled by ptxas with warnings as errors (a spill is a warning),
// and its resource report is held to the kernels' budgets: no spills, no
// stack frame or local memory, registers within the occupancy each kernel
// is designed for, and the dynamic shared memory of every GEMM tile within
// the target's per-block limit.
//
//===----------------------------------------------------------------------===//

#include "lq/Conversion/Gpu/WgmmaDescriptor.h"
#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/PtxCompiler.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <set>

using namespace lq;

namespace {

struct Case {
  GpuModuleEntry entry;
  Target target;
  const char *chip;
};

// How ctest and failure messages name a case.
void PrintTo(const Case &c, std::ostream *os) {
  *os << c.chip << " " << c.entry.name;
}

std::vector<Case> allCases() {
  std::vector<Case> cases;
  for (lq::Target target : lq::cudaTargets())
    for (const GpuModuleEntry &entry : standardGpuModules())
      cases.push_back({entry, target, lq::targetName(target)});
  return cases;
}

/// Dynamic shared memory a block may use: A100 and H100 limits.
int64_t sharedLimit(Target target) {
  return target == Target::CudaSm80 ? 163 * 1024 : 227 * 1024;
}

/// Registers per thread that keep `blocks` blocks of `threads` threads
/// resident on one SM (64K registers).
int registerBudget(int threads, int blocks) {
  return std::min(255, 65536 / (threads * blocks));
}

class GpuPtxasTest : public testing::TestWithParam<Case> {};

TEST_P(GpuPtxasTest, AssemblesWithinBudget) {
  const Case &c = GetParam();
  GemmSpec spec = c.entry.spec;
  spec.target = c.target;
  Result<GpuModuleImage> image =
      c.entry.quantize
          ? compileGpuQuantize(spec.lhs.format, spec.lhs.dtype, c.target)
          : compileGpuGemm(spec);
  ASSERT_TRUE(image.ok()) << image.error();

  // Every kernel declares its parameters as the ABI's signature table says.
  size_t entries = 0;
  Status agrees = cuda::checkSignatures(image->ptx, &entries);
  EXPECT_TRUE(agrees.ok()) << agrees.error();
  EXPECT_GT(entries, 0u);

  Result<cuda::PtxasReport> report = cuda::ptxasReport(image->ptx, c.chip);
  ASSERT_TRUE(report.ok()) << report.error();

  // Every kernel the launcher looks up, and its designed occupancy.
  std::map<std::string, int> budget;
  bool floatOperand[2] = {spec.lhs.dtype != DType::Packed4,
                          spec.rhs.dtype != DType::Packed4};
  for (int side = 0; side < (c.entry.quantize ? 1 : 2); ++side) {
    if (!floatOperand[side])
      continue;
    budget[cuda::statsKernel(side == 0)] = registerBudget(cuda::kStatsThreads, 4);
    budget[cuda::quantKernel(side == 0)] = registerBudget(cuda::kQuantThreads, 8);
  }
  for (const cuda::GemmTile &tile : image->info.tiles) {
    EXPECT_LE(tile.smemBytes, sharedLimit(c.target))
        << cuda::gemmKernel(tile, false) << " shared memory";
    for (bool vec : {false, true})
      budget[cuda::gemmKernel(tile, vec)] = registerBudget(tile.threads, 1);
    bool packedVariant =
        spec.lhs.format == Format::Log4 && spec.lhs.dtype != DType::Packed4;
    if (packedVariant)
      budget[cuda::gemmKernel(tile, true, /*packedLhs=*/true)] =
          registerBudget(tile.threads, 1);
    if (c.target == Target::CudaSm90a) {
      budget[cuda::gemmTmaKernel(tile)] = registerBudget(tile.threads, 1);
      if (packedVariant)
        budget[cuda::gemmTmaKernel(tile, /*packedLhs=*/true)] =
            registerBudget(tile.threads, 1);
    }
  }
  if (spec.hindsight)
    budget[cuda::kFillKernel] = registerBudget(cuda::kFillThreads, 8);
  if (!c.entry.quantize && cuda::hasInt8Gemm(spec)) {
    for (int side = 0; side < 2; ++side)
      budget[cuda::quant8Kernel(side == 0)] =
          registerBudget(cuda::kQuantThreads, 8);
    for (const cuda::WsTile &tile : cuda::wsTiles()) {
      EXPECT_LE(tile.smemBytes(), sharedLimit(c.target))
          << cuda::gemmWsKernel(tile) << " shared memory";
      // The entry's cap; setmaxnreg then moves registers between roles.
      budget[cuda::gemmWsKernel(tile)] =
          registerBudget(cuda::kWsThreads, 1);
    }
  }

  std::set<std::string> seen;
  for (const cuda::KernelResources &k : report->kernels) {
    seen.insert(k.name);
    EXPECT_EQ(k.spillStores, 0) << k.name;
    EXPECT_EQ(k.spillLoads, 0) << k.name;
    EXPECT_EQ(k.stackBytes, 0) << k.name;
    EXPECT_EQ(k.localBytes, 0) << k.name;
    auto it = budget.find(k.name);
    ASSERT_NE(it, budget.end()) << "unexpected kernel " << k.name;
    EXPECT_LE(k.registers, it->second) << k.name << " registers";
  }
  for (const auto &[name, regs] : budget)
    EXPECT_TRUE(seen.count(name)) << "missing kernel " << name;
}

INSTANTIATE_TEST_SUITE_P(
    Modules, GpuPtxasTest, testing::ValuesIn(allCases()),
    [](const testing::TestParamInfo<Case> &info) {
      return std::string(info.param.chip) + "_" + info.param.entry.name;
    });

} // namespace

//===----------------------------------------------------------------------===//
// A first launch compiles only the kernels it runs
//===----------------------------------------------------------------------===//

namespace {

cuda::DeviceInfo hopper() {
  cuda::DeviceInfo d;
  d.name = "H200";
  d.computeMajor = 9;
  d.multiprocessors = 132;
  d.maxSharedOptin = 227 * 1024;
  return d;
}

/// Aligned device-memory layouts of an M x N x K GEMM of `spec` (the
/// pointers are never dereferenced).
LaunchArgs deviceArgs(const GemmSpec &spec, int64_t m, int64_t n, int64_t k) {
  auto ref = [](DType dtype, int64_t rows, int64_t cols, uintptr_t at) {
    int64_t stride = dtype == DType::Packed4 ? (cols + 1) / 2 : cols;
    return TensorRef{reinterpret_cast<void *>(at), dtype, rows, cols, stride,
                     Device::CUDA};
  };
  LaunchArgs args;
  args.lhs = spec.lhs.transposed ? ref(spec.lhs.dtype, k, m, 1u << 20)
                                 : ref(spec.lhs.dtype, m, k, 1u << 20);
  args.rhs = spec.rhs.transposed ? ref(spec.rhs.dtype, n, k, 2u << 20)
                                 : ref(spec.rhs.dtype, k, n, 2u << 20);
  args.out = ref(spec.output, m, n, 3u << 20);
  return args;
}

TEST(GpuFirstLaunch, PlansAndCompilesOnlyItsKernels) {
  GemmSpec spec = GemmSpec::backwardData(DType::BF16);
  spec.target = Target::CudaSm90a;
  Result<cuda::GpuModuleInfo> info = gpuModuleInfo(spec, false);
  ASSERT_TRUE(info.ok()) << info.error();
  // A large GEMM: statistics of both operands, each quantized once to
  // int8 codes, the persistent int8 GEMM in its wide tile (32 x 16 tiles
  // for 132 multiprocessors).
  LaunchArgs large = deviceArgs(spec, 4096, 4096, 4096);
  Result<cuda::LaunchPlan> plan = cuda::planGemmLaunch(*info, large, hopper());
  ASSERT_TRUE(plan.ok()) << plan.error();
  EXPECT_EQ(plan->kernels,
            (std::vector<std::string>{"lq_stats_lhs", "lq_stats_rhs",
                                      "lq_quant8_lhs", "lq_quant8_rhs",
                                      "lq_gemm_ws_128x256"}));
  Result<std::vector<std::string>> int8Cubins =
      compileGpuKernels(spec, false, plan->kernels, "sm_90a");
  ASSERT_TRUE(int8Cubins.ok()) << int8Cubins.error();
  EXPECT_EQ(int8Cubins->size(), plan->kernels.size());
  // The fused placement of the same launch: the quantize-once quantizer
  // of A to packed codes and the TMA GEMM reading them.
  plan = cuda::planGemmLaunch(*info, large, hopper(), cuda::Placement::Fused);
  ASSERT_TRUE(plan.ok()) << plan.error();
  EXPECT_EQ(plan->kernels,
            (std::vector<std::string>{"lq_stats_lhs", "lq_stats_rhs",
                                      "lq_quant_lhs",
                                      "lq_gemm_128x128_tma_pa"}));
  // Fewer output tiles than multiprocessors: the narrow int8 tile.
  plan = cuda::planGemmLaunch(*info, deviceArgs(spec, 1024, 1024, 4096),
                              hopper());
  ASSERT_TRUE(plan.ok()) << plan.error();
  EXPECT_EQ(plan->kernels.back(), "lq_gemm_ws_128x128");
  // K = 0 has no codes to map: the fused GEMM even when int8 is asked for.
  plan = cuda::planGemmLaunch(*info, deviceArgs(spec, 4096, 4096, 0),
                              hopper(), cuda::Placement::Int8);
  ASSERT_TRUE(plan.ok()) << plan.error();
  EXPECT_EQ(plan->kernels.back().find("lq_gemm_ws"), std::string::npos);
  // One column tile: LUQ fused into the GEMM, the small tile.
  plan = cuda::planGemmLaunch(*info, deviceArgs(spec, 64, 64, 512), hopper());
  ASSERT_TRUE(plan.ok()) << plan.error();
  EXPECT_EQ(plan->kernels,
            (std::vector<std::string>{"lq_stats_lhs", "lq_stats_rhs",
                                      "lq_gemm_64x64_tma"}));

  Result<std::vector<std::string>> cubins =
      compileGpuKernels(spec, false, plan->kernels, "sm_90a");
  ASSERT_TRUE(cubins.ok()) << cubins.error();
  ASSERT_EQ(cubins->size(), plan->kernels.size());
  for (size_t i = 0; i < cubins->size(); ++i) {
    // A cubin of its own kernel and no other of the module.
    const std::string &cubin = (*cubins)[i];
    EXPECT_EQ(cubin.compare(0, 4, "\x7f" "ELF"), 0) << plan->kernels[i];
    for (size_t j = 0; j < plan->kernels.size(); ++j)
      EXPECT_EQ(cubin.find(plan->kernels[j] + '\0') != std::string::npos,
                i == j)
          << plan->kernels[i] << " holds " << plan->kernels[j];
  }
}

TEST(GpuFirstLaunch, UnknownKernelIsAnError) {
  GemmSpec spec = GemmSpec::forward();
  spec.target = Target::CudaSm80;
  Result<GpuKernelBuild> build =
      GpuKernelBuild::create(spec, false, {"lq_gemm_128x128_tma"});
  ASSERT_FALSE(build.ok());
  EXPECT_NE(build.error().find("has no kernel lq_gemm_128x128_tma"),
            std::string::npos)
      << build.error();
  Result<GpuKernelBuild> one =
      GpuKernelBuild::create(spec, false, {"lq_gemm_64x64_vec"});
  ASSERT_TRUE(one.ok()) << one.error();
  EXPECT_NE(one->source().find("gpu.func @lq_gemm_64x64_vec"),
            std::string::npos);
  EXPECT_EQ(one->source().find("gpu.func @lq_gemm_64x64_any"),
            std::string::npos);
  EXPECT_EQ(one->source().find("gpu.func @lq_stats_lhs"), std::string::npos);
}

} // namespace

//===----------------------------------------------------------------------===//
// The ABI check itself
//===----------------------------------------------------------------------===//

namespace {

/// A kernel's PTX header with the given parameter declarations.
std::string entry(const std::string &name,
                  const std::vector<std::string> &decls) {
  std::string text = ".visible .entry " + name + "(\n";
  for (size_t i = 0; i < decls.size(); ++i)
    text += "\t.param " + decls[i] + " " + name + "_param_" +
            std::to_string(i) + (i + 1 < decls.size() ? ",\n" : "\n");
  return text + ")\n{\n\tret;\n}\n";
}

const std::vector<std::string> kStatsDecls = {
    ".u64 .ptr .global .align 1", ".u64", ".u64", ".u64",
    ".u64 .ptr .global .align 1"};

TEST(GpuAbiAgreement, CatchesOneSidedEdits) {
  EXPECT_TRUE(cuda::checkSignatures(entry("lq_stats_lhs", kStatsDecls)).ok());
  // A parameter the table does not have.
  std::vector<std::string> extra = kStatsDecls;
  extra.push_back(".u32");
  Status s = cuda::checkSignatures(entry("lq_stats_rhs", extra));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("declares 6 parameters, the ABI 5"),
            std::string::npos)
      << s.error();
  // Two parameters swapped: a pointer where the table has rows.
  std::vector<std::string> swapped = kStatsDecls;
  std::swap(swapped[0], swapped[1]);
  s = cuda::checkSignatures(entry("lq_stats_lhs", swapped));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("parameter 0 (in)"), std::string::npos)
      << s.error();
  // A tensor map passed as a pointer; a kernel outside the ABI.
  std::vector<std::string> fill = {".u64 .ptr .global .align 1", ".u64",
                                   ".u64 .ptr .global .align 1", ".u32",
                                   ".u32"};
  EXPECT_TRUE(cuda::checkSignatures(entry("lq_fill_epilogue", fill)).ok());
  s = cuda::checkSignatures(entry("lq_gemm_64x64_tma", fill));
  EXPECT_FALSE(s.ok());
  s = cuda::checkSignatures(entry("lq_mystery", fill));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("not in the GPU ABI"), std::string::npos);
}

TEST(GpuAbiAgreement, KernelKindsByName) {
  EXPECT_EQ(cuda::kernelKind("lq_gemm_128x128_tma_pa"), cuda::KernelKind::GemmTma);
  EXPECT_EQ(cuda::kernelKind("lq_gemm_64x64_vec_pa"), cuda::KernelKind::Gemm);
  EXPECT_EQ(cuda::kernelKind("lq_gemm_64x64_any"), cuda::KernelKind::Gemm);
  EXPECT_EQ(cuda::kernelKind("lq_quant_rhs"), cuda::KernelKind::Quant);
  EXPECT_EQ(cuda::kernelKind("lq_stats_lhs"), cuda::KernelKind::Stats);
  EXPECT_EQ(cuda::kernelKind("lq_fill_epilogue"), cuda::KernelKind::Fill);
  EXPECT_FALSE(cuda::kernelKind("lq_gemm_64x64_fast").has_value());
  // The launcher's parameter structs hold each parameter where the driver
  // reads it: one pointer per table entry, the tensor maps aligned.
  cuda::GemmParams params;
  EXPECT_EQ(params.pointers().size(),
            cuda::signature(cuda::KernelKind::GemmTma).size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&params.tmapA) % 64, 0u);
  EXPECT_EQ(cuda::StatsParams().pointers().size(),
            cuda::signature(cuda::KernelKind::Stats).size());
}

} // namespace

//===----------------------------------------------------------------------===//
// The persistent warp-specialized int8 GEMM
//===----------------------------------------------------------------------===//

namespace {

/// The PTX of one kernel of the sm_90a module of `spec`.
std::string kernelPtx(GemmSpec spec, const std::string &name) {
  spec.target = Target::CudaSm90a;
  Result<GpuKernelBuild> build = GpuKernelBuild::create(spec, false, {name});
  EXPECT_TRUE(build.ok()) << build.error();
  if (!build.ok())
    return "";
  Result<std::string> ptx = build->ptx();
  EXPECT_TRUE(ptx.ok()) << ptx.error();
  return ptx.ok() ? *ptx : "";
}

std::vector<std::string> lines(const std::string &text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos)
      end = text.size();
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

/// The steady-state k-step of the consumers: the innermost loop (a label
/// and the last branch back to it) that issues wgmma.mma_async.
struct KStep {
  int wgmma = 0, other = 0;
  bool waitsOne = false, releases = false;
};

KStep consumerKStep(const std::string &ptx) {
  std::vector<std::string> text = lines(ptx);
  KStep best;
  size_t bestSpan = SIZE_MAX;
  for (size_t i = 0; i < text.size(); ++i) {
    const std::string &label = text[i];
    if (label.rfind("$L__", 0) != 0 || label.back() != ':')
      continue;
    std::string target = label.substr(0, label.size() - 1) + ";";
    for (size_t j = text.size(); j-- > i + 1;) {
      if (text[j].find("bra") == std::string::npos ||
          text[j].size() < target.size() ||
          text[j].compare(text[j].size() - target.size(), target.size(),
                          target) != 0)
        continue;
      KStep step;
      for (size_t k = i + 1; k <= j; ++k) {
        const std::string &l = text[k];
        if (l.find(';') == std::string::npos || l.find(".reg") != std::string::npos)
          continue;
        if (l.find("wgmma.mma_async") != std::string::npos)
          ++step.wgmma;
        else
          ++step.other;
        step.waitsOne |= l.find("wgmma.wait_group.sync.aligned \t1;") !=
                         std::string::npos;
        step.releases |= l.find("mbarrier.arrive.shared") != std::string::npos;
      }
      if (step.wgmma > 0 && j - i < bestSpan) {
        best = step;
        bestSpan = j - i;
      }
      break;
    }
  }
  return best;
}

TEST(GpuWsKernel, CodeMapsUseTheDescriptorsSwizzle) {
  // Two SMP samples of a 300-row A with K = 1000 (pitch 1008): the box is
  // one 128-byte swizzle row of codes, the most a 128-byte swizzle allows,
  // by the tile's rows.
  cuda::Int8MapShape a = cuda::int8MapShape(2 * 300, 1000, 1008, 128);
  EXPECT_EQ(a.swizzle, CU_TENSOR_MAP_SWIZZLE_128B);
  EXPECT_EQ(a.dims[0], 1000u);
  EXPECT_EQ(a.dims[1], 600u);
  EXPECT_EQ(a.pitch % cuda::kInt8PitchAlign, 0u);
  EXPECT_EQ(a.box[0], 128u);
  EXPECT_EQ(a.box[1], 128u);
  for (const cuda::WsTile &tile : cuda::wsTiles()) {
    cuda::Int8MapShape b = cuda::int8MapShape(512, 64, 64, tile.bn);
    EXPECT_EQ(b.box[1], uint32_t(tile.bn));
    EXPECT_LE(b.box[1], 256u) << "a TMA box has at most 256 rows";
    // The ring's stages start on 1024-byte swizzle atoms.
    EXPECT_EQ((int64_t(tile.bm) + tile.bn) * cuda::kWsBK % 1024, 0);
  }
}

TEST(GpuWsKernel, RolesRegistersAndPipelineInThePtx) {
  for (const cuda::WsTile &tile : cuda::wsTiles()) {
    std::string name = cuda::gemmWsKernel(tile);
    std::string ptx = kernelPtx(GemmSpec::backwardData(DType::BF16), name);
    ASSERT_FALSE(ptx.empty());
    // 384 threads, one block: the producer warpgroup gives registers to
    // the two consumer warpgroups, within the 64 K of the multiprocessor.
    EXPECT_NE(ptx.find(".maxntid 384, 1, 1"), std::string::npos);
    EXPECT_NE(ptx.find(".minnctapersm 1"), std::string::npos);
    EXPECT_NE(ptx.find("setmaxnreg.dec.sync.aligned.u32 \t40;"),
              std::string::npos);
    EXPECT_NE(ptx.find("setmaxnreg.inc.sync.aligned.u32 \t232;"),
              std::string::npos);
    EXPECT_LE(128 * 40 + 256 * 232, 65536);
    // One thread's TMA copies into the ring, on the stages' mbarriers.
    EXPECT_NE(ptx.find("cp.async.bulk.tensor.2d.shared::cluster.global.tile."
                       "mbarrier::complete_tx::bytes"),
              std::string::npos);
    EXPECT_NE(ptx.find("mbarrier.arrive.expect_tx"), std::string::npos);
    // wgmma of the tile's width from 128-byte swizzled descriptors: bits
    // 62-63 = 1, stride byte offset 1024 (64 << 4), leading 16 (1 << 4).
    EXPECT_NE(ptx.find("wgmma.mma_async.sync.aligned.m64n" +
                       std::to_string(tile.bn) + "k32.s32.s8.s8"),
              std::string::npos);
    WgmmaDescriptor swizzled{0, 16, 1024, 0, WgmmaSwizzle::B128};
    EXPECT_NE(ptx.find(std::to_string(int64_t(swizzled.encode()))),
              std::string::npos)
        << "no 128-byte swizzle descriptor constant";

    KStep step = consumerKStep(ptx);
    // Four k32 wgmma per 128-code stage, one group left in flight, the
    // previous stage released; the rest is addressing and the wait.
    EXPECT_EQ(step.wgmma, cuda::kWsBK / 32) << name;
    EXPECT_TRUE(step.waitsOne) << name;
    EXPECT_TRUE(step.releases) << name;
    EXPECT_LE(step.other, 80) << name;
    std::printf("%s consumer k-step: %d wgmma, %d other instructions\n",
                name.c_str(), step.wgmma, step.other);
  }
}

} // namespace
