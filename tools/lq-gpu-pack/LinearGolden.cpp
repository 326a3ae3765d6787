//===- LinearGolden.cpp - one lq.torch.Linear step from the CPU kernels ---===//

#include "LinearGolden.h"

#include "lq/Runtime/Runtime.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <random>
#include <vector>

using namespace lq;

namespace {

struct Array {
  std::string name;
  int64_t rows, cols;
  std::vector<float> data;
};

/// Values of a normal distribution times `scale`: the inputs travel in the
/// file, so only this machine's draw matters.
Array normalArray(std::string name, int64_t rows, int64_t cols, float scale,
             std::mt19937 &rng, bool nonNegative = false) {
  std::normal_distribution<float> normal;
  Array a{std::move(name), rows, cols, std::vector<float>(rows * cols)};
  for (float &v : a.data) {
    v = normal(rng) * scale;
    if (nonNegative && v < 0)
      v = 0;
  }
  return a;
}

/// out = the `spec` GEMM of a and b on the host, seeded with seed/stream.
Result<Array> gemm(std::string name, GemmSpec spec, const Array &a,
                   const Array &b, const Array *bias, int64_t rows,
                   int64_t cols, uint64_t seed, uint32_t stream) {
  Result<Kernel> kernel = Runtime::get().compile(spec);
  if (!kernel)
    return Error{name + ": " + kernel.error()};
  Array out{std::move(name), rows, cols, std::vector<float>(rows * cols)};
  LaunchArgs args;
  args.lhs = TensorRef::f32(a.data.data(), a.rows, a.cols);
  args.rhs = TensorRef::f32(b.data.data(), b.rows, b.cols);
  args.out = TensorRef::f32(out.data.data(), rows, cols);
  if (bias) {
    args.bias = bias->data.data();
    args.biasLength = bias->cols;
  }
  args.seed = seed;
  args.stream = stream;
  Result<LaunchStatus> status = kernel->launch(args);
  if (!status)
    return Error{out.name + ": " + status.error()};
  return out;
}

Status write(const std::string &path, const std::string &contents) {
  if (llvm::Error e = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
        os << contents;
        return llvm::Error::success();
      }))
    return Error{"cannot write " + path + ": " + llvm::toString(std::move(e))};
  return Done{};
}

std::string inDir(const std::string &dir, const char *name) {
  llvm::SmallString<256> path(dir);
  llvm::sys::path::append(path, name);
  return std::string(path);
}

} // namespace

Status lq::writeLinearGolden(const std::string &dir) {
  // Shapes that leave partial tiles on every side.
  const int64_t batch = 40, in = 72, out = 24;
  const uint64_t seed = 0x5EED0123456789ull;
  const uint32_t stream = 7;
  std::mt19937 rng(2024);
  std::vector<Array> arrays;
  arrays.push_back(normalArray("x", batch, in, 1.0f, rng));
  arrays.push_back(normalArray("x_relu", batch, in, 1.0f, rng, true));
  arrays.push_back(normalArray("w", out, in, 0.2f, rng));
  arrays.push_back(normalArray("b", 1, out, 0.1f, rng));
  arrays.push_back(normalArray("dy", batch, out, 0.01f, rng));
  const Array x = arrays[0], xRelu = arrays[1], w = arrays[2], b = arrays[3],
              dy = arrays[4];
  GemmSpec fwd = GemmSpec::forward(), fwdU4 = GemmSpec::forward(DType::F32, true);
  fwd.bias = fwdU4.bias = true;
  Result<Array> results[] = {
      gemm("y", fwd, x, w, &b, batch, out, 0, 0),
      gemm("y_relu", fwdU4, xRelu, w, &b, batch, out, 0, 0),
      gemm("dx", GemmSpec::backwardData(), dy, w, nullptr, batch, in, seed,
           stream),
      gemm("dw", GemmSpec::weightGrad(), dy, x, nullptr, out, in, seed, stream),
      gemm("dw_relu", GemmSpec::weightGrad(DType::F32, 1, true), dy, xRelu,
           nullptr, out, in, seed, stream)};
  for (Result<Array> &r : results) {
    if (!r)
      return r.takeError();
    arrays.push_back(std::move(*r));
  }
  std::string index = "seed=" + std::to_string(seed) +
                      "\nstream=" + std::to_string(stream) + "\n";
  std::string bytes;
  for (const Array &a : arrays) {
    index += a.name + " " + std::to_string(a.rows) + " " +
             std::to_string(a.cols) + "\n";
    for (float v : a.data) {
      char le[4];
      llvm::support::endian::write32le(le, llvm::bit_cast<uint32_t>(v));
      bytes.append(le, 4);
    }
  }
  LQ_TRY(write(inDir(dir, "linear-step.txt"), index));
  return write(inDir(dir, "linear-step.f32"), bytes);
}
