//===- GpuAbi.cpp - module info of generated GPU kernels ------------------===//

#include "lq/Spec/GpuAbi.h"

#include <charconv>
#include <map>
#include <sstream>

using namespace lq;
using namespace lq::gpu;

namespace {

const char *kKeys[] = {"chip", "quantize", "lhs",    "rhs",    "samples",
                       "hindsight", "bias", "relu", "output", "tile"};

std::string operandText(const OperandSpec &op) {
  return std::string(formatName(op.format)) + " " + dtypeName(op.dtype) +
         (op.transposed ? " t" : " n");
}

/// The whitespace-separated words of `text`.
std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> result;
  std::istringstream in{std::string(text)};
  for (std::string word; in >> word;)
    result.push_back(word);
  return result;
}

bool parseInt(std::string_view text, int64_t &value) {
  auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size();
}

bool parseFlag(std::string_view text, bool &value) {
  if (text != "0" && text != "1")
    return false;
  value = text == "1";
  return true;
}

bool parseDType(std::string_view text, DType &dtype) {
  for (DType d : {DType::F32, DType::BF16, DType::Packed4})
    if (text == dtypeName(d)) {
      dtype = d;
      return true;
    }
  return false;
}

bool parseOperand(std::string_view text, OperandSpec &op) {
  std::vector<std::string> w = words(text);
  if (w.size() != 3 || (w[2] != "n" && w[2] != "t") ||
      !parseDType(w[1], op.dtype))
    return false;
  op.transposed = w[2] == "t";
  for (Format f : {Format::SInt4, Format::UInt4, Format::Log4})
    if (w[0] == formatName(f)) {
      op.format = f;
      return true;
    }
  return false;
}

bool parseTile(std::string_view text, GemmTile &tile) {
  std::vector<std::string> w = words(text);
  int64_t v[6];
  if (w.size() != 6)
    return false;
  for (int i = 0; i < 6; ++i)
    if (!parseInt(w[i], v[i]) || v[i] < (i == 5 ? 0 : 1) ||
        (i < 5 && v[i] > 1024))
      return false;
  tile = {int(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]), v[5]};
  return true;
}

} // namespace

std::string lq::gpu::writeModuleInfo(const GpuModuleInfo &info) {
  const GemmSpec &s = info.spec;
  std::string text = "abi=" + std::to_string(kAbiVersion) + "\n";
  text += std::string("chip=") + targetName(info.spec.target) + "\n";
  text += std::string("quantize=") + (info.quantizeOnly ? "1" : "0") + "\n";
  text += "lhs=" + operandText(s.lhs) + "\n";
  text += "rhs=" + operandText(s.rhs) + "\n";
  text += "samples=" + std::to_string(s.samples) + "\n";
  text += std::string("hindsight=") + (s.hindsight ? "1" : "0") + "\n";
  text += std::string("bias=") + (s.bias ? "1" : "0") + "\n";
  text += std::string("relu=") + (s.relu ? "1" : "0") + "\n";
  text += std::string("output=") + dtypeName(s.output) + "\n";
  for (const GemmTile &t : info.tiles)
    text += "tile=" + std::to_string(t.bm) + " " + std::to_string(t.bn) + " " +
            std::to_string(t.bk) + " " + std::to_string(t.stages) + " " +
            std::to_string(t.threads) + " " + std::to_string(t.smemBytes) +
            "\n";
  return text;
}

Result<GpuModuleInfo> lq::gpu::parseModuleInfo(std::string_view text) {
  using R = Result<GpuModuleInfo>;
  GpuModuleInfo info;
  std::map<std::string, int> seen;
  bool versionSeen = false;
  int lineNumber = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view()
                                             : text.substr(newline + 1);
    ++lineNumber;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.remove_suffix(1);
    if (line.empty())
      continue;
    std::string where = "module info line " + std::to_string(lineNumber) + ": ";
    size_t eq = line.find('=');
    if (eq == std::string_view::npos)
      return R::failure(where + "expected key=value, got '" +
                        std::string(line) + "'");
    std::string key(line.substr(0, eq));
    std::string_view value = line.substr(eq + 1);
    if (!versionSeen) {
      int64_t version;
      if (key != "abi" || !parseInt(value, version))
        return R::failure(where + "the first line must be abi=<version>");
      if (version != kAbiVersion)
        return R::failure(where + "ABI version " + std::to_string(version) +
                          ", this launcher reads version " +
                          std::to_string(kAbiVersion));
      versionSeen = true;
      continue;
    }
    bool known = false;
    for (const char *k : kKeys)
      known |= key == k;
    if (!known)
      return R::failure(where + "unknown key '" + key + "'");
    if (key != "tile" && seen[key]++)
      return R::failure(where + "repeated key '" + key + "'");
    bool ok = true;
    GemmSpec &s = info.spec;
    if (key == "chip") {
      std::optional<Target> target = parseTarget(value);
      ok = target && isCudaTarget(*target);
      s.target = ok ? *target : Target::CudaSm80;
    } else if (key == "quantize") {
      ok = parseFlag(value, info.quantizeOnly);
    } else if (key == "lhs") {
      ok = parseOperand(value, s.lhs);
    } else if (key == "rhs") {
      ok = parseOperand(value, s.rhs);
    } else if (key == "samples") {
      int64_t samples;
      ok = parseInt(value, samples) && samples >= 1 && samples <= 64;
      s.samples = unsigned(ok ? samples : 1);
    } else if (key == "hindsight") {
      ok = parseFlag(value, s.hindsight);
    } else if (key == "bias") {
      ok = parseFlag(value, s.bias);
    } else if (key == "relu") {
      ok = parseFlag(value, s.relu);
    } else if (key == "output") {
      ok = parseDType(value, s.output);
    } else {
      info.tiles.emplace_back();
      ok = parseTile(value, info.tiles.back());
    }
    if (!ok)
      return R::failure(where + "bad value '" + std::string(value) +
                        "' for " + key);
  }
  if (!versionSeen)
    return R::failure("module info is empty (expected abi=" +
                      std::to_string(kAbiVersion) + " first)");
  std::string missing;
  for (const char *k : kKeys)
    if (std::string_view(k) != "tile" && !seen.count(k))
      missing += std::string(missing.empty() ? "" : ", ") + k;
  if (!missing.empty())
    return R::failure("module info lacks " + missing);
  if (Status valid = validateSpec(info.spec); !valid)
    return R::failure("module info: " + valid.error());
  if (info.quantizeOnly) {
    if (!info.tiles.empty())
      return R::failure("module info: a quantize module has no GEMM tiles");
    if (info.spec.lhs.dtype == DType::Packed4)
      return R::failure("module info: a quantize module quantizes f32 or "
                        "bf16 values");
  } else if (info.tiles.empty()) {
    return R::failure("module info: a GEMM module needs at least one tile");
  }
  return info;
}
