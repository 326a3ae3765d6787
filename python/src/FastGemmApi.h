//===- FastGemmApi.h - _lq's fast path for other modules --------*- C++ -*-===//
//
// The package's other extension modules (the torch layer, _lq_torch) launch
// lq's kernels through _lq: one runtime, one kernel table and one error
// type per process. _lq exports this table of functions as the capsule
// kFastGemmApiCapsule; a module that imports it needs lq's headers only,
// never its libraries.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_PYTHON_FASTGEMMAPI_H
#define LQ_PYTHON_FASTGEMMAPI_H

#include "lq/Runtime/Runtime.h"

#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace lq::python {

/// What a host GEMM's spec depends on (lq.gemm_spec's role table does the
/// rest): the key of gemm_host's kernel table.
struct GemmKey {
  unsigned role = 0; // 0 forward, 1 backward_data, 2 weight_grad
  DType lhs = DType::F32, rhs = DType::F32, out = DType::F32;
  bool unsignedInput = false, bias = false, relu = false, hindsight = false;
  unsigned samples = 1; // at most 127

  uint32_t packed() const {
    return role | unsigned(unsignedInput) << 2 | unsigned(bias) << 3 |
           unsigned(relu) << 4 | unsigned(hindsight) << 5 |
           unsigned(lhs == DType::BF16) << 6 |
           unsigned(rhs == DType::BF16) << 7 |
           unsigned(out == DType::BF16) << 8 | samples << 9;
  }
};

/// The TensorRef that _tensors.as_tensor_ref makes of a 2-D tensor with
/// strides `inner` and `pitch` in elements, if it takes the tensor.
inline std::optional<TensorRef> rowMajor(void *data, DType dtype, int64_t rows,
                                         int64_t cols, int64_t inner,
                                         int64_t pitch) {
  if (rows > 0 &&
      ((cols > 1 && inner != 1) || (rows > 1 && cols > 0 && pitch < cols)))
    return std::nullopt;
  TensorRef t;
  t.data = data;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  t.rowStride = rows <= 1 ? std::max<int64_t>(cols, 1) : pitch;
  return t;
}

inline constexpr const char *kFastGemmApiCapsule = "lq._lq._fast_gemm_api";

/// Called with the GIL held. On failure each sets a Python error (lq.Error
/// for the runtime's errors) and returns null or false.
struct FastGemmApi {
  /// Bumped whenever the meaning of a function changes.
  static constexpr uint32_t kVersion = 1;
  /// The sizes of what crosses the capsule, mixed: a module built against
  /// other lq headers is refused even where no one bumped kVersion.
  static constexpr uint64_t layout() {
    uint64_t h = 0;
    for (uint64_t size :
         {sizeof(FastGemmApi), sizeof(GemmKey), sizeof(TensorRef),
          sizeof(LaunchArgs), sizeof(LaunchStatus), sizeof(DType)})
      h = h * 1000003u + size;
    return h;
  }
  uint32_t version;
  uint64_t layoutHash;
  /// The kernel of `key`, compiled on its first use from the spec that
  /// `specOf` (lq.gemm_spec) makes.
  const Kernel *(*kernelFor)(const GemmKey &key, PyObject *specOf);
  /// The output's shape for operands `lhs` and `rhs`, after the role's
  /// transposes.
  void (*outputShape)(const Kernel &kernel, const TensorRef &lhs,
                      const TensorRef &rhs, int64_t *rows, int64_t *cols);
  /// Launches as gemm_host does: the GIL released unless the launch is
  /// tiny.
  bool (*launch)(const Kernel &kernel, const LaunchArgs &args,
                 LaunchStatus *status);
};

} // namespace lq::python

#endif // LQ_PYTHON_FASTGEMMAPI_H
