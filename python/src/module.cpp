//===- module.cpp - the lq Python extension --------------------------------===//
//
// Thin bindings of the C++ runtime (lq/Runtime/Runtime.h) and of the
// numerics core (lq/Numerics): the Python package (python/lq) turns NumPy
// arrays and torch tensors into TensorRefs and back, or, for lq.gemm on
// host tensors, hands them to gemm_host (FastGemm.cpp). Every runtime
// error becomes lq.Error carrying the C++ message.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "lq/Numerics/Luq.h"
#include "lq/Numerics/Sawb.h"
#include "lq/Runtime/Runtime.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <iterator>

namespace py = pybind11;
using namespace lq;
using namespace lq::python;

namespace {

DType parseDType(const std::string &name) {
  if (name == "f32")
    return DType::F32;
  if (name == "bf16")
    return DType::BF16;
  if (name == "packed4")
    return DType::Packed4;
  throw PyError("unknown dtype '" + name + "': expected f32, bf16 or packed4");
}

Format parseFormat(const std::string &name) {
  if (name == "log4")
    return Format::Log4;
  if (name == "sint4")
    return Format::SInt4;
  if (name == "uint4")
    return Format::UInt4;
  throw PyError("unknown format '" + name + "': expected log4, sint4 or uint4");
}

/// A TensorRef from (address, dtype, rows, cols, row stride, device).
TensorRef makeTensor(uintptr_t data, const std::string &dtype, int64_t rows,
                     int64_t cols, int64_t rowStride, const std::string &device) {
  TensorRef t;
  t.data = reinterpret_cast<void *>(data);
  t.dtype = parseDType(dtype);
  t.rows = rows;
  t.cols = cols;
  t.rowStride = rowStride;
  if (device == "cpu")
    t.device = Device::CPU;
  else if (device == "cuda")
    t.device = Device::CUDA;
  else
    throw PyError("unknown device '" + device + "': expected cpu or cuda");
  return t;
}

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

numerics::MatrixView view(const F32Array &x) {
  if (x.ndim() != 2)
    throw PyError("expected a 2-D array, got " + std::to_string(x.ndim()) +
                " dimensions");
  return numerics::MatrixView::f32(x.data(), size_t(x.shape(0)),
                                   size_t(x.shape(1)));
}

void checkStatus(numerics::Status status) {
  if (status != numerics::Status::Ok)
    throw PyError(std::string("numerics: ") + numerics::statusName(status));
}

Target targetNamed(const std::string &name) {
  if (std::optional<Target> target = lq::parseTarget(name))
    return *target;
  throw PyError("unknown target '" + name + "': expected host, " +
                cudaTargetNames());
}

/// A GemmSpec from the names Python passes.
GemmSpec makeGemmSpec(const std::string &lhsFormat, const std::string &lhsDType,
                      bool lhsT, const std::string &rhsFormat,
                      const std::string &rhsDType, bool rhsT, unsigned samples,
                      bool hindsight, bool bias, bool relu,
                      const std::string &output, const std::string &target) {
  GemmSpec s;
  s.lhs = {parseFormat(lhsFormat), parseDType(lhsDType), lhsT};
  s.rhs = {parseFormat(rhsFormat), parseDType(rhsDType), rhsT};
  s.samples = samples;
  s.hindsight = hindsight;
  s.bias = bias;
  s.relu = relu;
  s.output = parseDType(output);
  s.target = targetNamed(target);
  return s;
}

/// Kernel.launch. The GIL is released while the kernel runs, so that other
/// Python threads keep going.
py::dict launchKernel(const Kernel &k, const TensorRef &lhs,
                      const TensorRef &rhs, const TensorRef &out,
                      uintptr_t bias, int64_t biasLength, uint64_t seed,
                      uint32_t stream, float lhsScale, float rhsScale,
                      float maxEstimate, uintptr_t cudaStream) {
  LaunchArgs args;
  args.lhs = lhs;
  args.rhs = rhs;
  args.out = out;
  args.bias = reinterpret_cast<const float *>(bias);
  args.biasLength = biasLength;
  args.seed = seed;
  args.stream = stream;
  args.lhsScale = lhsScale;
  args.rhsScale = rhsScale;
  args.maxEstimate = maxEstimate;
  args.cudaStream = reinterpret_cast<void *>(cudaStream);
  Result<LaunchStatus> status = [&] {
    py::gil_scoped_release release;
    return k.launch(args);
  }();
  return statusDict(take(std::move(status)));
}

/// quantize(): Runtime::quantize, with the GIL released as for a launch.
py::dict quantize(const TensorRef &input, const TensorRef &output,
                  const std::string &format, uint64_t seed, uint32_t stream,
                  uint32_t sample, std::optional<float> maxEstimate,
                  uintptr_t cudaStream) {
  QuantizeArgs args;
  args.input = input;
  args.output = output;
  args.format = parseFormat(format);
  args.seed = seed;
  args.stream = stream;
  args.sample = sample;
  args.maxEstimate = maxEstimate;
  args.cudaStream = reinterpret_cast<void *>(cudaStream);
  Result<QuantizeStatus> status = [&] {
    py::gil_scoped_release release;
    return Runtime::get().quantize(args);
  }();
  QuantizeStatus s = take(std::move(status));
  py::dict d;
  d["scale"] = s.scale;
  d["nonfinite"] = s.nonfinite;
  d["overflow"] = s.overflow;
  d["range"] = s.range;
  return d;
}

/// TensorRef, GemmSpec and Kernel, in that order: a Kernel's spec is a
/// GemmSpec.
void bindTypes(py::module_ &m) {
  py::class_<TensorRef>(m, "TensorRef")
      .def(py::init(&makeTensor), py::arg("data"), py::arg("dtype"),
           py::arg("rows"), py::arg("cols"), py::arg("row_stride"),
           py::arg("device") = "cpu");

  py::class_<GemmSpec>(m, "GemmSpec")
      .def(py::init(&makeGemmSpec), py::arg("lhs_format"),
           py::arg("lhs_dtype"), py::arg("lhs_transposed"),
           py::arg("rhs_format"), py::arg("rhs_dtype"),
           py::arg("rhs_transposed"), py::arg("samples") = 1,
           py::arg("hindsight") = false, py::arg("bias") = false,
           py::arg("relu") = false, py::arg("output") = "f32",
           py::arg("target") = "host")
      .def("describe", &GemmSpec::describe)
      .def("__repr__", &GemmSpec::describe);

  py::class_<Kernel>(m, "Kernel")
      .def_property_readonly("spec", &Kernel::spec)
      .def("launch", &launchKernel, py::arg("lhs"), py::arg("rhs"),
           py::arg("out"), py::arg("bias") = 0, py::arg("bias_length") = 0,
           py::arg("seed") = 0, py::arg("stream") = 0,
           py::arg("lhs_scale") = 0.0f, py::arg("rhs_scale") = 0.0f,
           py::arg("max_estimate") = 0.0f, py::arg("cuda_stream") = 0);
}

/// The process-wide Runtime: compiling, quantizing, its caches.
void bindRuntime(py::module_ &m) {
  m.def(
      "compile",
      [](const GemmSpec &spec) {
        py::gil_scoped_release release;
        return take(Runtime::get().compile(spec));
      },
      py::arg("spec"), "The kernel of a GemmSpec (compiled once, cached)");
  m.def(
      "compile_program",
      [](const std::string &program) {
        py::gil_scoped_release release;
        return take(Runtime::get().compileProgram(program));
      },
      py::arg("program"), "The kernel of the one lq.matmul of an lq program");
  m.def("quantize", &quantize, py::arg("input"), py::arg("output"),
        py::arg("format"), py::arg("seed") = 0, py::arg("stream") = 0,
        py::arg("sample") = 0, py::arg("max_estimate") = std::nullopt,
        py::arg("cuda_stream") = 0);
  m.def("cache_counters", [] {
    CacheCounters c = Runtime::get().cacheCounters();
    py::dict d;
    d["memory_hits"] = c.memoryHits;
    d["disk_hits"] = c.diskHits;
    d["compiles"] = c.compiles;
    return d;
  });
  m.def("clear_memory_cache", [] { Runtime::get().clearMemoryCache(); });
  m.def("host_description", [] { return Runtime::get().hostDescription(); });
}

/// The numerics core: the reference every kernel is checked against.
void bindNumerics(py::module_ &m) {
  py::module_ core = m.def_submodule("numerics", "the scalar numerics core");
  core.def(
      "luq_encode",
      [](const F32Array &x, uint64_t seed, uint32_t stream, uint32_t sample,
         std::optional<float> maxEstimate) {
        numerics::MatrixView v = view(x);
        py::array_t<int8_t> codes({x.shape(0), x.shape(1)});
        numerics::RandomKey key{seed, stream, sample};
        numerics::LuqResult r =
            maxEstimate ? numerics::luqEncodeHindsight(v, *maxEstimate, key,
                                                       codes.mutable_data())
                        : numerics::luqEncode(v, key, codes.mutable_data());
        checkStatus(r.status);
        return py::make_tuple(codes, r.alpha, r.nonfinite, r.overflowCount);
      },
      py::arg("x"), py::arg("seed"), py::arg("stream") = 0,
      py::arg("sample") = 0, py::arg("max_estimate") = std::nullopt,
      "LUQ codes (0..15) of x, alpha, nonfinite, overflow count");
  core.def(
      "sawb_encode",
      [](const F32Array &x, bool isUnsigned, std::optional<float> clip) {
        numerics::MatrixView v = view(x);
        float c = clip ? *clip : numerics::sawbClip(v).clip;
        py::array_t<int8_t> codes({x.shape(0), x.shape(1)});
        numerics::SawbResult r = numerics::sawbEncode(
            v, c,
            isUnsigned ? numerics::SawbKind::Unsigned
                       : numerics::SawbKind::Signed,
            codes.mutable_data());
        checkStatus(r.status);
        return py::make_tuple(codes, r.step, r.nonfinite, r.clip);
      },
      py::arg("x"), py::arg("unsigned") = false, py::arg("clip") = std::nullopt,
      "SAWB codes of x (integers), step, nonfinite, clip");
  core.def(
      "sawb_clip_from_moments",
      [](double sumSquares, double sumMagnitudes, double count,
         float maxAbs) {
        return numerics::sawbClipFromMoments(sumSquares, sumMagnitudes, count,
                                             maxAbs);
      },
      py::arg("sum_squares"), py::arg("sum_magnitudes"), py::arg("count"),
      py::arg("max_abs"),
      "the SAWB clip rule alone, from f64 sums of x^2 and |x| over count "
      "finite elements and max |x|: a kernel's clip from its own sums");
}

} // namespace

py::dict lq::python::statusDict(const LaunchStatus &s) {
  // Keys made once: a small launch's status is built on every call.
  static PyObject *const keys[] = {
      PyUnicode_InternFromString("nonfinite"),
      PyUnicode_InternFromString("overflow"),
      PyUnicode_InternFromString("lhs_max"),
      PyUnicode_InternFromString("lhs_scale"),
      PyUnicode_InternFromString("rhs_scale"),
      PyUnicode_InternFromString("lhs_range"),
      PyUnicode_InternFromString("rhs_range")};
  py::object values[] = {py::bool_(s.nonfinite), py::int_(s.overflow),
                         py::float_(s.lhsMax),   py::float_(s.lhsScale),
                         py::float_(s.rhsScale), py::float_(s.lhsRange),
                         py::float_(s.rhsRange)};
  py::dict d;
  for (size_t i = 0; i < std::size(keys); ++i)
    if (PyDict_SetItem(d.ptr(), keys[i], values[i].ptr()) != 0)
      throw py::error_already_set();
  return d;
}

PYBIND11_MODULE(_lq, m) {
  m.doc() = "lq: 4-bit training GEMMs (C++ runtime bindings)";
  py::register_exception<PyError>(m, "Error", PyExc_RuntimeError);
  bindTypes(m);
  bindRuntime(m);
  bindFastGemm(m);
  bindNumerics(m);
}
