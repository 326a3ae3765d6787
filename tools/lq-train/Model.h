//===- Model.h - networks whose GEMMs all go through Gemms -----*- C++ -*-===//
//
// Layers over row-major f32 batches; images are NHWC so that a convolution's
// im2col GEMM produces its output layout directly (rows = output pixels,
// columns = channels). Every multiply of every layer -- forward,
// backward-data, weight-gradient -- is a call of Gemms; the rest (im2col,
// pooling, bias sums, SGD) is plain C++.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TRAIN_MODEL_H
#define LQ_TRAIN_MODEL_H

#include "Gemms.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace lq::train {

/// Weights, biases, their gradients and momentum buffers.
struct Params {
  std::vector<float> w, b, gw, gb, vw, vb;
  void init(int64_t rows, int64_t fanIn, std::mt19937_64 &rng);
};

class Layer {
public:
  virtual ~Layer() = default;
  /// Output elements per sample.
  virtual int64_t outSize() const = 0;
  virtual Result<bool> forward(const float *in, float *out, int64_t batch,
                               Gemms &gemms, StepReport &report) = 0;
  /// `dout` is d loss / d out (this layer may modify it); `din` receives
  /// d loss / d in, or is null for the first layer.
  virtual Result<bool> backward(const float *in, const float *out, float *dout,
                                float *din, int64_t batch, Gemms &gemms,
                                StepReport &report) = 0;
  /// The layer's parameters, if any.
  virtual Params *params() { return nullptr; }
};

class Net {
public:
  /// "mlp": 784-512-256-10; "cnn": conv5x5(16)-pool-conv5x5(32)-pool-fc(10).
  static Result<Net> make(const std::string &name, int64_t height,
                          int64_t width, std::mt19937_64 &rng);

  std::string describe() const { return description; }
  int64_t inputSize() const { return inputElements; }

  /// Runs the batch; the logits are in logits(). The layers read `input`
  /// in place (no copy), so it must stay unchanged until backward().
  Result<bool> forward(const float *input, int64_t batch, Gemms &gemms,
                       StepReport &report);
  /// Back-propagates d loss / d logits through every layer.
  Result<bool> backward(const float *dlogits, int64_t batch, Gemms &gemms,
                        StepReport &report);
  const std::vector<float> &logits() const { return acts.back(); }
  /// No gradient holds NaN or Inf; checked on `gemms`' threads.
  bool gradientsFinite(Gemms &gemms);
  /// The parameters of every layer that has some, input to output.
  std::vector<Params *> parameters();
  /// SGD with momentum and L2 weight decay (not on biases), on `gemms`'
  /// threads.
  void sgdStep(float lr, float momentum, float weightDecay, Gemms &gemms);

private:
  const float *layerInput(size_t layer) const {
    return layer == 0 ? batchInput : acts[layer].data();
  }

  std::string description;
  int64_t inputElements = 0;
  std::vector<std::unique_ptr<Layer>> layers;
  /// acts[l + 1] is layer l's output; layer 0 reads batchInput.
  std::vector<std::vector<float>> acts, grads;
  const float *batchInput = nullptr;
};

} // namespace lq::train

#endif // LQ_TRAIN_MODEL_H
