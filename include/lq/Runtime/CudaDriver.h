//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// lq never links libcuda: a build machine may have only the toolkit's
// headers (and a stub library), and a process without a GPU must still
// start. CudaDriver opens libcuda.so.1 with dlopen on first use and wraps
// the entry points the launchers need. Every call is checked; a failure
// comes back as a Result whose message names the call and the driver's
// error name and description, e.g.
//
//   cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (out of memory)
//
// Symbols are looked up under the names cuda.h maps the API to
// (cuMemAlloc_v2, cuMemcpyHtoDAsync_v2, ...), so the ABI of each entry
// point is the one its declaration here describes.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_CUDADRIVER_H
#define LQ_RUNTIME_CUDADRIVER_H

#include "lq/Runtime/Runtime.h"

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace lq::cuda {

/// The CUDA entry points CudaDriver resolves, by the names cuda.h gives
/// them (some are macros for versioned symbols).
#define LQ_CUDA_DRIVER_FUNCTIONS(X)                                            \
  X(cuGetErrorName)                                                            \
  X(cuGetErrorString)                                                          \
  X(cuInit)                                                                    \
  X(cuDriverGetVersion)                                                        \
  X(cuDeviceGetCount)                                                          \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDeviceGetName)                                                           \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuCtxSetCurrent)                                                           \
  X(cuCtxGetCurrent)                                                           \
  X(cuCtxGetDevice)                                                            \
  X(cuCtxSynchronize)                                                          \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuModuleGetFunction)                                                       \
  X(cuFuncSetAttribute)                                                        \
  X(cuLaunchKernel)                                                            \
  X(cuMemAlloc)                                                                \
  X(cuMemFree)                                                                 \
  X(cuMemcpyHtoDAsync)                                                         \
  X(cuMemcpyDtoHAsync)                                                         \
  X(cuMemcpyDtoDAsync)                                                         \
  X(cuMemsetD8Async)                                                           \
  X(cuStreamCreate)                                                            \
  X(cuStreamDestroy)                                                           \
  X(cuStreamSynchronize)                                                       \
  X(cuPointerGetAttributes)                                                    \
  X(cuEventCreate)                                                             \
  X(cuEventRecord)                                                             \
  X(cuEventSynchronize)                                                        \
  X(cuStreamWaitEvent)                                                         \
  X(cuEventElapsedTime)                                                        \
  X(cuEventDestroy)                                                            \
  X(cuTensorMapEncodeTiled)

/// The device of the current context, as the launchers size work for it.
struct DeviceInfo {
  CUdevice device = 0;
  std::string name;
  int computeMajor = 0, computeMinor = 0;
  int multiprocessors = 0;
  /// The most dynamic shared memory a kernel may opt in to, in bytes.
  int maxSharedOptin = 0;
};

/// Where a pointer lives, as the driver reports it.
struct PointerInfo {
  /// The pointer is device memory (not host or unregistered memory).
  bool device = false;
  int deviceOrdinal = -1;
  /// The allocation that holds the pointer: [rangeStart, rangeStart +
  /// rangeSize).
  CUdeviceptr rangeStart = 0;
  size_t rangeSize = 0;
};

class CudaDriver {
public:
  /// The process-wide driver, initialized on first use: an error reads
  /// "no CUDA driver (libcuda.so.1 not found: ...)" when the library is
  /// missing, "no CUDA device (...)" when cuInit fails or no device is
  /// present. The outcome is decided once per process.
  static Result<CudaDriver *> get();

  /// "<call>: <error name> (<description>)".
  std::string errorText(const char *call, CUresult result) const;
  /// Ok for CUDA_SUCCESS, else errorText(call, result).
  Status check(const char *call, CUresult result) const;

  /// The driver's CUDA version, e.g. 13000.
  Result<int> driverVersion() const;
  Result<int> deviceCount() const;
  Result<CUdevice> device(int ordinal) const;
  Result<int> attribute(CUdevice_attribute attribute, CUdevice device) const;
  Result<std::string> deviceName(CUdevice device) const;
  /// Retains the primary context of device `ordinal` and makes it current
  /// on the calling thread.
  Result<CUcontext> usePrimaryContext(int ordinal) const;
  Result<CUcontext> currentContext() const;
  /// The device of the current context; an error when there is none.
  Result<DeviceInfo> currentDevice() const;

  /// Loads a PTX (text) or cubin image into the current context; a PTX
  /// image needs no terminating NUL here. The driver's JIT log is part of
  /// the error.
  Result<CUmodule> loadModule(const void *image, size_t size) const;
  Status unloadModule(CUmodule module) const;
  Result<CUfunction> function(CUmodule module, const std::string &name) const;
  Status setMaxDynamicSharedMemory(CUfunction function, int bytes) const;
  Status launch(CUfunction function, unsigned gridX, unsigned gridY,
                unsigned gridZ, unsigned blockX, unsigned sharedBytes,
                CUstream stream, void **params) const;

  Result<CUdeviceptr> allocate(size_t bytes) const;
  Status freeMemory(CUdeviceptr pointer) const;
  Status copyToDevice(CUdeviceptr dst, const void *src, size_t bytes,
                      CUstream stream) const;
  Status copyToHost(void *dst, CUdeviceptr src, size_t bytes,
                    CUstream stream) const;
  Status copyOnDevice(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                      CUstream stream) const;
  Status fill(CUdeviceptr dst, uint8_t value, size_t bytes,
              CUstream stream) const;
  Result<CUstream> createStream() const;
  Status destroyStream(CUstream stream) const;
  Status synchronize(CUstream stream) const;
  /// Waits for all work of the current context.
  Status synchronizeContext() const;
  Result<PointerInfo> pointerInfo(const void *pointer) const;

  /// An event for timing (elapsedMs) or, with `timing` false, only for
  /// ordering streams (cheaper to record).
  Result<CUevent> createEvent(bool timing = true) const;
  Status record(CUevent event, CUstream stream) const;
  /// Work enqueued on `stream` after this call waits for the work that
  /// preceded the last record of `event` (none if it was never recorded);
  /// the host does not wait.
  Status waitEvent(CUstream stream, CUevent event) const;
  /// Milliseconds between two recorded events; waits for `end`.
  Result<float> elapsedMs(CUevent start, CUevent end) const;
  Status destroyEvent(CUevent event) const;

  /// Writes to `map` a tiled tensor map (cuTensorMapEncodeTiled) of `rank`
  /// dimensions, innermost first: `dims` in elements, `strides` (rank - 1
  /// of them) in bytes, `box` and `elementStrides` in elements. The error
  /// lists the arguments, as the driver says only that one is invalid.
  Status encodeTiled(CUtensorMap &map, CUtensorMapDataType type, unsigned rank,
                     CUdeviceptr address, const cuuint64_t *dims,
                     const cuuint64_t *strides, const cuuint32_t *box,
                     const cuuint32_t *elementStrides,
                     CUtensorMapInterleave interleave,
                     CUtensorMapSwizzle swizzle,
                     CUtensorMapL2promotion l2Promotion,
                     CUtensorMapFloatOOBfill oobFill) const;

private:
  CudaDriver() = default;
  static Result<CudaDriver *> load();
  void *library = nullptr;
#define LQ_CUDA_DRIVER_POINTER(name) decltype(&name) name##Fn = nullptr;
  LQ_CUDA_DRIVER_FUNCTIONS(LQ_CUDA_DRIVER_POINTER)
#undef LQ_CUDA_DRIVER_POINTER
};

/// Device memory owned by one object: freed when it goes away.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  /// `bytes` of device memory in the current context (0 gives an empty
  /// buffer).
  static Result<DeviceBuffer> allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer();

  CUdeviceptr address() const { return pointer; }
  void *data() const { return reinterpret_cast<void *>(pointer); }
  size_t size() const { return bytes; }

private:
  void release();
  CUdeviceptr pointer = 0;
  size_t bytes = 0;
};

} // namespace lq::cuda

#endif // LQ_RUNTIME_CUDADRIVER_H
