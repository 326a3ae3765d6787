//===- FastGemm.cpp - lq.gemm on host tensors in one call -----------------===//
//
// A small lq.gemm is bound by what happens around the kernel: looking at
// the operands, building and describing the spec, finding the kernel,
// making the output and the status. gemm_host does all of it in one call:
// it reads NumPy arrays through NumPy's C structs and torch tensors through
// a few attribute calls, and finds the kernel by a 16-bit key of what the
// spec depends on; lq.gemm_spec (Python, the one table of the roles) makes
// the spec only the first time a key is seen. A call it does not take
// exactly as lq.gemm's general path would (CUDA tensors, other objects,
// arguments of other types, anything that path rejects before launching)
// returns None, and the general path runs and reports errors in its words.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"
#include "FastGemmApi.h"

#include <pybind11/numpy.h>

#include <cstdint>
#include <optional>
#include <unordered_map>

using namespace lq;
using namespace lq::python;

namespace {

/// Interned names, made once and kept for the life of the process.
struct Names {
  PyObject *isCpu = PyUnicode_InternFromString("is_cpu");
  PyObject *dtype = PyUnicode_InternFromString("dtype");
  PyObject *shape = PyUnicode_InternFromString("shape");
  PyObject *stride = PyUnicode_InternFromString("stride");
  PyObject *dataPtr = PyUnicode_InternFromString("data_ptr");
  PyObject *newEmpty = PyUnicode_InternFromString("new_empty");
  PyObject *dtypeKeyword = Py_BuildValue("(s)", "dtype");
};

const Names &names() {
  static const Names *n = new Names;
  return *n;
}

/// torch.Tensor and the dtypes lq takes; null until torch is imported.
struct Torch {
  PyObject *tensor = nullptr, *float32 = nullptr, *bfloat16 = nullptr;
};

const Torch *torchObjects() {
  static Torch torch;
  if (torch.tensor)
    return &torch;
  PyObject *module = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");
  if (!module)
    return nullptr;
  py::handle m(module);
  // An import of torch still under way has not defined these yet.
  if (!py::hasattr(m, "Tensor") || !py::hasattr(m, "float32") ||
      !py::hasattr(m, "bfloat16") || !PyType_Check(m.attr("Tensor").ptr()))
    return nullptr;
  torch.float32 = py::object(m.attr("float32")).release().ptr();
  torch.bfloat16 = py::object(m.attr("bfloat16")).release().ptr();
  torch.tensor = py::object(m.attr("Tensor")).release().ptr();
  return &torch;
}

/// A C-level subtype test: torch's Tensor type has a Python
/// __instancecheck__ that isinstance would call.
bool isTensor(py::handle h, const Torch &torch) {
  return PyObject_TypeCheck(h.ptr(), (PyTypeObject *)torch.tensor);
}

/// A new reference, or null with the Python error cleared.
py::object attr(py::handle h, PyObject *name) {
  PyObject *v = PyObject_GetAttr(h.ptr(), name);
  if (!v)
    PyErr_Clear();
  return py::reinterpret_steal<py::object>(v);
}

py::object callMethod(py::handle h, PyObject *name) {
  PyObject *v = PyObject_CallMethodNoArgs(h.ptr(), name);
  if (!v)
    PyErr_Clear();
  return py::reinterpret_steal<py::object>(v);
}

/// The ints of a tuple of `n` ints (a torch.Size, strides).
bool intsOf(py::handle tuple, Py_ssize_t n, int64_t *out) {
  if (!tuple || !PyTuple_Check(tuple.ptr()) ||
      PyTuple_GET_SIZE(tuple.ptr()) != n)
    return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple.ptr(), i));
    if (out[i] == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
  }
  return true;
}

/// A host matrix and whether it is a torch tensor (else NumPy).
struct Matrix {
  TensorRef ref;
  bool torch = false;
};

/// float32 or uint16 (bf16 bits) in this machine's byte order.
std::optional<DType> numpyDType(const py::array &a) {
  py::dtype dtype = a.dtype();
  if (dtype.byteorder() != '=' && dtype.byteorder() != '|')
    return std::nullopt;
  if (dtype.num() == py::detail::npy_api::NPY_FLOAT_)
    return DType::F32;
  if (dtype.num() == py::detail::npy_api::NPY_USHORT_)
    return DType::BF16;
  return std::nullopt;
}

std::optional<Matrix> numpyMatrix(py::handle h, bool output) {
  auto a = py::reinterpret_borrow<py::array>(h);
  std::optional<DType> dtype = numpyDType(a);
  if (a.ndim() != 2 || !dtype || (output && !a.writeable()))
    return std::nullopt;
  int64_t item = a.itemsize();
  const ssize_t *strides = a.strides();
  if (strides[0] % item != 0 || strides[1] % item != 0)
    return std::nullopt;
  std::optional<TensorRef> t =
      rowMajor(const_cast<void *>(a.data()), *dtype, a.shape(0), a.shape(1),
               strides[1] / item, strides[0] / item);
  if (!t)
    return std::nullopt;
  return Matrix{*t, false};
}

/// Whether `h` is a CPU tensor of dtype float32 or bfloat16 (which).
std::optional<DType> torchHostDType(py::handle h, const Torch &torch) {
  py::object cpu = attr(h, names().isCpu);
  py::object dtype = attr(h, names().dtype);
  if (!cpu || cpu.ptr() != Py_True || !dtype)
    return std::nullopt;
  if (dtype.ptr() == torch.float32)
    return DType::F32;
  if (dtype.ptr() == torch.bfloat16)
    return DType::BF16;
  return std::nullopt;
}

std::optional<void *> torchData(py::handle h) {
  py::object p = callMethod(h, names().dataPtr);
  if (!p)
    return std::nullopt;
  void *data = PyLong_AsVoidPtr(p.ptr());
  if (!data && PyErr_Occurred()) {
    PyErr_Clear();
    return std::nullopt;
  }
  return data;
}

std::optional<Matrix> torchMatrix(py::handle h, const Torch &torch) {
  std::optional<DType> dtype = torchHostDType(h, torch);
  int64_t shape[2], strides[2];
  if (!dtype || !intsOf(attr(h, names().shape), 2, shape) ||
      !intsOf(callMethod(h, names().stride), 2, strides))
    return std::nullopt;
  std::optional<void *> data = torchData(h);
  if (!data)
    return std::nullopt;
  std::optional<TensorRef> t =
      rowMajor(*data, *dtype, shape[0], shape[1], strides[1], strides[0]);
  if (!t)
    return std::nullopt;
  return Matrix{*t, true};
}

std::optional<Matrix> hostMatrix(py::handle h, bool output) {
  if (py::isinstance<py::array>(h))
    return numpyMatrix(h, output);
  const Torch *torch = torchObjects();
  if (torch && isTensor(h, *torch))
    return torchMatrix(h, *torch);
  return std::nullopt;
}

/// A bias vector: its address and length, as _bias_pointer reads it.
struct Bias {
  const float *data = nullptr;
  int64_t length = 0;
};

std::optional<Bias> hostBias(py::handle h) {
  if (h.is_none())
    return Bias{};
  if (py::isinstance<py::array>(h)) {
    auto a = py::reinterpret_borrow<py::array>(h);
    std::optional<DType> dtype = numpyDType(a);
    if (a.ndim() != 1 || dtype != DType::F32 || a.strides()[0] % 4 != 0 ||
        (a.shape(0) > 1 && a.strides()[0] != 4))
      return std::nullopt;
    return Bias{static_cast<const float *>(a.data()), a.shape(0)};
  }
  const Torch *torch = torchObjects();
  if (!torch || !isTensor(h, *torch) ||
      torchHostDType(h, *torch) != DType::F32)
    return std::nullopt;
  int64_t length, stride;
  if (!intsOf(attr(h, names().shape), 1, &length) ||
      !intsOf(callMethod(h, names().stride), 1, &stride) ||
      (length > 1 && stride != 1))
    return std::nullopt;
  std::optional<void *> data = torchData(h);
  if (!data)
    return std::nullopt;
  return Bias{static_cast<const float *>(*data), length};
}

std::optional<bool> exactBool(py::handle h) {
  if (h.ptr() == Py_True || h.ptr() == Py_False)
    return h.ptr() == Py_True;
  return std::nullopt;
}

/// A Python int in [0, max].
std::optional<uint64_t> exactUnsigned(py::handle h, uint64_t max) {
  if (!PyLong_CheckExact(h.ptr()))
    return std::nullopt;
  unsigned long long v = PyLong_AsUnsignedLongLong(h.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return std::nullopt;
  }
  if (v > max)
    return std::nullopt;
  return uint64_t(v);
}

/// An in-hindsight estimate: none, or a float or int.
struct Estimate {
  bool given = false;
  float value = 0.0f;
};

std::optional<Estimate> maxEstimate(py::handle h) {
  if (h.is_none())
    return Estimate{};
  if (!PyFloat_Check(h.ptr()) && !PyLong_CheckExact(h.ptr()))
    return std::nullopt;
  double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return std::nullopt;
  }
  return Estimate{true, float(v)};
}

const char *const kRoles[] = {"forward", "backward_data", "weight_grad"};

/// Elements quantized plus multiply-adds / 16 of a launch that takes about
/// a microsecond: 16x16x16 is 768.
constexpr double kTinyLaunch = 2048;

std::optional<unsigned> roleIndex(py::handle h) {
  if (!PyUnicode_Check(h.ptr()))
    return std::nullopt;
  for (unsigned i = 0; i < 3; ++i)
    if (PyUnicode_CompareWithASCIIString(h.ptr(), kRoles[i]) == 0)
      return i;
  return std::nullopt;
}

/// The spelling of gemm_spec's dtypes.
const char *specDType(DType dtype) {
  return dtype == DType::BF16 ? "bf16" : "f32";
}

/// The kernel of `key`, compiled on its first use from the spec that
/// `specOf` (lq.gemm_spec) makes.
const Kernel &kernelFor(const GemmKey &key, py::handle specOf) {
  // Kept for the life of the process, like lq's own table of kernels:
  // destroying kernels at exit could come after the runtime is gone.
  static auto *kernels = new std::unordered_map<uint32_t, Kernel>;
  auto it = kernels->find(key.packed());
  if (it != kernels->end())
    return it->second;
  py::object spec = py::reinterpret_borrow<py::object>(specOf)(
      kRoles[key.role], specDType(key.lhs), specDType(key.rhs),
      py::arg("unsigned_input") = key.unsignedInput,
      py::arg("bias") = key.bias, py::arg("relu") = key.relu,
      py::arg("samples") = key.samples,
      py::arg("hindsight") = key.hindsight,
      py::arg("output") = specDType(key.out), py::arg("target") = "host");
  GemmSpec s = spec.cast<GemmSpec>();
  Result<Kernel> kernel = [&] {
    py::gil_scoped_release release;
    return Runtime::get().compile(s);
  }();
  return kernels->emplace(key.packed(), take(std::move(kernel)))
      .first->second;
}

/// The output lq.gemm makes when it is not given one: like `a` (a NumPy
/// array, or a torch tensor on a's device), uninitialized.
py::object newOutput(const Matrix &a, py::handle aObject, int64_t rows,
                     int64_t cols, bool bf16, TensorRef &ref) {
  std::vector<py::ssize_t> shape = {rows, cols};
  py::object out;
  if (!a.torch) {
    py::array array = bf16 ? py::array(py::array_t<uint16_t>(shape))
                           : py::array(py::array_t<float>(shape));
    ref.data = array.mutable_data();
    out = std::move(array);
  } else {
    const Torch &torch = *torchObjects();
    py::object size = py::make_tuple(rows, cols);
    PyObject *args[] = {aObject.ptr(), size.ptr(),
                        bf16 ? torch.bfloat16 : torch.float32};
    out = py::reinterpret_steal<py::object>(PyObject_VectorcallMethod(
        names().newEmpty, args, 2, names().dtypeKeyword));
    if (!out)
      throw py::error_already_set();
    std::optional<void *> data = torchData(out);
    if (!data)
      throw PyError("cannot read the address of a new output tensor");
    ref.data = *data;
  }
  ref.dtype = bf16 ? DType::BF16 : DType::F32;
  ref.rows = rows;
  ref.cols = cols;
  ref.rowStride = rows <= 1 ? std::max<int64_t>(cols, 1) : cols;
  return out;
}

/// The output's shape for a launch of `kernel` on `lhs` and `rhs`.
void apiOutputShape(const Kernel &kernel, const TensorRef &lhs,
                    const TensorRef &rhs, int64_t *rows, int64_t *cols) {
  const GemmSpec &spec = kernel.spec();
  *rows = spec.lhs.transposed ? lhs.cols : lhs.rows;
  *cols = spec.rhs.transposed ? rhs.rows : rhs.cols;
}

/// Launches with the GIL released, so that other Python threads run
/// meanwhile, unless the launch takes about a microsecond: then giving the
/// GIL up and taking it back would cost a tenth of the call.
Result<LaunchStatus> launchHoldingGilIfTiny(const Kernel &kernel,
                                            const LaunchArgs &args) {
  double elements = double(args.lhs.rows) * args.lhs.cols +
                    double(args.rhs.rows) * args.rhs.cols;
  double macs = double(args.out.rows) * args.out.cols *
                double(kernel.spec().lhs.transposed ? args.lhs.rows
                                                    : args.lhs.cols);
  if (elements + macs / 16 * kernel.spec().samples <= kTinyLaunch)
    return kernel.launch(args);
  py::gil_scoped_release release;
  return kernel.launch(args);
}

/// The scalar arguments of lq.gemm, when all are of the plain types the
/// fast path takes.
struct Scalars {
  unsigned role;
  bool relu, unsignedInput, bf16Output;
  unsigned samples;
  uint64_t seed;
  uint32_t stream;
  Estimate estimate;
};

std::optional<Scalars> scalars(py::handle role, py::handle relu,
                               py::handle samples, py::handle unsignedInput,
                               py::handle seed, py::handle stream,
                               py::handle estimate, py::handle bf16Output) {
  std::optional<unsigned> r = roleIndex(role);
  std::optional<bool> re = exactBool(relu), un = exactBool(unsignedInput),
                      bf = exactBool(bf16Output);
  std::optional<uint64_t> n = exactUnsigned(samples, 127),
                          s = exactUnsigned(seed, UINT64_MAX),
                          st = exactUnsigned(stream, UINT32_MAX);
  std::optional<Estimate> m = maxEstimate(estimate);
  if (!r || !re || !un || !bf || !n || *n == 0 || !s || !st || !m)
    return std::nullopt;
  return Scalars{*r, *re, *un, *bf, unsigned(*n), *s, uint32_t(*st), *m};
}

/// lq._lq.gemm_host(a, b, role, out, bias, relu, samples, unsigned_input,
/// seed, stream, max_estimate, bf16_output, spec_of, with_status): lq.gemm's
/// (out, status), or out alone without status; None for the general path.
py::object gemmHost(py::handle a, py::handle b, py::handle role,
                    py::handle out, py::handle bias, py::handle relu,
                    py::handle samples, py::handle unsignedInput,
                    py::handle seed, py::handle stream, py::handle estimate,
                    py::handle bf16Output, py::handle specOf,
                    py::handle withStatus) {
  std::optional<Scalars> s = scalars(role, relu, samples, unsignedInput, seed,
                                     stream, estimate, bf16Output);
  if (!s)
    return py::none();
  std::optional<Matrix> lhs = hostMatrix(a, false), rhs = hostMatrix(b, false);
  std::optional<Matrix> given;
  if (lhs && rhs && !out.is_none())
    given = hostMatrix(out, true);
  std::optional<Bias> biasRef = hostBias(bias);
  if (!lhs || !rhs || (!out.is_none() && !given) || !biasRef)
    return py::none();

  GemmKey key;
  key.role = s->role;
  key.lhs = lhs->ref.dtype;
  key.rhs = rhs->ref.dtype;
  key.out = given ? given->ref.dtype : s->bf16Output ? DType::BF16 : DType::F32;
  key.unsignedInput = s->unsignedInput;
  key.bias = !bias.is_none();
  key.relu = s->relu;
  key.hindsight = s->estimate.given;
  key.samples = s->samples;
  const Kernel &kernel = kernelFor(key, specOf);

  LaunchArgs args;
  args.lhs = lhs->ref;
  args.rhs = rhs->ref;
  py::object result = py::reinterpret_borrow<py::object>(out);
  if (given) {
    args.out = given->ref;
  } else {
    int64_t rows, cols;
    apiOutputShape(kernel, lhs->ref, rhs->ref, &rows, &cols);
    result = newOutput(*lhs, a, rows, cols, key.out == DType::BF16, args.out);
  }
  args.bias = biasRef->data;
  args.biasLength = biasRef->length;
  args.seed = s->seed;
  args.stream = s->stream;
  args.maxEstimate = s->estimate.value;
  Result<LaunchStatus> status = launchHoldingGilIfTiny(kernel, args);
  LaunchStatus done = take(std::move(status));
  if (withStatus.ptr() == Py_False)
    return result;
  return py::make_tuple(result, statusDict(done));
}

/// lq.Error, set when the module is bound (the module keeps it alive).
PyObject *&errorType() {
  static PyObject *type = nullptr;
  return type;
}

/// The runtime's errors as lq.Error, Python's as they are, the rest as
/// RuntimeError: what pybind11 would raise from a bound function.
void setPythonError() {
  try {
    throw;
  } catch (py::error_already_set &e) {
    e.restore();
  } catch (const PyError &e) {
    PyErr_SetString(errorType(), e.what());
  } catch (const std::exception &e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "lq: unknown C++ exception");
  }
}

const Kernel *apiKernelFor(const GemmKey &key, PyObject *specOf) {
  try {
    return &kernelFor(key, specOf);
  } catch (...) {
    setPythonError();
    return nullptr;
  }
}

bool apiLaunch(const Kernel &kernel, const LaunchArgs &args,
               LaunchStatus *status) {
  try {
    *status = take(launchHoldingGilIfTiny(kernel, args));
    return true;
  } catch (...) {
    setPythonError();
    return false;
  }
}

} // namespace

void lq::python::bindFastGemm(py::module_ &m) {
  m.def("gemm_host", &gemmHost, "lq.gemm's fast path for host tensors");
  errorType() = m.attr("Error").ptr();
  static const FastGemmApi api{FastGemmApi::kVersion, FastGemmApi::layout(),
                               apiKernelFor, apiOutputShape, apiLaunch};
  m.attr("_fast_gemm_api") = py::capsule(&api, kFastGemmApiCapsule);
}
