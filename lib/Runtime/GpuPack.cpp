//===- GpuPack.cpp - ahead-of-time packs of generated GPU modules ---------===//

#include "lq/Runtime/GpuPack.h"

#include "lq/Runtime/PtxCompiler.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

using namespace lq;
using namespace lq::cuda;

namespace {

Result<std::string> readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Result<std::string>::failure("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The lines of `text` without trailing blanks and carriage returns.
std::vector<std::string> trimmedLines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

std::vector<std::string> splitCommas(const std::string &text) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    parts.push_back(part);
  return parts;
}

const char *const kStampKeys[] = {"commit", "dirty", "abi", "chips", "date"};

/// Checks one stamp value; "" when it is good, else why not.
std::string checkStampValue(const std::string &key, const std::string &value,
                            PackStamp &stamp) {
  if (value.empty())
    return "empty value for " + key;
  if (key == "commit") {
    stamp.commit = value;
    bool hex = value.size() >= 7 && value.size() <= 64 &&
               value.find_first_not_of("0123456789abcdef") == std::string::npos;
    return hex || value == "unknown" ? "" : "bad value '" + value + "' for commit";
  }
  if (key == "dirty") {
    stamp.dirty = value;
    return value == "0" || value == "1" || value == "unknown"
               ? ""
               : "bad value '" + value + "' for dirty";
  }
  if (key == "abi") {
    bool digits = value.size() <= 6 &&
                  value.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      return "bad value '" + value + "' for abi";
    stamp.abi = std::stoi(value);
    return "";
  }
  if (key == "chips") {
    stamp.chips = splitCommas(value);
    for (const std::string &chip : stamp.chips)
      if (std::optional<Target> t = parseTarget(chip); !t || !isCudaTarget(*t))
        return "bad chip '" + chip + "' in chips";
    return "";
  }
  stamp.date = value;
  return "";
}

} // namespace

std::string lq::cuda::writePackStamp(const PackStamp &stamp) {
  std::string chips;
  for (const std::string &chip : stamp.chips)
    chips += (chips.empty() ? "" : ",") + chip;
  return "commit=" + stamp.commit + "\ndirty=" + stamp.dirty +
         "\nabi=" + std::to_string(stamp.abi) + "\nchips=" + chips +
         "\ndate=" + stamp.date + "\n";
}

Result<PackStamp> lq::cuda::parsePackStamp(std::string_view text) {
  using R = Result<PackStamp>;
  PackStamp stamp;
  std::map<std::string, int> seen;
  std::vector<std::string> lines = trimmedLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string &line = lines[i];
    if (line.empty())
      continue;
    std::string where = "STAMP line " + std::to_string(i + 1) + ": ";
    size_t eq = line.find('=');
    if (eq == std::string::npos)
      return R::failure(where + "expected key=value, got '" + line + "'");
    std::string key = line.substr(0, eq);
    if (std::find(std::begin(kStampKeys), std::end(kStampKeys), key) ==
        std::end(kStampKeys))
      return R::failure(where + "unknown key '" + key + "'");
    if (seen[key]++)
      return R::failure(where + "repeated key '" + key + "'");
    if (std::string why = checkStampValue(key, line.substr(eq + 1), stamp);
        !why.empty())
      return R::failure(where + why);
  }
  std::string missing;
  for (const char *key : kStampKeys)
    if (!seen.count(key))
      missing += std::string(missing.empty() ? "" : ", ") + key;
  if (!missing.empty())
    return R::failure("STAMP lacks " + missing);
  return stamp;
}

Result<PackStamp> lq::cuda::readPackStamp(const std::string &dir) {
  using R = Result<PackStamp>;
  Result<std::string> text = readText(dir + "/STAMP");
  if (!text)
    return R::failure(dir + " has no STAMP: a pack of an older lq-gpu-pack, "
                            "or not a kernel pack; make it again with "
                            "lq-gpu-pack -o " + dir);
  Result<PackStamp> stamp = parsePackStamp(*text);
  if (!stamp)
    return R::failure(dir + "/" + stamp.error());
  if (stamp->abi != kAbiVersion)
    return R::failure(dir + " was made for GPU ABI " +
                      std::to_string(stamp->abi) + ", this build reads ABI " +
                      std::to_string(kAbiVersion) +
                      ": make the pack again from this checkout");
  return stamp;
}

Result<std::vector<PackModule>> lq::cuda::readPack(const std::string &dir) {
  using R = Result<std::vector<PackModule>>;
  Result<std::string> index = readText(dir + "/index.txt");
  if (!index)
    return R::failure("not a kernel pack: " + index.error());
  Result<PackStamp> stamp = readPackStamp(dir);
  if (!stamp)
    return R::failure(stamp.error());
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
    std::string chip = targetName(module.info.spec.target);
    if (std::find(stamp->chips.begin(), stamp->chips.end(), chip) ==
        stamp->chips.end())
      return R::failure(dir + "/" + name + ".info: chip " + chip +
                        " is not among the STAMP's chips");
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

Result<std::string> lq::cuda::assemblePackModule(const PackModule &module,
                                                const DeviceInfo &device) {
  using R = Result<std::string>;
  Result<std::string> arch = deviceArch(module.info, device);
  if (!arch)
    return R::failure(module.name + ": " + arch.error());
  Result<std::string> cubin = compilePtx(module.ptx, *arch);
  if (!cubin)
    return R::failure(module.name + ": assembling for " + *arch + " failed: " +
                      cubin.error());
  return cubin;
}

Result<std::unique_ptr<GpuLauncher>>
lq::cuda::loadPackModule(const PackModule &module, PtxLoading loading) {
  using R = Result<std::unique_ptr<GpuLauncher>>;
  if (loading == PtxLoading::DriverJit)
    return GpuLauncher::load(module.ptx, module.info);
  Result<CudaDriver *> driver = CudaDriver::get();
  if (!driver)
    return R::failure(driver.error());
  Result<DeviceInfo> device = (*driver)->currentDevice();
  if (!device)
    return R::failure(device.error());
  Result<std::string> cubin = assemblePackModule(module, *device);
  if (!cubin)
    return R::failure(cubin.error());
  return GpuLauncher::load(*cubin, module.info);
}
