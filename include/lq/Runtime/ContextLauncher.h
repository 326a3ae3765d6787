//===- ContextLauncher.h - a GPU module per CUDA context ---------*- C++ -*-===//
//
// Runtimes launch a kernel of one spec from whatever CUDA context the
// caller has made current (PyTorch's primary context of the tensor's
// device, say), or device 0's primary context when none is. A
// ContextLauncher loads its module there on first use, and again when a
// later launch comes from another context.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_CONTEXTLAUNCHER_H
#define LQ_RUNTIME_CONTEXTLAUNCHER_H

#include "lq/Runtime/GpuLauncher.h"

#include <functional>
#include <memory>
#include <mutex>

namespace lq::cuda {

/// The current context, or device 0's primary context made current when
/// there is none.
Result<CUcontext> currentOrPrimaryContext(CudaDriver &driver);

/// The target of the current context's device (or device 0's): sm_90a on
/// compute capability 9.0, sm_80 from 8.0 up; an error without a device
/// or on an older one.
Result<Target> currentTarget();

class ContextLauncher {
public:
  /// Makes the launcher for the current context's `device`.
  using Loader = std::function<Result<std::unique_ptr<GpuLauncher>>(
      const DeviceInfo &device)>;
  explicit ContextLauncher(Loader loader) : loader(std::move(loader)) {}

  /// The module loaded into the current context (on first use in it).
  Result<GpuLauncher *> get() const;

private:
  Loader loader;
  mutable std::mutex mutex;
  mutable std::unique_ptr<GpuLauncher> loaded;
  mutable CUcontext loadedContext = nullptr;
};

} // namespace lq::cuda

#endif // LQ_RUNTIME_CONTEXTLAUNCHER_H
