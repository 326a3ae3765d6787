//===- Bindings.h - what the extension's sources share ----------*- C++ -*-===//

#ifndef LQ_PYTHON_BINDINGS_H
#define LQ_PYTHON_BINDINGS_H

#include "lq/Runtime/Runtime.h"

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <utility>

namespace lq::python {

namespace py = pybind11;

/// Raised as lq.Error (a RuntimeError) with the runtime's message.
struct PyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T> T take(Result<T> result) {
  if (!result)
    throw PyError(result.error());
  return std::move(*result);
}

/// A launch's status as the dict lq.gemm and Kernel.launch return.
py::dict statusDict(const LaunchStatus &s);

/// lq._lq.gemm_host: lq.gemm's fast path (FastGemm.cpp).
void bindFastGemm(py::module_ &m);

} // namespace lq::python

#endif // LQ_PYTHON_BINDINGS_H
