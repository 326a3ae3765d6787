//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//

#include "lq/Runtime/CudaDriver.h"

#include <dlfcn.h>

#include <cstdio>
#include <iterator>
#include <utility>

using namespace lq;
using namespace lq::cuda;

// The symbol of an entry point: the name after cuda.h's macros (e.g.
// cuMemAlloc -> cuMemAlloc_v2), as a string.
#define LQ_CUDA_SYMBOL(name) LQ_CUDA_STRINGIFY(name)
#define LQ_CUDA_STRINGIFY(name) #name

namespace {

/// Forwards the error of `from` as a failure of another Result type.
} // namespace

Result<CudaDriver *> CudaDriver::load() {
  using R = Result<CudaDriver *>;
  // libcuda.so.1 is the driver's soname; the unversioned libcuda.so of a
  // toolkit is a stub for linking and cannot run anything.
  void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *why = dlerror();
    return R::failure(std::string("no CUDA driver (libcuda.so.1 not found: ") +
                      (why ? why : "unknown reason") + ")");
  }
  // Never freed: the driver stays loaded for the life of the process, as
  // modules and memory of its contexts may outlive any one user.
  auto *driver = new CudaDriver;
  driver->library = library;
#define LQ_CUDA_RESOLVE(name)                                                  \
  driver->name##Fn = reinterpret_cast<decltype(driver->name##Fn)>(            \
      dlsym(library, LQ_CUDA_SYMBOL(name)));                                   \
  if (!driver->name##Fn)                                                       \
    return R::failure("no CUDA driver (libcuda.so.1 lacks " LQ_CUDA_SYMBOL(    \
        name) ": the driver is older than the CUDA " +                         \
                      std::to_string(CUDA_VERSION / 1000) + "." +              \
                      std::to_string(CUDA_VERSION % 1000 / 10) +               \
                      " headers lq was built with)");
  LQ_CUDA_DRIVER_FUNCTIONS(LQ_CUDA_RESOLVE)
#undef LQ_CUDA_RESOLVE

  if (Status init = driver->check("cuInit", driver->cuInitFn(0)); !init)
    return R::failure("no CUDA device (" + init.error() + ")");
  Result<int> count = driver->deviceCount();
  if (!count)
    return R::failure("no CUDA device (" + count.error() + ")");
  if (*count == 0)
    return R::failure("no CUDA device (the driver sees none)");
  return driver;
}

Result<CudaDriver *> CudaDriver::get() {
  static const Result<CudaDriver *> driver = load();
  return driver;
}

std::string CudaDriver::errorText(const char *call, CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorNameFn(result, &name) != CUDA_SUCCESS || !name)
    name = "unknown CUDA error";
  if (cuGetErrorStringFn(result, &text) != CUDA_SUCCESS || !text)
    text = "no description";
  // The toolkit's stub library describes no error, not even this one.
  if (result == CUDA_ERROR_STUB_LIBRARY) {
    name = "CUDA_ERROR_STUB_LIBRARY";
    text = "libcuda.so.1 is the toolkit's stub library, not a driver";
  }
  return std::string(call) + ": " + name + " (" + text + ", code " +
         std::to_string(int(result)) + ")";
}

Status CudaDriver::check(const char *call, CUresult result) const {
  if (result == CUDA_SUCCESS)
    return Done{};
  return Status::failure(errorText(call, result));
}

Result<int> CudaDriver::driverVersion() const {
  int version = 0;
  if (Status s = check("cuDriverGetVersion", cuDriverGetVersionFn(&version));
      !s)
    return s.takeError();
  return version;
}

Result<int> CudaDriver::deviceCount() const {
  int count = 0;
  if (Status s = check("cuDeviceGetCount", cuDeviceGetCountFn(&count)); !s)
    return s.takeError();
  return count;
}

Result<CUdevice> CudaDriver::device(int ordinal) const {
  CUdevice device = 0;
  if (Status s = check("cuDeviceGet", cuDeviceGetFn(&device, ordinal)); !s)
    return s.takeError();
  return device;
}

Result<int> CudaDriver::attribute(CUdevice_attribute attribute,
                                  CUdevice device) const {
  int value = 0;
  if (Status s = check("cuDeviceGetAttribute",
                       cuDeviceGetAttributeFn(&value, attribute, device));
      !s)
    return s.takeError();
  return value;
}

Result<std::string> CudaDriver::deviceName(CUdevice device) const {
  char name[256] = {};
  if (Status s = check("cuDeviceGetName",
                       cuDeviceGetNameFn(name, sizeof(name) - 1, device));
      !s)
    return s.takeError();
  return std::string(name);
}

Result<CUcontext> CudaDriver::usePrimaryContext(int ordinal) const {
  Result<CUdevice> dev = device(ordinal);
  if (!dev)
    return dev.takeError();
  CUcontext context = nullptr;
  if (Status s = check("cuDevicePrimaryCtxRetain",
                       cuDevicePrimaryCtxRetainFn(&context, *dev));
      !s)
    return s.takeError();
  if (Status s = check("cuCtxSetCurrent", cuCtxSetCurrentFn(context)); !s)
    return s.takeError();
  return context;
}

Result<CUcontext> CudaDriver::currentContext() const {
  CUcontext context = nullptr;
  if (Status s = check("cuCtxGetCurrent", cuCtxGetCurrentFn(&context)); !s)
    return s.takeError();
  return context;
}

Result<DeviceInfo> CudaDriver::currentDevice() const {
  using R = Result<DeviceInfo>;
  Result<CUcontext> context = currentContext();
  if (!context)
    return context.takeError();
  if (*context == nullptr)
    return R::failure("no current CUDA context on this thread: make one "
                      "current first (CudaDriver::usePrimaryContext)");
  DeviceInfo info;
  if (Status s = check("cuCtxGetDevice", cuCtxGetDeviceFn(&info.device)); !s)
    return s.takeError();
  Result<std::string> name = deviceName(info.device);
  if (!name)
    return name.takeError();
  info.name = *name;
  struct {
    CUdevice_attribute attribute;
    int *value;
  } wanted[] = {
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.computeMajor},
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.computeMinor},
      {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info.multiprocessors},
      {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
       &info.maxSharedOptin}};
  for (auto &w : wanted) {
    Result<int> value = attribute(w.attribute, info.device);
    if (!value)
      return value.takeError();
    *w.value = *value;
  }
  return info;
}

Result<CUmodule> CudaDriver::loadModule(const void *image, size_t size) const {
  // PTX must end in a NUL for the driver; a copy gives every image one.
  std::string bytes(static_cast<const char *>(image), size);
  char errorLog[16384] = {};
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER,
                            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog,
                    reinterpret_cast<void *>(uintptr_t(sizeof(errorLog) - 1))};
  CUmodule module = nullptr;
  CUresult result =
      cuModuleLoadDataExFn(&module, bytes.c_str(), 2, options, values);
  if (result != CUDA_SUCCESS) {
    std::string message = errorText("cuModuleLoadDataEx", result);
    if (errorLog[0])
      message += "\n" + std::string(errorLog);
    return Result<CUmodule>::failure(message);
  }
  return module;
}

Status CudaDriver::unloadModule(CUmodule module) const {
  return check("cuModuleUnload", cuModuleUnloadFn(module));
}

Result<CUfunction> CudaDriver::function(CUmodule module,
                                        const std::string &name) const {
  CUfunction function = nullptr;
  CUresult result = cuModuleGetFunctionFn(&function, module, name.c_str());
  if (result != CUDA_SUCCESS)
    return Result<CUfunction>::failure(
        errorText("cuModuleGetFunction", result) + ": kernel '" + name + "'");
  return function;
}

Status CudaDriver::setMaxDynamicSharedMemory(CUfunction function,
                                             int bytes) const {
  return check("cuFuncSetAttribute",
               cuFuncSetAttributeFn(
                   function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                   bytes));
}

Status CudaDriver::launch(CUfunction function, unsigned gridX, unsigned gridY,
                          unsigned gridZ, unsigned blockX, unsigned sharedBytes,
                          CUstream stream, void **params) const {
  return check("cuLaunchKernel",
               cuLaunchKernelFn(function, gridX, gridY, gridZ, blockX, 1, 1,
                                sharedBytes, stream, params, nullptr));
}

Result<CUdeviceptr> CudaDriver::allocate(size_t bytes) const {
  CUdeviceptr pointer = 0;
  if (Status s = check("cuMemAlloc", cuMemAllocFn(&pointer, bytes)); !s)
    return Result<CUdeviceptr>::failure(s.error() + " allocating " +
                                        std::to_string(bytes) + " bytes");
  return pointer;
}

Status CudaDriver::freeMemory(CUdeviceptr pointer) const {
  return check("cuMemFree", cuMemFreeFn(pointer));
}

Status CudaDriver::copyToDevice(CUdeviceptr dst, const void *src, size_t bytes,
                                CUstream stream) const {
  return check("cuMemcpyHtoDAsync", cuMemcpyHtoDAsyncFn(dst, src, bytes, stream));
}

Status CudaDriver::copyToHost(void *dst, CUdeviceptr src, size_t bytes,
                              CUstream stream) const {
  return check("cuMemcpyDtoHAsync", cuMemcpyDtoHAsyncFn(dst, src, bytes, stream));
}

Status CudaDriver::copyOnDevice(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                CUstream stream) const {
  return check("cuMemcpyDtoDAsync", cuMemcpyDtoDAsyncFn(dst, src, bytes, stream));
}

Status CudaDriver::fill(CUdeviceptr dst, uint8_t value, size_t bytes,
                        CUstream stream) const {
  return check("cuMemsetD8Async", cuMemsetD8AsyncFn(dst, value, bytes, stream));
}

Result<CUstream> CudaDriver::createStream() const {
  CUstream stream = nullptr;
  if (Status s = check("cuStreamCreate",
                       cuStreamCreateFn(&stream, CU_STREAM_NON_BLOCKING));
      !s)
    return s.takeError();
  return stream;
}

Status CudaDriver::destroyStream(CUstream stream) const {
  return check("cuStreamDestroy", cuStreamDestroyFn(stream));
}

Status CudaDriver::synchronize(CUstream stream) const {
  return check("cuStreamSynchronize", cuStreamSynchronizeFn(stream));
}

Status CudaDriver::synchronizeContext() const {
  return check("cuCtxSynchronize", cuCtxSynchronizeFn());
}

Result<PointerInfo> CudaDriver::pointerInfo(const void *pointer) const {
  unsigned memoryType = 0;
  int ordinal = -1;
  CUdeviceptr start = 0;
  size_t size = 0;
  CUpointer_attribute attributes[] = {
      CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
      CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, CU_POINTER_ATTRIBUTE_RANGE_SIZE};
  void *values[] = {&memoryType, &ordinal, &start, &size};
  // Unlike cuPointerGetAttribute, this succeeds for a pointer the driver
  // does not know and reports a memory type of 0 for it.
  if (Status s = check("cuPointerGetAttributes",
                       cuPointerGetAttributesFn(
                           4, attributes, values,
                           reinterpret_cast<CUdeviceptr>(pointer)));
      !s)
    return s.takeError();
  PointerInfo info;
  info.device = memoryType == CU_MEMORYTYPE_DEVICE;
  info.deviceOrdinal = ordinal;
  info.rangeStart = start;
  info.rangeSize = size;
  return info;
}

Result<CUevent> CudaDriver::createEvent(bool timing) const {
  CUevent event = nullptr;
  if (Status s =
          check("cuEventCreate",
                cuEventCreateFn(&event, timing ? CU_EVENT_DEFAULT
                                               : CU_EVENT_DISABLE_TIMING));
      !s)
    return s.takeError();
  return event;
}

Status CudaDriver::record(CUevent event, CUstream stream) const {
  return check("cuEventRecord", cuEventRecordFn(event, stream));
}

Status CudaDriver::waitEvent(CUstream stream, CUevent event) const {
  return check("cuStreamWaitEvent", cuStreamWaitEventFn(stream, event, 0));
}

Result<float> CudaDriver::elapsedMs(CUevent start, CUevent end) const {
  if (Status s = check("cuEventSynchronize", cuEventSynchronizeFn(end)); !s)
    return s.takeError();
  float ms = 0.0f;
  if (Status s = check("cuEventElapsedTime", cuEventElapsedTimeFn(&ms, start, end));
      !s)
    return s.takeError();
  return ms;
}

Status CudaDriver::destroyEvent(CUevent event) const {
  return check("cuEventDestroy", cuEventDestroyFn(event));
}

Status CudaDriver::encodeTiled(
    CUtensorMap &map, CUtensorMapDataType type, unsigned rank,
    CUdeviceptr address, const cuuint64_t *dims, const cuuint64_t *strides,
    const cuuint32_t *box, const cuuint32_t *elementStrides,
    CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
    CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill) const {
  CUresult result = cuTensorMapEncodeTiledFn(
      &map, type, rank, reinterpret_cast<void *>(address), dims, strides, box,
      elementStrides, interleave, swizzle, l2Promotion, oobFill);
  if (result == CUDA_SUCCESS)
    return Done{};
  auto list = [](const auto *values, unsigned count) {
    std::string text = "{";
    for (unsigned i = 0; i < count; ++i)
      text += (i ? ", " : "") + std::to_string(values[i]);
    return text + "}";
  };
  // The data types by value, as CUDA 12.0 introduced them.
  static const char *const typeNames[] = {
      "UINT8",       "UINT16",   "UINT32",      "INT32",   "UINT64",
      "INT64",       "FLOAT16",  "FLOAT32",     "FLOAT64", "BFLOAT16",
      "FLOAT32_FTZ", "TFLOAT32", "TFLOAT32_FTZ"};
  std::string typeName = unsigned(type) < std::size(typeNames)
                             ? typeNames[type]
                             : std::to_string(int(type));
  char base[32];
  std::snprintf(base, sizeof(base), "0x%llx", (unsigned long long)address);
  return Status::failure(
      errorText("cuTensorMapEncodeTiled", result) + " for data type " +
      typeName + " at " + base + ": dims " + list(dims, rank) + ", strides " +
      list(strides, rank - 1) + " bytes, box " + list(box, rank) +
      ", element strides " + list(elementStrides, rank) + ", interleave " +
      std::to_string(int(interleave)) + ", swizzle " +
      std::to_string(int(swizzle)));
}

//===----------------------------------------------------------------------===//
// DeviceBuffer
//===----------------------------------------------------------------------===//

Result<DeviceBuffer> DeviceBuffer::allocate(size_t bytes) {
  DeviceBuffer buffer;
  if (bytes == 0)
    return buffer;
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return driver.takeError();
  Result<CUdeviceptr> pointer = (*driver)->allocate(bytes);
  if (!pointer)
    return pointer.takeError();
  buffer.pointer = *pointer;
  buffer.bytes = bytes;
  return buffer;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : pointer(std::exchange(other.pointer, 0)),
      bytes(std::exchange(other.bytes, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    release();
    pointer = std::exchange(other.pointer, 0);
    bytes = std::exchange(other.bytes, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::release() {
  if (!pointer)
    return;
  // A buffer exists only after the driver loaded, so get() succeeds here. A
  // failed free has no caller to report to: the memory belongs to a context
  // that is already gone or broken, and is reclaimed with it.
  if (Result<CudaDriver *> driver = CudaDriver::get())
    (void)(*driver)->freeMemory(pointer);
  pointer = 0;
  bytes = 0;
}
