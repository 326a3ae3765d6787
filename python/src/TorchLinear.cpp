//===- TorchLinear.cpp - lq.torch.Linear's forward as a C++ autograd node -===//
//
// A small layer's forward from Python costs a few microseconds around a
// kernel of one: torch.autograd.Function's Python machinery (the context
// object, save_for_backward, the call into a Python forward) and reading
// tensors through attribute calls took most of them. Here the forward is
// one call: the tensors are read as at::Tensor, the output made by ATen,
// the kernel found and launched through _lq's fast path (FastGemmApi.h, so
// one runtime serves the process), and the graph recorded by torch's C++
// custom function. Its backward calls back into lq.torch, into the Python
// function the Python Function's backward runs too, so the backward GEMMs'
// semantics (the seed draw, the LUQ stream, in-hindsight, fnt, the status
// record) have one source. The node holds the layer's lq state, not the
// layer: a graph held by the layer (a hook keeping its output) would be a
// cycle through C++, which Python's collector cannot see. What this path
// does not take (other devices, tensor subclasses, unusual strides or
// dtypes, forward-mode tangents, functorch's wrappers, a trace, which must
// record the Python Function) returns None, and lq.torch's Python Function
// runs with its checks and messages.
//
//===----------------------------------------------------------------------===//

#include "FastGemmApi.h"

#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/utils/object_ptr.h>

#include <ATen/ATen.h>

#include <optional>
#include <string>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace lq::python {
namespace {

/// What setup() was given: _lq's fast path, lq.gemm_spec and lq.torch's
/// backward of a linear layer. References kept for the life of the process.
struct Setup {
  const FastGemmApi *api = nullptr;
  PyObject *specOf = nullptr;
  PyObject *backward = nullptr;
};
Setup setupState;

/// The layer's lq state (lq.torch._LqState), kept alive by the autograd
/// graph until its backward ran or the graph was freed; that may happen on
/// a thread without the GIL.
struct LayerHolder : c10::ivalue::PyObjectHolder {
  explicit LayerHolder(PyObject *layer) : layer(layer) { Py_INCREF(layer); }
  ~LayerHolder() override {
    if (!Py_IsInitialized())
      return;
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_DECREF(layer);
    PyGILState_Release(gil);
  }
  PyObject *getPyObject() override { return layer; }
  c10::InferredType tryToInferType() override {
    return c10::InferredType("an lq.torch layer has no TorchScript type");
  }
  c10::IValue toIValue(const c10::TypePtr &, c10::optional<int32_t>) override {
    TORCH_CHECK(false, "an lq.torch layer has no TorchScript value");
  }
  std::string toStr() override { return "lq.torch layer"; }
  std::vector<at::Tensor> extractTensors() override { return {}; }

  PyObject *layer;
};

/// Arguments of the function that are not inputs of the graph.
struct Forwarded {
  at::Tensor output;
  PyObject *layer;
};

/// y = Q(x) Q(weight)^T + bias, computed before the node is made: the
/// node's forward only records it.
struct LinearNode : torch::autograd::Function<LinearNode> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x,
                            const at::Tensor &weight,
                            const c10::optional<at::Tensor> &bias,
                            Forwarded forwarded) {
    ctx->save_for_backward({x, weight});
    // Without a bias the graph has no third input to ask about.
    ctx->saved_data["bias"] = bias.has_value();
    c10::intrusive_ptr<c10::ivalue::PyObjectHolder> layer =
        c10::make_intrusive<LayerHolder>(forwarded.layer);
    ctx->saved_data["layer"] = c10::IValue(std::move(layer));
    return forwarded.output;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads);
};

/// A new reference to `t` as a Python object (None when undefined).
PyObject *wrap(const at::Tensor &t) {
  if (!t.defined())
    Py_RETURN_NONE;
  return THPVariable_Wrap(t);
}

/// A tensor of lq.torch's backward result (None: undefined).
at::Tensor unwrap(PyObject *o) {
  if (o == Py_None)
    return at::Tensor();
  TORCH_CHECK(THPVariable_Check(o),
              "lq.torch: the layer's backward returned a non-tensor");
  return THPVariable_Unpack(o);
}

variable_list LinearNode::backward(AutogradContext *ctx, variable_list grads) {
  variable_list saved = ctx->get_saved_variables();
  bool biasGrad = ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2);
  pybind11::gil_scoped_acquire gil;
  PyObject *layer = ctx->saved_data["layer"].toPyObject();
  PyObject *args[] = {layer, wrap(grads[0]), wrap(saved[0]), wrap(saved[1]),
                      biasGrad ? Py_True : Py_False};
  // Released before the GIL is: declared after it.
  THPObjectPtr result(
      PyObject_Vectorcall(setupState.backward, args, 5, nullptr));
  for (int i = 1; i < 4; ++i)
    Py_XDECREF(args[i]);
  if (!result) {
    // The error travels through the autograd engine to .backward()'s caller.
    python_error error;
    error.persist();
    throw error;
  }
  TORCH_CHECK(PyTuple_Check(result.get()) &&
                  PyTuple_GET_SIZE(result.get()) == 3,
              "lq.torch: the layer's backward returned no (dx, dW, db)");
  variable_list out(5);
  for (int i = 0; i < 3; ++i)
    out[i] = unwrap(PyTuple_GET_ITEM(result.get(), i));
  return out;
}

/// A plain host tensor: strided, with storage (not one of functorch's
/// wrappers), without a forward-mode tangent (which only the Python
/// Function rejects in its words).
bool plainHostTensor(const at::Tensor &t) {
  return t.layout() == at::kStrided && t.device().is_cpu() && t.has_storage() &&
         !t._fw_grad(/*level=*/0).defined();
}

/// A host tensor as a row-major matrix, as gemm_host reads one.
std::optional<TensorRef> hostMatrix(const at::Tensor &t) {
  if (!plainHostTensor(t) || t.dim() != 2)
    return std::nullopt;
  DType dtype;
  if (t.scalar_type() == at::kFloat)
    dtype = DType::F32;
  else if (t.scalar_type() == at::kBFloat16)
    dtype = DType::BF16;
  else
    return std::nullopt;
  return rowMajor(t.data_ptr(), dtype, t.size(0), t.size(1), t.stride(1),
                  t.stride(0));
}

/// A bias the kernels take: float32 on the host, one row.
bool hostBias(const at::Tensor &b) {
  return plainHostTensor(b) && b.dim() == 1 && b.scalar_type() == at::kFloat &&
         (b.size(0) <= 1 || b.stride(0) == 1);
}

/// An exact tensor (or Parameter): a subclass may mean something else.
const at::Tensor *exactTensor(PyObject *o) {
  return THPVariable_CheckExact(o) ? &THPVariable_Unpack(o) : nullptr;
}

/// _lq_torch.linear(x, weight, bias, state, unsigned_input): the layer's
/// output with its autograd history (whose backward gets `state`, the
/// layer's _LqState), or None for lq.torch's Python path.
PyObject *linear(PyObject *, PyObject *const *args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 5) {
    PyErr_SetString(PyExc_TypeError,
                    "linear(x, weight, bias, state, unsigned_input)");
    return nullptr;
  }
  if (!setupState.api) {
    PyErr_SetString(PyExc_RuntimeError, "lq._lq_torch: setup() not called");
    return nullptr;
  }
  if (torch::jit::tracer::isTracing())
    Py_RETURN_NONE;
  const at::Tensor *x = exactTensor(args[0]), *weight = exactTensor(args[1]);
  const at::Tensor *bias = args[2] == Py_None ? nullptr : exactTensor(args[2]);
  if (!x || !weight || (args[2] != Py_None && !bias) ||
      (args[4] != Py_True && args[4] != Py_False))
    Py_RETURN_NONE;
  std::optional<TensorRef> lhs = hostMatrix(*x), rhs = hostMatrix(*weight);
  if (!lhs || !rhs || (bias && !hostBias(*bias)))
    Py_RETURN_NONE;

  GemmKey key;
  key.lhs = lhs->dtype;
  key.rhs = rhs->dtype;
  key.unsignedInput = args[4] == Py_True;
  key.bias = bias != nullptr;
  const Kernel *kernel = setupState.api->kernelFor(key, setupState.specOf);
  if (!kernel)
    return nullptr;
  LaunchArgs launch;
  launch.lhs = *lhs;
  launch.rhs = *rhs;
  int64_t rows, cols;
  setupState.api->outputShape(*kernel, *lhs, *rhs, &rows, &cols);
  at::Tensor y = at::empty({rows, cols}, x->options().dtype(at::kFloat));
  launch.out = *rowMajor(y.data_ptr(), DType::F32, rows, cols, 1, cols);
  if (bias) {
    launch.bias = bias->data_ptr<float>();
    launch.biasLength = bias->size(0);
  }
  LaunchStatus status;
  if (!setupState.api->launch(*kernel, launch, &status))
    return nullptr;

  bool grad = x->requires_grad() || weight->requires_grad() ||
              (bias && bias->requires_grad());
  if (grad && at::GradMode::is_enabled())
    y = LinearNode::apply(*x, *weight,
                          bias ? c10::optional<at::Tensor>(*bias)
                               : c10::optional<at::Tensor>(),
                          Forwarded{std::move(y), args[3]});
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

/// _lq_torch.setup(spec_of, backward): lq.gemm_spec and lq.torch's
/// backward of a linear layer, backward(layer, dy, x, weight, bias_grad)
/// -> (dx, dW, db or None).
PyObject *setup(PyObject *, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "setup(spec_of, backward): callables");
    return nullptr;
  }
  auto *api = static_cast<const FastGemmApi *>(
      PyCapsule_Import(kFastGemmApiCapsule, 0));
  if (!api)
    return nullptr;
  if (api->version != FastGemmApi::kVersion ||
      api->layoutHash != FastGemmApi::layout()) {
    PyErr_SetString(PyExc_ImportError,
                    "lq._lq_torch was built for another lq._lq");
    return nullptr;
  }
  // The old callables go after the new ones are in place: freeing them
  // may run Python code that calls back in.
  Setup old = setupState;
  Py_INCREF(args[0]);
  Py_INCREF(args[1]);
  setupState = Setup{api, args[0], args[1]};
  Py_XDECREF(old.specOf);
  Py_XDECREF(old.backward);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"linear", reinterpret_cast<PyCFunction>(reinterpret_cast<void *>(linear)),
     METH_FASTCALL, "lq.torch.Linear's forward (None: not taken)"},
    {"setup", reinterpret_cast<PyCFunction>(reinterpret_cast<void *>(setup)),
     METH_FASTCALL, "binds lq.gemm_spec and lq.torch's linear backward"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef moduleDef = {PyModuleDef_HEAD_INIT, "_lq_torch",
                         "lq.torch's layers as C++ autograd functions", -1,
                         methods};

} // namespace
} // namespace lq::python

PyMODINIT_FUNC PyInit__lq_torch() {
  return PyModule_Create(&lq::python::moduleDef);
}
