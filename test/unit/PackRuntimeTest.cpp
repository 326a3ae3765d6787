//===- PackRuntimeTest.cpp - the Runtime API over a kernel pack -----------===//
//
// The GPU-only build's Runtime (no LLVM): which pack module a CUDA spec
// gets, and a clear error for everything it cannot serve. No GPU needed:
// modules are found at compile time and loaded at the first launch. Each
// case runs in a process of its own (the Runtime is a process singleton).
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/GpuPack.h"
#include "lq/Runtime/Runtime.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>
#include <unistd.h>

using namespace lq;
namespace fs = std::filesystem;

namespace {

void write(const fs::path &path, const std::string &text) {
  std::ofstream(path) << text;
}

/// A pack of one forward module for sm_90a (its PTX is never assembled
/// here), in a fresh directory that LQ_GPU_PACK names.
class PackRuntimeTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("lq-pack-runtime-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    cuda::PackStamp stamp;
    stamp.abi = cuda::kAbiVersion;
    stamp.chips = {"sm_90a"};
    stamp.date = "2026-01-01T00:00:00Z";
    write(dir / "STAMP", cuda::writePackStamp(stamp));
    cuda::GpuModuleInfo info;
    info.spec = forwardSm90a();
    info.tiles = {{64, 64, 64, 2, 128, 32768}};
    write(dir / "fwd.info", cuda::writeModuleInfo(info));
    write(dir / "fwd.ptx", "// never assembled\n");
    write(dir / "index.txt", "fwd\n");
    ::setenv("LQ_GPU_PACK", dir.c_str(), 1);
  }
  void TearDown() override { fs::remove_all(dir); }

  static GemmSpec forwardSm90a() {
    GemmSpec spec = GemmSpec::forward();
    spec.target = Target::CudaSm90a;
    return spec;
  }

  fs::path dir;
};

} // namespace

TEST_F(PackRuntimeTest, CompileFindsThePackModuleOfTheSpecAndChip) {
  Result<Kernel> kernel = Runtime::get().compile(forwardSm90a());
  ASSERT_TRUE(kernel) << kernel.error();
  EXPECT_EQ(kernel->spec().describe(), forwardSm90a().describe());
  ASSERT_TRUE(Runtime::get().compile(forwardSm90a()));
  CacheCounters counters = Runtime::get().cacheCounters();
  EXPECT_EQ(counters.compiles, 1u);
  EXPECT_EQ(counters.memoryHits, 1u);
}

TEST_F(PackRuntimeTest, ASpecOrChipThePackLacksIsNamed) {
  GemmSpec sm80 = forwardSm90a();
  sm80.target = Target::CudaSm80;
  Result<Kernel> kernel = Runtime::get().compile(sm80);
  ASSERT_FALSE(kernel);
  EXPECT_NE(kernel.error().find("holds no module of"), std::string::npos)
      << kernel.error();
  EXPECT_NE(kernel.error().find("sm_80"), std::string::npos);
  GemmSpec bias = forwardSm90a();
  bias.bias = true;
  EXPECT_FALSE(Runtime::get().compile(bias));
}

TEST_F(PackRuntimeTest, HostKernelsAndProgramsNeedTheFullBuild) {
  Result<Kernel> host = Runtime::get().compile(GemmSpec::forward());
  ASSERT_FALSE(host);
  EXPECT_NE(host.error().find("GPU-only build"), std::string::npos);
  EXPECT_FALSE(Runtime::get().compileProgram("func.func @f() { return }"));
  float x[4] = {1, 2, 3, 4};
  uint8_t codes[2];
  QuantizeArgs args;
  args.input = TensorRef::f32(x, 1, 4);
  args.output = TensorRef::packed4(codes, 1, 4);
  Result<QuantizeStatus> status = Runtime::get().quantize(args);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().find("host tensors"), std::string::npos);
}

TEST_F(PackRuntimeTest, WithoutAPackTheErrorSaysWhereToPointIt) {
  ::unsetenv("LQ_GPU_PACK");
  Result<Kernel> kernel = Runtime::get().compile(forwardSm90a());
  ASSERT_FALSE(kernel);
  EXPECT_NE(kernel.error().find("set LQ_GPU_PACK"), std::string::npos);
}

TEST_F(PackRuntimeTest, APackOfAnotherAbiIsRefusedWithItsDirectory) {
  cuda::PackStamp stamp;
  stamp.abi = cuda::kAbiVersion + 1;
  stamp.chips = {"sm_90a"};
  stamp.date = "2026-01-01T00:00:00Z";
  write(dir / "STAMP", cuda::writePackStamp(stamp));
  Result<Kernel> kernel = Runtime::get().compile(forwardSm90a());
  ASSERT_FALSE(kernel);
  EXPECT_NE(kernel.error().find(dir.string()), std::string::npos)
      << kernel.error();
}

TEST_F(PackRuntimeTest, ALaunchWithoutADeviceIsAnError) {
  Result<Kernel> kernel = Runtime::get().compile(forwardSm90a());
  ASSERT_TRUE(kernel) << kernel.error();
  std::vector<float> a(16), b(16), out(16);
  LaunchArgs args;
  args.lhs = TensorRef::f32(a.data(), 4, 4);
  args.rhs = TensorRef::f32(b.data(), 4, 4);
  args.out = TensorRef::f32(out.data(), 4, 4);
  for (TensorRef *t : {&args.lhs, &args.rhs, &args.out})
    t->device = Device::CUDA;
  // No GPU here (and on a GPU machine these are host pointers): an error
  // either way, never a crash.
  EXPECT_FALSE(kernel->launch(args));
}

// Without host kernels there is no worker team: one range, on the caller.
TEST(PackRuntimeParallelFor, OneRangeOnTheCallingThread) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  lq::Runtime::get().parallelFor(1 << 20, 1, [&](int64_t begin, int64_t end) {
    ranges.emplace_back(begin, end);
  });
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], std::make_pair(int64_t(0), int64_t(1) << 20));
  lq::Runtime::get().parallelFor(0, 1, [&](int64_t, int64_t) {
    ADD_FAILURE() << "no range for an empty count";
  });
}
