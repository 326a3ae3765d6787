//===- Aot.cpp - ahead-of-time host kernel objects -------------------------===//

#include "lq/Jit/Aot.h"

#include "HostJit.h"
#include "lq/Runtime/Checks.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

using namespace lq;
using namespace lq::runtime;

namespace {

/// The C parameters of a stage's interface, in order: memrefs are passed
/// as pointers to their descriptors, scalars by value.
std::vector<std::string> paramsOf(mlir::func::FuncOp fn) {
  std::vector<std::string> params;
  for (mlir::Type type : fn.getArgumentTypes()) {
    std::string text;
    llvm::raw_string_ostream os(text);
    if (auto memref = mlir::dyn_cast<mlir::MemRefType>(type)) {
      os << "memref<";
      memref.getElementType().print(os);
      os << ">";
    } else if (type.isIndex()) {
      os << "i64";
    } else {
      type.print(os);
    }
    params.push_back(text);
  }
  return params;
}

} // namespace

Result<HostObject> lq::compileHostObject(const GemmSpec &spec,
                                         const std::string &prefix,
                                         const std::string &cpu) {
  using R = Result<HostObject>;
  LQ_TRY(validateSpec(spec));
  if (spec.target != Target::HostCPU)
    return R::failure("host objects are for the host CPU target");
  auto jit = HostJit::create(cpu);
  if (!jit)
    return jit.takeError();
  HostJit::KernelModule kernels = (*jit)->build(spec, false);
  HostObject result;
  // lq_<stage> -> <prefix>_<stage>: objects of several GEMMs link together.
  for (auto fn : kernels.module->getOps<mlir::func::FuncOp>()) {
    if (!fn->hasAttr(mlir::LLVM::LLVMDialect::getEmitCWrapperAttrName()))
      continue;
    std::string name = prefix + fn.getName().drop_front(2).str();
    fn.setName(name);
    result.stages.push_back({"_mlir_ciface_" + name, paramsOf(fn)});
  }
  // One object, the stages compiled in turn: a program links it like any
  // other.
  auto objects = (*jit)->compile(kernels, "", prefix, /*maxParts=*/1);
  if (!objects)
    return objects.takeError();
  if (objects->size() != 1)
    return R::failure("the host JIT made " + std::to_string(objects->size()) +
                      " objects of " + prefix + ", not one");
  result.object = std::move(objects->front());
  result.triple = (*jit)->triple();
  result.cpu = (*jit)->cpu();
  result.features = (*jit)->features();
  return result;
}
