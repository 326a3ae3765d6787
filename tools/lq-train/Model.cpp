//===- Model.cpp - networks whose GEMMs all go through Gemms --------------===//

#include "Model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

using namespace lq;
using namespace lq::train;

void Params::init(int64_t rows, int64_t fanIn, std::mt19937_64 &rng) {
  // Kaiming-uniform for ReLU networks.
  float bound = std::sqrt(6.0f / float(fanIn));
  std::uniform_real_distribution<float> dist(-bound, bound);
  w.resize(size_t(rows * fanIn));
  for (float &v : w)
    v = dist(rng);
  b.assign(size_t(rows), 0.0f);
  gw.resize(w.size());
  gb.resize(b.size());
  vw.assign(w.size(), 0.0f);
  vb.assign(b.size(), 0.0f);
}

namespace {

/// Column sums of a [rows, cols] matrix: a bias gradient.
void sumRows(const float *g, int64_t rows, int64_t cols, float *out) {
  std::fill(out, out + cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[c] += g[r * cols + c];
}

/// ReLU is fused into the forward GEMM: its output is positive exactly
/// where the pre-activation was, so the output masks the gradient.
void reluBackward(const float *out, float *dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    dout[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

class Dense : public Layer {
public:
  Dense(int64_t in, int64_t out, bool relu, int index, std::mt19937_64 &rng)
      : in(in), out(out), relu(relu), index(index) {
    p.init(out, in, rng);
  }
  int64_t outSize() const override { return out; }
  Params *params() override { return &p; }

  Result<bool> forward(const float *x, float *y, int64_t batch, Gemms &gemms,
                       StepReport &report) override {
    // Every input here is pixels, a ReLU or a max-pool: non-negative.
    return gemms.forward(x, p.w.data(), p.b.data(), y, batch, in, out, relu,
                         /*nonnegativeInput=*/true, index, report);
  }

  Result<bool> backward(const float *x, const float *y, float *dy, float *dx,
                        int64_t batch, Gemms &gemms,
                        StepReport &report) override {
    if (relu)
      reluBackward(y, dy, batch * out);
    // Backward-data first: in hindsight mode weightGrad updates the
    // estimate both GEMMs of the layer share.
    if (dx) {
      Result<bool> ok = gemms.backwardData(dy, p.w.data(), dx, batch, in, out,
                                           index, report);
      if (!ok)
        return ok;
    }
    sumRows(dy, batch, out, p.gb.data());
    return gemms.weightGrad(dy, x, p.gw.data(), batch, in, out, true, index,
                            report);
  }

private:
  int64_t in, out;
  bool relu;
  int index;
  Params p;
};

/// A valid (unpadded), stride-1 convolution with ReLU, as im2col GEMMs.
class Conv : public Layer {
public:
  Conv(int64_t h, int64_t w, int64_t c, int64_t oc, int64_t k, int index,
       std::mt19937_64 &rng)
      : h(h), w(w), c(c), oc(oc), k(k), oh(h - k + 1), ow(w - k + 1),
        index(index) {
    p.init(oc, k * k * c, rng);
  }
  int64_t outSize() const override { return oh * ow * oc; }
  Params *params() override { return &p; }

  Result<bool> forward(const float *x, float *y, int64_t batch, Gemms &gemms,
                       StepReport &report) override {
    im2col(x, batch);
    // [B*OH*OW, K*K*C] x [OC, K*K*C]^T: rows are output pixels, so the
    // product is the NHWC output.
    return gemms.forward(cols.data(), p.w.data(), p.b.data(), y,
                         batch * oh * ow, patch(), oc, /*relu=*/true,
                         /*nonnegativeInput=*/true, index, report);
  }

  /// The weight gradient reads the forward pass's columns, which are
  /// still those of this batch.
  Result<bool> backward(const float *, const float *y, float *dy, float *dx,
                        int64_t batch, Gemms &gemms,
                        StepReport &report) override {
    int64_t rows = batch * oh * ow;
    reluBackward(y, dy, rows * oc);
    if (dx) {
      dcols.resize(size_t(rows * patch()));
      Result<bool> ok = gemms.backwardData(dy, p.w.data(), dcols.data(), rows,
                                           patch(), oc, index, report);
      if (!ok)
        return ok;
      col2im(dx, batch);
    }
    sumRows(dy, rows, oc, p.gb.data());
    return gemms.weightGrad(dy, cols.data(), p.gw.data(), rows, patch(), oc,
                            true, index, report);
  }

private:
  int64_t patch() const { return k * k * c; }

  void im2col(const float *x, int64_t batch) {
    cols.resize(size_t(batch * oh * ow * patch()));
    float *dst = cols.data();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xo = 0; xo < ow; ++xo)
          for (int64_t ky = 0; ky < k; ++ky) {
            const float *row = x + ((b * h + y + ky) * w + xo) * c;
            dst = std::copy(row, row + k * c, dst);
          }
  }

  void col2im(float *dx, int64_t batch) {
    std::fill(dx, dx + batch * h * w * c, 0.0f);
    const float *src = dcols.data();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xo = 0; xo < ow; ++xo)
          for (int64_t ky = 0; ky < k; ++ky) {
            float *row = dx + ((b * h + y + ky) * w + xo) * c;
            for (int64_t i = 0; i < k * c; ++i)
              row[i] += *src++;
          }
  }

  int64_t h, w, c, oc, k, oh, ow;
  int index;
  Params p;
  std::vector<float> cols, dcols;
};

/// 2x2 max pooling, stride 2, NHWC.
class MaxPool : public Layer {
public:
  MaxPool(int64_t h, int64_t w, int64_t c) : h(h), w(w), c(c) {}
  int64_t outSize() const override { return (h / 2) * (w / 2) * c; }

  Result<bool> forward(const float *x, float *y, int64_t batch, Gemms &,
                       StepReport &) override {
    argmax.resize(size_t(batch * outSize()));
    int64_t i = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t oy = 0; oy < h / 2; ++oy)
        for (int64_t ox = 0; ox < w / 2; ++ox)
          for (int64_t ch = 0; ch < c; ++ch, ++i) {
            int64_t best = -1;
            float m = -std::numeric_limits<float>::infinity();
            for (int64_t dy = 0; dy < 2; ++dy)
              for (int64_t dx = 0; dx < 2; ++dx) {
                int64_t at = ((b * h + 2 * oy + dy) * w + 2 * ox + dx) * c + ch;
                // NaN wins, so that a non-finite input reaches the loss.
                if (best < 0 || x[at] > m || std::isnan(x[at]))
                  m = x[at], best = at;
              }
            y[i] = m;
            argmax[size_t(i)] = best;
          }
    return true;
  }

  Result<bool> backward(const float *, const float *, float *dy, float *dx,
                        int64_t batch, Gemms &, StepReport &) override {
    if (!dx)
      return true;
    std::fill(dx, dx + batch * h * w * c, 0.0f);
    for (size_t i = 0; i < argmax.size(); ++i)
      dx[argmax[i]] += dy[i];
    return true;
  }

private:
  int64_t h, w, c;
  std::vector<int64_t> argmax;
};

} // namespace

Result<Net> Net::make(const std::string &name, int64_t height, int64_t width,
                      std::mt19937_64 &rng) {
  Net net;
  net.inputElements = height * width;
  if (name == "mlp") {
    std::vector<int64_t> widths = {height * width, 512, 256, 10};
    for (size_t l = 0; l + 1 < widths.size(); ++l)
      net.layers.push_back(std::make_unique<Dense>(
          widths[l], widths[l + 1], l + 2 < widths.size(), int(l), rng));
    net.description = "MLP " + std::to_string(height * width) + "-512-256-10";
  } else if (name == "cnn") {
    // Two 5x5 convolutions and 2x2 pools leave at least one pixel.
    if (height < 16 || width < 16)
      return Result<Net>::failure("the CNN needs images of at least 16x16, "
                                  "got " + std::to_string(height) + "x" +
                                  std::to_string(width));
    int64_t h1 = height - 4, w1 = width - 4;
    int64_t h2 = h1 / 2 - 4, w2 = w1 / 2 - 4;
    net.layers.push_back(std::make_unique<Conv>(height, width, 1, 16, 5, 0, rng));
    net.layers.push_back(std::make_unique<MaxPool>(h1, w1, 16));
    net.layers.push_back(std::make_unique<Conv>(h1 / 2, w1 / 2, 16, 32, 5, 1, rng));
    net.layers.push_back(std::make_unique<MaxPool>(h2, w2, 32));
    net.layers.push_back(std::make_unique<Dense>((h2 / 2) * (w2 / 2) * 32, 10,
                                                 false, 2, rng));
    net.description = "CNN conv5x5x16-pool-conv5x5x32-pool-fc10";
  } else {
    return Result<Net>::failure("unknown model '" + name +
                                "': expected mlp or cnn");
  }
  net.acts.resize(net.layers.size() + 1);
  net.grads.resize(net.layers.size() + 1);
  return net;
}

Result<bool> Net::forward(const float *input, int64_t batch, Gemms &gemms,
                          StepReport &report) {
  batchInput = input;
  for (size_t l = 0; l < layers.size(); ++l) {
    acts[l + 1].resize(size_t(batch * layers[l]->outSize()));
    Result<bool> ok = layers[l]->forward(layerInput(l), acts[l + 1].data(),
                                         batch, gemms, report);
    if (!ok)
      return ok;
  }
  return true;
}

Result<bool> Net::backward(const float *dlogits, int64_t batch, Gemms &gemms,
                           StepReport &report) {
  grads.back().assign(dlogits, dlogits + acts.back().size());
  for (size_t l = layers.size(); l-- > 0;) {
    float *din = nullptr;
    if (l > 0) {
      grads[l].resize(acts[l].size());
      din = grads[l].data();
    }
    Result<bool> ok =
        layers[l]->backward(layerInput(l), acts[l + 1].data(),
                            grads[l + 1].data(), din, batch, gemms, report);
    if (!ok)
      return ok;
  }
  return true;
}

std::vector<Params *> Net::parameters() {
  std::vector<Params *> all;
  for (auto &layer : layers)
    if (Params *p = layer->params())
      all.push_back(p);
  return all;
}

namespace {

/// Elements per thread below which an optimizer pass stays on the calling
/// thread: handing work over costs microseconds, these passes are memory
/// bound at several elements per nanosecond.
constexpr int64_t kGrain = 32768;

/// True when no element of [v, v + n) is NaN or infinite. Branch-free
/// (the compiler vectorizes it): an exponent of all ones, plus one at its
/// lowest bit, carries into the sign bit.
bool allFinite(const float *v, int64_t n) {
  uint32_t carries = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], sizeof bits);
    carries |= (bits & 0x7f800000u) + 0x00800000u;
  }
  return !(carries & 0x80000000u);
}

/// allFinite over a tensor, on `gemms`' threads.
bool allFinite(const std::vector<float> &values, Gemms &gemms) {
  std::atomic<bool> finite{true};
  gemms.parallelFor(
      int64_t(values.size()), kGrain, [&](int64_t begin, int64_t end) {
        // In blocks, so that a bad value ends the pass early.
        constexpr int64_t kBlock = 4096;
        for (int64_t b = begin; b < end && finite.load(std::memory_order_relaxed);
             b += kBlock)
          if (!allFinite(values.data() + b, std::min(kBlock, end - b)))
            finite.store(false, std::memory_order_relaxed);
      });
  return finite.load();
}

/// SGD with momentum and L2 decay on [0, n) of one tensor; the distinct
/// restrict pointers let the compiler vectorize without alias checks.
void sgdUpdate(float *__restrict w, float *__restrict velocity,
               const float *__restrict grad, int64_t n, float lr,
               float momentum, float decay) {
  for (int64_t i = 0; i < n; ++i) {
    float v = momentum * velocity[i] + grad[i] + decay * w[i];
    velocity[i] = v;
    w[i] -= lr * v;
  }
}

} // namespace

bool Net::gradientsFinite(Gemms &gemms) {
  for (auto &layer : layers)
    if (Params *p = layer->params())
      if (!allFinite(p->gw, gemms) || !allFinite(p->gb, gemms))
        return false;
  return true;
}

void Net::sgdStep(float lr, float momentum, float weightDecay,
                  Gemms &gemms) {
  for (auto &layer : layers) {
    Params *p = layer->params();
    if (!p)
      continue;
    gemms.parallelFor(
        int64_t(p->w.size()), kGrain, [&](int64_t begin, int64_t end) {
          sgdUpdate(p->w.data() + begin, p->vw.data() + begin,
                    p->gw.data() + begin, end - begin, lr, momentum,
                    weightDecay);
        });
    // Biases are not decayed.
    for (size_t i = 0; i < p->b.size(); ++i) {
      p->vb[i] = momentum * p->vb[i] + p->gb[i];
      p->b[i] -= lr * p->vb[i];
    }
  }
}
