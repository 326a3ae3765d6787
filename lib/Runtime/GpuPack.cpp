//===- GpuPack.cpp - ahead-of-time packs of generated GPU modules ---------===//

#include "lq/Runtime/GpuPack.h"

#include "lq/Runtime/PtxCompiler.h"

#include <fstream>
#include <sstream>

using namespace lq;
using namespace lq::gpu;

namespace {

Result<std::string> readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Result<std::string>::failure("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

} // namespace

Result<std::vector<PackModule>> lq::gpu::readPack(const std::string &dir) {
  using R = Result<std::vector<PackModule>>;
  Result<std::string> index = readText(dir + "/index.txt");
  if (!index)
    return R::failure("not a kernel pack: " + index.error());
  std::vector<PackModule> modules;
  std::istringstream lines(*index);
  for (std::string name; std::getline(lines, name);) {
    while (!name.empty() && (name.back() == '\r' || name.back() == ' '))
      name.pop_back();
    if (name.empty())
      continue;
    if (name.find('/') != std::string::npos)
      return R::failure(dir + "/index.txt: module name '" + name +
                        "' is not a plain file name");
    PackModule module;
    module.name = name;
    Result<std::string> info = readText(dir + "/" + name + ".info");
    if (!info)
      return R::failure(info.error());
    Result<GpuModuleInfo> parsed = parseModuleInfo(*info);
    if (!parsed)
      return R::failure(dir + "/" + name + ".info: " + parsed.error());
    module.info = std::move(*parsed);
    Result<std::string> ptx = readText(dir + "/" + name + ".ptx");
    if (!ptx)
      return R::failure(ptx.error());
    module.ptx = std::move(*ptx);
    modules.push_back(std::move(module));
  }
  if (modules.empty())
    return R::failure(dir + "/index.txt names no module");
  return modules;
}

Result<std::unique_ptr<GpuLauncher>>
lq::gpu::loadPackModule(const PackModule &module, PtxLoading loading) {
  using R = Result<std::unique_ptr<GpuLauncher>>;
  if (loading == PtxLoading::DriverJit)
    return GpuLauncher::load(module.ptx, module.info);
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return R::failure(driver.error());
  Result<DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return R::failure(device.error());
  Result<std::string> arch = deviceArch(module.info, *device);
  if (!arch)
    return R::failure(module.name + ": " + arch.error());
  Result<std::string> cubin = compilePtx(module.ptx, *arch);
  if (!cubin)
    return R::failure(module.name + ": assembling for " + *arch + " failed: " +
                      cubin.error());
  return GpuLauncher::load(*cubin, module.info);
}
