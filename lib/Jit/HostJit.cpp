//===- HostJit.cpp - MLIR kernel modules to host machine code -------------===//

#include "HostJit.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/Transforms/Utils/Cloning.h"

using namespace lq;
using namespace lq::runtime;

/// One part of a kernel module on its way to an object. The dump texts
/// are filled only when the compile dumps.
struct lq::runtime::Part {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  /// The stages it holds, for the dumps ("lq_pack_a lq_gemm").
  std::string stages;
  std::unique_ptr<llvm::TargetMachine> machine;
  std::string lowered, optimized, assembly;
  Result<std::string> object = Error{"not compiled"};
};

namespace {

/// LLVM optimization level of kernel modules: they arrive vectorized and
/// unrolled by construction, so O1 is enough to clean them up and keeps a
/// cold compile short. (Shorter function pipelines compiled up to 30%
/// faster but left the packing stages and GEMMs 2-14% slower.)
constexpr unsigned kOptLevel = 1;

lq::Error makeError(const llvm::Twine &message) {
  return lq::Error{message.str()};
}

/// An error of LLVM's (ORC, the target machine) as lq's.
lq::Error fromLlvm(llvm::Error error) {
  return lq::Error{llvm::toString(std::move(error))};
}

/// Writes one pipeline stage to <dumpDir>/<name>.<stage>.
void dumpStage(llvm::StringRef dumpDir, llvm::StringRef name,
               llvm::StringRef stage,
               llvm::function_ref<void(llvm::raw_ostream &)> print) {
  if (dumpDir.empty())
    return;
  if (llvm::sys::fs::create_directories(dumpDir))
    return;
  llvm::SmallString<256> path(dumpDir);
  llvm::sys::path::append(path, (name + "." + stage).str());
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (!ec)
    print(os);
}

/// Only the C interfaces are called from outside. Internal stage bodies are
/// inlined into their one wrapper and dropped before the optimization
/// pipeline runs: left to the pipeline's inliner, each body would be
/// simplified once on its own and again inside its wrapper, which doubles
/// the optimizer's time.
void inlineStageBodies(llvm::Module &module) {
  llvm::SmallVector<llvm::Function *> bodies;
  for (llvm::Function &fn : module)
    if (!fn.isDeclaration() && !fn.getName().starts_with("_mlir_ciface_")) {
      fn.setLinkage(llvm::GlobalValue::InternalLinkage);
      bodies.push_back(&fn);
    }
  for (llvm::Function *body : bodies) {
    llvm::SmallVector<llvm::CallBase *> calls;
    for (llvm::User *user : body->users())
      if (auto *call = llvm::dyn_cast<llvm::CallBase>(user))
        if (call->getCalledFunction() == body)
          calls.push_back(call);
    // A call that cannot be inlined stays; the pipeline handles it.
    for (llvm::CallBase *call : calls) {
      llvm::InlineFunctionInfo info;
      (void)llvm::InlineFunction(*call, info);
    }
  }
  for (llvm::Function *body : bodies)
    if (body->use_empty())
      body->eraseFromParent();
}

/// A stage is a function with a C interface; the runtime calls nothing else.
bool isStage(mlir::Operation &op) {
  auto fn = mlir::dyn_cast<mlir::func::FuncOp>(op);
  return fn && !fn.isDeclaration() &&
         fn->hasAttr(mlir::LLVM::LLVMDialect::getEmitCWrapperAttrName());
}

/// Whether `op`, outside the stages, may be copied into every part: a
/// function (each copy becomes internal to its object) or a constant.
/// Mutable globals would stop being shared.
bool isCopyable(mlir::Operation &op) {
  if (mlir::isa<mlir::func::FuncOp>(op))
    return true;
  auto global = mlir::dyn_cast<mlir::memref::GlobalOp>(op);
  return global && global.getConstant();
}

/// The stages of `module` moved into at most `count` new modules of about
/// the same size (operations, largest stage first into the smallest part);
/// what the stages share is copied into each. One part where something
/// shared cannot be copied.
std::vector<Part> splitStages(mlir::ModuleOp module, unsigned count) {
  llvm::SmallVector<std::pair<size_t, mlir::Operation *>> stages;
  llvm::SmallVector<mlir::Operation *> shared;
  for (mlir::Operation &op : module.getBody()->getOperations()) {
    if (!isStage(op)) {
      shared.push_back(&op);
      if (!isCopyable(op))
        count = 1;
      continue;
    }
    size_t size = 0;
    op.walk([&](mlir::Operation *) { ++size; });
    stages.push_back({size, &op});
  }
  count = std::max<size_t>(1, std::min<size_t>(count, stages.size()));
  llvm::stable_sort(stages, [](auto &a, auto &b) { return a.first > b.first; });
  std::vector<Part> parts(count);
  std::vector<size_t> sizes(count, 0);
  for (Part &part : parts) {
    part.module = mlir::ModuleOp::create(module.getLoc());
    (*part.module)->setAttrs(module->getAttrDictionary());
    for (mlir::Operation *op : shared)
      part.module->getBody()->push_back(op->clone());
  }
  for (auto [size, op] : stages) {
    size_t smallest = llvm::min_element(sizes) - sizes.begin();
    sizes[smallest] += size;
    Part &part = parts[smallest];
    part.stages += (part.stages.empty() ? "" : " ") +
                   mlir::SymbolTable::getSymbolName(op).str();
    op->remove();
    part.module->getBody()->push_back(op);
  }
  return parts;
}

/// Lets several threads work in `ctx` at once, on `threads`; false where
/// MLIR threading is off for the whole process.
bool enableContextThreads(mlir::MLIRContext &ctx,
                          llvm::ThreadPoolInterface &threads) {
  if (!ctx.isMultithreadingEnabled())
    ctx.setThreadPool(threads);
  if (!ctx.isMultithreadingEnabled())
    return false;
  // A pass pipeline loads the dialects its passes need when it starts,
  // which must not happen on two threads at once: one run on an empty
  // module loads them all here.
  mlir::OwningOpRef<mlir::ModuleOp> empty =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(&ctx));
  return mlir::succeeded(lowerCpuKernelsToLLVM(*empty));
}

/// Every definition but the C interfaces internal: several objects of one
/// kernel load into one JIT dylib, and what their parts share (helpers,
/// constants) is copied into each.
void internalizeAllButInterfaces(llvm::Module &module) {
  for (llvm::GlobalValue &value : module.global_values())
    if (!value.isDeclaration() &&
        !value.getName().starts_with("_mlir_ciface_"))
      value.setLinkage(llvm::GlobalValue::InternalLinkage);
}

/// Optimizes `module` at kOptLevel for `machine`'s CPU.
Status optimize(llvm::Module &module, llvm::TargetMachine &machine) {
  auto optimizer =
      mlir::makeOptimizingTransformer(kOptLevel, /*sizeLevel=*/0, &machine);
  if (llvm::Error error = optimizer(&module))
    return fromLlvm(std::move(error));
  return Done{};
}

/// Emits `module` as an object (and, with `assembly`, as assembly text).
Result<std::string> emit(llvm::Module &module, llvm::TargetMachine &machine,
                         std::string *assembly) {
  llvm::SmallVector<char, 0> object;
  llvm::raw_svector_ostream os(object);
  llvm::legacy::PassManager codegen;
  if (machine.addPassesToEmitFile(codegen, os, nullptr,
                                  llvm::CodeGenFileType::ObjectFile))
    return makeError("the host target cannot emit object files");
  codegen.run(module);
  if (assembly) {
    llvm::SmallVector<char, 0> text;
    llvm::raw_svector_ostream textStream(text);
    llvm::legacy::PassManager asmGen;
    if (!machine.addPassesToEmitFile(asmGen, textStream, nullptr,
                                     llvm::CodeGenFileType::AssemblyFile))
      asmGen.run(module);
    assembly->assign(text.begin(), text.end());
  }
  return std::string(object.begin(), object.end());
}

/// Prepares, optimizes and emits the LLVM IR of one part. With
/// `optimized`, the optimized IR is printed there.
Result<std::string> optimizeAndEmit(llvm::Module &module,
                                    llvm::TargetMachine &machine,
                                    std::string *optimized,
                                    std::string *assembly) {
  module.setDataLayout(machine.createDataLayout());
  module.setTargetTriple(machine.getTargetTriple());
  inlineStageBodies(module);
  internalizeAllButInterfaces(module);
  LQ_TRY(optimize(module, machine));
  if (optimized) {
    llvm::raw_string_ostream os(*optimized);
    module.print(os, nullptr);
  }
  return emit(module, machine, assembly);
}

/// The dumps of all parts, one file per pipeline stage.
void dumpParts(llvm::StringRef dumpDir, llvm::StringRef name,
               llvm::ArrayRef<Part> parts) {
  auto write = [&](llvm::StringRef stage, std::string Part::*text,
                   llvm::StringRef comment) {
    dumpStage(dumpDir, name, stage, [&](llvm::raw_ostream &os) {
      for (size_t i = 0; i < parts.size(); ++i)
        os << comment << " part " << i + 1 << " of " << parts.size() << ": "
           << parts[i].stages << "\n"
           << parts[i].*text;
    });
  };
  write("2-llvm-dialect.mlir", &Part::lowered, "//");
  write("3-optimized.ll", &Part::optimized, ";");
  write("4-host.s", &Part::assembly, "#");
}

/// Success when every flag of `features` ("+avxvnni,-avx512f") names a
/// feature of the target `info` describes.
Status checkFeatureFlags(const llvm::MCSubtargetInfo &info,
                         llvm::StringRef features) {
  llvm::SmallVector<llvm::StringRef> flags;
  features.split(flags, ',', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef flag : flags) {
    llvm::StringRef name = flag.drop_front();
    bool known = llvm::any_of(info.getAllProcessorFeatures(),
                              [&](const llvm::SubtargetFeatureKV &kv) {
                                return name == kv.Key;
                              });
    if ((!flag.starts_with("+") && !flag.starts_with("-")) || !known)
      return Error{"unknown CPU feature flag '" + flag.str() +
                   "' (LLVM's, such as +avxvnni or -avx512f)"};
  }
  return Done{};
}

/// Makes `builder` compile for `cpu` ("name" or "name,+feature,...") with
/// that CPU's features alone (not this machine's), plus the flags given:
/// an error for a name or flag the target does not know, or a CPU without
/// AVX2, which the GEMM stages use.
Status targetCpu(llvm::orc::JITTargetMachineBuilder &builder,
                 llvm::StringRef cpu) {
  auto [name, features] = cpu.split(',');
  const llvm::Triple &triple = builder.getTargetTriple();
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return Error{error};
  // Asked of the generic subtarget first: one made for an unknown CPU
  // prints LLVM's own warning.
  std::unique_ptr<llvm::MCSubtargetInfo> generic(
      target->createMCSubtargetInfo(triple, "", ""));
  if (!generic || (name != "host" && !generic->isCPUStringValid(name)))
    return Error{"unknown CPU '" + name.str() + "' for " + triple.str() +
                 " (an LLVM CPU name such as x86-64-v3, znver3, or host)"};
  LQ_TRY(checkFeatureFlags(*generic, features));
  if (name != "host") {
    builder.setCPU(name.str());
    builder.getFeatures() = llvm::SubtargetFeatures();
  }
  llvm::SmallVector<llvm::StringRef> flags;
  features.split(flags, ',', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef flag : flags)
    builder.getFeatures().AddFeature(flag);
  std::unique_ptr<llvm::MCSubtargetInfo> info(target->createMCSubtargetInfo(
      triple, builder.getCPU(), builder.getFeatures().getString()));
  if (!info->checkFeatures("+avx2"))
    return Error{"CPU '" + cpu.str() +
                 "' lacks AVX2, which lq's CPU kernels need (x86-64-v3 "
                 "and newer have it)"};
  return Done{};
}

/// The best dot product of a CPU with `info`'s features: 512-bit vpdpbusd
/// does twice the work of the 256-bit form per instruction.
CpuDotProduct dotProductOf(const llvm::MCSubtargetInfo &info) {
  if (info.checkFeatures("+avx512vnni"))
    return CpuDotProduct::Avx512Vnni;
  if (info.checkFeatures("+avxvnni"))
    return CpuDotProduct::AvxVnni;
  return CpuDotProduct::Avx2;
}

} // namespace

std::string HostJit::options() {
  return "llvm-opt=O" + std::to_string(kOptLevel) +
         " codegen=aggressive inlined-stages objects-per-part";
}

namespace {
/// packObjects' layout: this tag, the object count, then each object's
/// size and bytes (sizes little-endian, 8 bytes).
constexpr llvm::StringLiteral kObjectsTag = "lq-host-objects-v1";
} // namespace

std::string HostJit::packObjects(llvm::ArrayRef<std::string> objects) {
  std::string blob(kObjectsTag);
  auto appendSize = [&](uint64_t size) {
    char bytes[8];
    llvm::support::endian::write64le(bytes, size);
    blob.append(bytes, 8);
  };
  appendSize(objects.size());
  for (const std::string &object : objects) {
    appendSize(object.size());
    blob += object;
  }
  return blob;
}

Result<std::vector<llvm::StringRef>>
HostJit::unpackObjects(llvm::StringRef blob) {
  using R = Result<std::vector<llvm::StringRef>>;
  if (!blob.consume_front(kObjectsTag))
    return R::failure("not a blob of lq host objects");
  auto takeSize = [&](uint64_t &size) {
    if (blob.size() < 8)
      return false;
    size = llvm::support::endian::read64le(blob.data());
    blob = blob.drop_front(8);
    return true;
  };
  uint64_t count = 0;
  if (!takeSize(count))
    return R::failure("truncated blob of lq host objects");
  std::vector<llvm::StringRef> objects;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t size = 0;
    if (!takeSize(size) || size > blob.size())
      return R::failure("truncated blob of lq host objects");
    objects.push_back(blob.take_front(size));
    blob = blob.drop_front(size);
  }
  if (!blob.empty())
    return R::failure("blob of lq host objects has trailing bytes");
  return objects;
}

Result<void *> LoadedObject::lookup(llvm::StringRef name) const {
  auto address = jit.lookup(dylib, ("_mlir_ciface_" + name).str());
  if (!address)
    return fromLlvm(address.takeError());
  return address->toPtr<void *>();
}

Result<std::unique_ptr<HostJit>> HostJit::create(llvm::StringRef cpu) {
  static std::once_flag targetsInitialized;
  std::call_once(targetsInitialized, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    return fromLlvm(builder.takeError());
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  if (cpu != "host")
    LQ_TRY(targetCpu(*builder, cpu));
  auto machine = builder->createTargetMachine();
  if (!machine)
    return fromLlvm(machine.takeError());

  std::unique_ptr<HostJit> host(new HostJit(*builder));
  host->cpuName = (*machine)->getTargetCPU().str();
  host->featureString = (*machine)->getTargetFeatureString().str();
  host->tripleString = (*machine)->getTargetTriple().str();
  host->dot = dotProductOf(*(*machine)->getMCSubtargetInfo());
  host->targetMachine = std::move(*machine);
  auto jit = llvm::orc::LLJITBuilder()
                 .setJITTargetMachineBuilder(std::move(*builder))
                 .create();
  if (!jit)
    return fromLlvm(jit.takeError());
  host->jit = std::move(*jit);
  return Result<std::unique_ptr<HostJit>>(std::move(host));
}

Status HostJit::checkRunsHere() const {
  const llvm::MCSubtargetInfo &info = *targetMachine->getMCSubtargetInfo();
  std::string missing;
  for (const auto &feature : llvm::sys::getHostCPUFeatures())
    if (!feature.second && info.checkFeatures("+" + feature.first().str()))
      missing += (missing.empty() ? "" : ", ") + feature.first().str();
  if (missing.empty())
    return Done{};
  return Error{"CPU '" + cpuName + "' has features this machine lacks (" +
               missing + "): its kernels would not run here"};
}

HostJit::KernelModule HostJit::build(const GemmSpec &spec,
                                     bool quantizeOnly) const {
  KernelModule kernels;
  kernels.context = std::make_unique<mlir::MLIRContext>(
      mlir::MLIRContext::Threading::DISABLED);
  CpuKernelOptions options;
  options.dot = dot;
  kernels.module =
      quantizeOnly ? buildCpuQuantizeKernels(*kernels.context, spec.lhs)
                   : buildCpuGemmKernels(*kernels.context, spec, options);
  return kernels;
}

namespace {

/// Compiles one part on the calling thread, lowering it first unless that
/// was done already.
void compilePart(Part &part, bool lower, bool dump, llvm::StringRef name) {
  mlir::ModuleOp module = *part.module;
  if (lower && mlir::failed(lowerCpuKernelsToLLVM(module))) {
    part.object = makeError("lowering kernels to the LLVM dialect failed: " +
                            name);
    return;
  }
  if (dump) {
    llvm::raw_string_ostream os(part.lowered);
    module->print(os);
  }
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      mlir::translateModuleToLLVMIR(module, llvmContext, name);
  if (!llvmModule) {
    part.object = makeError("translation to LLVM IR failed: " + name);
    return;
  }
  part.object = optimizeAndEmit(*llvmModule, *part.machine,
                                dump ? &part.optimized : nullptr,
                                dump ? &part.assembly : nullptr);
}

} // namespace

Result<std::vector<Part>> HostJit::makeParts(mlir::ModuleOp module,
                                              unsigned maxParts) {
  if (!threads) {
    threads =
        std::make_unique<llvm::DefaultThreadPool>(llvm::hardware_concurrency());
    mlirThreads =
        std::make_unique<llvm::DefaultThreadPool>(llvm::hardware_concurrency());
  }
  // Two parts per thread: the largest stage costs more than an even share,
  // and the others fill the gaps.
  std::vector<Part> parts = splitStages(
      module, std::min(maxParts, 2 * threads->getMaxConcurrency()));
  // Target machines are not shared between threads.
  for (Part &part : parts) {
    auto machine = machineBuilder.createTargetMachine();
    if (!machine)
      return fromLlvm(machine.takeError());
    part.machine = std::move(*machine);
  }
  return parts;
}

Result<std::vector<std::string>> HostJit::compile(KernelModule &kernels,
                                                  llvm::StringRef dumpDir,
                                                  llvm::StringRef name,
                                                  unsigned maxParts) {
  mlir::MLIRContext &ctx = *kernels.context;
  dumpStage(dumpDir, name, "1-kernels.mlir",
            [&](llvm::raw_ostream &os) { kernels.module->print(os); });
  if (mlir::failed(kernels.module->verify()))
    return makeError("generated kernel module does not verify: " + name);
  std::lock_guard<std::mutex> lock(mutex);
  auto parts = makeParts(*kernels.module, maxParts);
  if (!parts)
    return parts.takeError();
  // The parts share the kernels' MLIR context, which must lock while
  // several threads lower in it. Where MLIR threading is off for the
  // process, the parts are lowered here in turn instead.
  bool lowerInParallel =
      parts->size() > 1 && enableContextThreads(ctx, *mlirThreads);
  auto singleThreaded = llvm::make_scope_exit([&] {
    if (lowerInParallel)
      ctx.disableMultithreading();
  });
  mlir::registerBuiltinDialectTranslation(ctx);
  mlir::registerLLVMDialectTranslation(ctx);
  if (!lowerInParallel)
    for (Part &part : *parts)
      if (mlir::failed(lowerCpuKernelsToLLVM(*part.module)))
        return makeError("lowering kernels to the LLVM dialect failed: " +
                         name);
  bool dump = !dumpDir.empty();
  llvm::ThreadPoolTaskGroup group(*threads);
  for (Part &part : *parts)
    group.async([&part, lowerInParallel, dump, name] {
      compilePart(part, lowerInParallel, dump, name);
    });
  group.wait();
  std::vector<std::string> objects;
  for (Part &part : *parts) {
    if (!part.object)
      return part.object.takeError();
    objects.push_back(std::move(*part.object));
  }
  if (dump)
    dumpParts(dumpDir, name, *parts);
  return objects;
}

Result<std::shared_ptr<LoadedObject>>
HostJit::load(std::shared_ptr<const std::string> blob, llvm::StringRef name) {
  auto objects = unpackObjects(*blob);
  if (!objects)
    return objects.takeError();
  std::lock_guard<std::mutex> lock(mutex);
  // One dylib per kernel: every kernel module defines the same stage names.
  auto dylib = jit->createJITDylib((name + "." + llvm::Twine(dylibCount++)).str());
  if (!dylib)
    return fromLlvm(dylib.takeError());
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
      jit->getDataLayout().getGlobalPrefix());
  if (!process)
    return fromLlvm(process.takeError());
  dylib->addGenerator(std::move(*process));
  for (llvm::StringRef object : *objects) {
    auto buffer = llvm::MemoryBuffer::getMemBuffer(
        object, name, /*RequiresNullTerminator=*/false);
    if (llvm::Error err = jit->addObjectFile(*dylib, std::move(buffer)))
      return fromLlvm(std::move(err));
  }
  // The buffers refer to the cached blob; the loaded object keeps it alive.
  auto loaded = std::shared_ptr<LoadedObject>(new LoadedObject(*jit, *dylib));
  keepAlive.push_back(std::move(blob));
  return loaded;
}
