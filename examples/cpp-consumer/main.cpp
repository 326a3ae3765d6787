//===- main.cpp - a program that uses the installed lq package ------------===//
//
// Compiles the fused LUQ backward-data GEMM dx = Q_luq(dy) Q_sawb(W) through
// the public runtime API, launches it on a small random problem, checks the
// result bit for bit against the scalar numerics model and prints
//
//   lq-cpp-consumer: dx 37x45 checksum=<sum>
//   kernel=<compiled|disk-cache|memory-cache>
//
// Any error ends the program with a non-zero status.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"
#include "lq/Runtime/Runtime.h"

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace num = lq::numerics;

int main() {
  // dy[batch, out] and W[out, in] give dx[batch, in].
  const int64_t batch = 37, out = 53, in = 45;
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> dy(batch * out), w(out * in), dx(batch * in);
  for (float &v : dy)
    v = 1e-3f * normal(rng);
  for (float &v : w)
    v = 0.05f * normal(rng);

  lq::Runtime &rt = lq::Runtime::get();
  lq::CacheCounters before = rt.cacheCounters();
  lq::Result<lq::Kernel> kernel = rt.compile(lq::GemmSpec::backwardData());
  if (!kernel) {
    std::fprintf(stderr, "lq-cpp-consumer: compile failed: %s\n",
                 kernel.error().c_str());
    return 1;
  }
  lq::CacheCounters after = rt.cacheCounters();
  const char *source = after.compiles > before.compiles   ? "compiled"
                       : after.diskHits > before.diskHits ? "disk-cache"
                                                          : "memory-cache";

  lq::LaunchArgs args;
  args.lhs = lq::TensorRef::f32(dy.data(), batch, out);
  args.rhs = lq::TensorRef::f32(w.data(), out, in);
  args.out = lq::TensorRef::f32(dx.data(), batch, in);
  args.seed = 1234;
  args.stream = 7;
  lq::Result<lq::LaunchStatus> status = kernel->launch(args);
  if (!status) {
    std::fprintf(stderr, "lq-cpp-consumer: launch failed: %s\n",
                 status.error().c_str());
    return 1;
  }
  if (status->nonfinite) {
    std::fprintf(stderr, "lq-cpp-consumer: unexpected non-finite input\n");
    return 1;
  }

  // The same GEMM in the scalar model: LUQ codes of dy from the same random
  // stream, SAWB codes of W with the clip the kernel used, the exact GEMM.
  std::vector<int8_t> dyCodes(batch * out), wCodes(out * in);
  num::LuqResult luq =
      num::luqEncode(num::MatrixView::f32(dy.data(), batch, out),
                     {args.seed, args.stream, 0}, dyCodes.data());
  num::SawbResult sawb =
      num::sawbEncode(num::MatrixView::f32(w.data(), out, in), status->rhsRange,
                      num::SawbKind::Signed, wCodes.data());
  std::vector<float> ref(batch * in);
  num::GemmResult gemm = num::quantizedGemm(
      {size_t(batch), size_t(in), size_t(out)},
      {dyCodes.data(), num::Format::Log4, luq.alpha, false},
      {wCodes.data(), num::Format::Int4Signed, sawb.step, false}, {},
      {ref.data(), nullptr, nullptr});
  if (luq.status != num::Status::Ok || sawb.status != num::Status::Ok ||
      gemm.status != num::Status::Ok) {
    std::fprintf(stderr, "lq-cpp-consumer: the numerics model failed\n");
    return 1;
  }
  double checksum = 0.0;
  for (size_t i = 0; i < dx.size(); ++i) {
    if (num::floatToBits(dx[i]) != num::floatToBits(ref[i])) {
      std::fprintf(stderr,
                   "lq-cpp-consumer: dx[%zu] = %.9g, the numerics model "
                   "gives %.9g\n",
                   i, dx[i], ref[i]);
      return 1;
    }
    checksum += dx[i];
  }
  std::printf("lq-cpp-consumer: dx %lldx%lld checksum=%.9g kernel=%s\n",
              (long long)batch, (long long)in, checksum, source);
  return 0;
}
