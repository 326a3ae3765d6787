//===- HostJit.cpp - MLIR kernel modules to host machine code -------------===//

#include "HostJit.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
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

namespace {

/// LLVM optimization level of kernel modules: they arrive vectorized and
/// unrolled by construction, so O1 is enough to clean them up and keeps a
/// cold compile short.
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
         " codegen=aggressive inlined-stages";
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

  std::unique_ptr<HostJit> host(new HostJit());
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
  llvm::raw_string_ostream os(kernels.text);
  kernels.module->print(os);
  return kernels;
}

Result<std::string> HostJit::compile(KernelModule &kernels,
                                     llvm::StringRef dumpDir,
                                     llvm::StringRef name) {
  mlir::MLIRContext &ctx = *kernels.context;
  mlir::ModuleOp module = *kernels.module;
  dumpStage(dumpDir, name, "1-kernels.mlir",
            [&](llvm::raw_ostream &os) { os << kernels.text; });
  if (mlir::failed(module.verify()))
    return makeError("generated kernel module does not verify: " + name);
  if (mlir::failed(lowerCpuKernelsToLLVM(module)))
    return makeError("lowering kernels to the LLVM dialect failed: " + name);
  dumpStage(dumpDir, name, "2-llvm-dialect.mlir",
            [&](llvm::raw_ostream &os) { module->print(os); });

  mlir::registerBuiltinDialectTranslation(ctx);
  mlir::registerLLVMDialectTranslation(ctx);
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      mlir::translateModuleToLLVMIR(module, llvmContext, name);
  if (!llvmModule)
    return makeError("translation to LLVM IR failed: " + name);

  std::lock_guard<std::mutex> lock(mutex);
  llvmModule->setDataLayout(targetMachine->createDataLayout());
  llvmModule->setTargetTriple(targetMachine->getTargetTriple());
  inlineStageBodies(*llvmModule);
  auto optimize = mlir::makeOptimizingTransformer(kOptLevel,
                                                  /*sizeLevel=*/0,
                                                  targetMachine.get());
  if (llvm::Error err = optimize(llvmModule.get()))
    return fromLlvm(std::move(err));
  dumpStage(dumpDir, name, "3-optimized.ll",
            [&](llvm::raw_ostream &os) { llvmModule->print(os, nullptr); });

  llvm::SmallVector<char, 0> object;
  llvm::raw_svector_ostream os(object);
  llvm::legacy::PassManager codegen;
  if (targetMachine->addPassesToEmitFile(codegen, os, nullptr,
                                         llvm::CodeGenFileType::ObjectFile))
    return makeError("the host target cannot emit object files");
  codegen.run(*llvmModule);
  if (!dumpDir.empty()) {
    llvm::SmallVector<char, 0> assembly;
    llvm::raw_svector_ostream asmStream(assembly);
    llvm::legacy::PassManager asmGen;
    if (!targetMachine->addPassesToEmitFile(asmGen, asmStream, nullptr,
                                            llvm::CodeGenFileType::AssemblyFile)) {
      asmGen.run(*llvmModule);
      dumpStage(dumpDir, name, "4-host.s",
                [&](llvm::raw_ostream &out) { out << assembly; });
    }
  }
  return std::string(object.begin(), object.end());
}

Result<std::shared_ptr<LoadedObject>>
HostJit::load(std::shared_ptr<const std::string> object, llvm::StringRef name) {
  std::lock_guard<std::mutex> lock(mutex);
  // One dylib per object: every kernel module defines the same stage names.
  auto dylib = jit->createJITDylib((name + "." + llvm::Twine(dylibCount++)).str());
  if (!dylib)
    return fromLlvm(dylib.takeError());
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
      jit->getDataLayout().getGlobalPrefix());
  if (!process)
    return fromLlvm(process.takeError());
  dylib->addGenerator(std::move(*process));
  auto buffer = llvm::MemoryBuffer::getMemBuffer(
      llvm::StringRef(object->data(), object->size()), name,
      /*RequiresNullTerminator=*/false);
  if (llvm::Error err = jit->addObjectFile(*dylib, std::move(buffer)))
    return fromLlvm(std::move(err));
  // The buffer refers to the cached blob; the loaded object keeps it alive.
  auto loaded = std::shared_ptr<LoadedObject>(new LoadedObject(*jit, *dylib));
  keepAlive.push_back(std::move(object));
  return loaded;
}
