//===- GpuAbi.cpp - module info of generated GPU kernels ------------------===//

#include "lq/Spec/GpuAbi.h"

#include <charconv>
#include <map>
#include <sstream>

using namespace lq;
using namespace lq::cuda;

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

std::string lq::cuda::writeModuleInfo(const GpuModuleInfo &info) {
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

Result<GpuModuleInfo> lq::cuda::parseModuleInfo(std::string_view text) {
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

const std::vector<ParamInfo> &lq::cuda::signature(KernelKind kind) {
  static const std::vector<ParamInfo> stats = {
      LQ_GPU_STATS_PARAMS(LQ_GPU_PARAM_INFO)};
  static const std::vector<ParamInfo> quant = {
      LQ_GPU_QUANT_PARAMS(LQ_GPU_PARAM_INFO)};
  static const std::vector<ParamInfo> gemm = {
      LQ_GPU_GEMM_PARAMS(LQ_GPU_PARAM_INFO)};
  static const std::vector<ParamInfo> gemmTma = {
      LQ_GPU_GEMM_PARAMS(LQ_GPU_PARAM_INFO)
          LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_PARAM_INFO)};
  static const std::vector<ParamInfo> gemmWs = {
      LQ_GPU_GEMM_WS_PARAMS(LQ_GPU_PARAM_INFO)};
  static const std::vector<ParamInfo> fill = {
      LQ_GPU_FILL_PARAMS(LQ_GPU_PARAM_INFO)};
  switch (kind) {
  case KernelKind::Stats:
    return stats;
  case KernelKind::Quant:
    return quant;
  case KernelKind::Gemm:
    return gemm;
  case KernelKind::GemmTma:
    return gemmTma;
  case KernelKind::GemmWs:
    return gemmWs;
  case KernelKind::Fill:
    break;
  }
  return fill;
}

std::optional<KernelKind> lq::cuda::kernelKind(std::string_view name) {
  for (bool lhs : {true, false}) {
    if (name == statsKernel(lhs))
      return KernelKind::Stats;
    if (name == quantKernel(lhs) || name == quant8Kernel(lhs))
      return KernelKind::Quant;
  }
  if (name == kFillKernel)
    return KernelKind::Fill;
  for (const WsTile &t : wsTiles())
    if (name == gemmWsKernel(t))
      return KernelKind::GemmWs;
  // lq_gemm_<bm>x<bn>_<any|vec|tma>[_pa]
  std::string_view prefix = "lq_gemm_";
  if (name.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  std::string_view rest = name.substr(prefix.size());
  if (rest.size() > 3 && rest.substr(rest.size() - 3) == "_pa")
    rest.remove_suffix(3);
  size_t underscore = rest.rfind('_');
  if (underscore == std::string_view::npos)
    return std::nullopt;
  std::string_view copy = rest.substr(underscore + 1);
  if (copy == "tma")
    return KernelKind::GemmTma;
  if (copy == "vec" || copy == "any")
    return KernelKind::Gemm;
  return std::nullopt;
}

namespace {

/// The PTX declaration of a parameter of `kind`, without its name.
bool declares(std::string_view decl, ParamKind kind) {
  auto startsWith = [&](std::string_view prefix) {
    return decl.substr(0, prefix.size()) == prefix;
  };
  switch (kind) {
  case ParamKind::Ptr:
    return startsWith(".u64 .ptr .global ");
  case ParamKind::I64:
    return startsWith(".u64 ") && !startsWith(".u64 .ptr");
  case ParamKind::I32:
    return startsWith(".u32 ");
  case ParamKind::F32:
    return startsWith(".f32 ");
  case ParamKind::TensorMap:
    return startsWith(".align 64 .b8 ") && decl.size() > 5 &&
           decl.substr(decl.size() - 5) == "[128]";
  }
  return false;
}

const char *kindName(ParamKind kind) {
  switch (kind) {
  case ParamKind::Ptr:
    return "a global pointer (.u64 .ptr .global)";
  case ParamKind::I64:
    return ".u64";
  case ParamKind::I32:
    return ".u32";
  case ParamKind::F32:
    return ".f32";
  case ParamKind::TensorMap:
    return ".align 64 .b8 [128]";
  }
  return "?";
}

/// The parameter declarations of the entry whose list starts at `text`
/// (after its '('), each without `.param ` and trailing commas.
std::vector<std::string_view> paramDecls(std::string_view text) {
  std::vector<std::string_view> decls;
  size_t end = text.find(')');
  std::string_view list = text.substr(0, end);
  size_t at = 0;
  while ((at = list.find(".param ", at)) != std::string_view::npos) {
    at += 7;
    size_t stop = list.find_first_of(",\n", at);
    std::string_view decl = list.substr(at, stop - at);
    while (!decl.empty() && (decl.back() == ',' || decl.back() == ' '))
      decl.remove_suffix(1);
    decls.push_back(decl);
  }
  return decls;
}

} // namespace

Status lq::cuda::checkSignatures(std::string_view ptx, size_t *entries) {
  size_t count = 0;
  for (size_t at = 0; (at = ptx.find(".entry ", at)) != std::string_view::npos;
       ++count) {
    at += 7;
    size_t open = ptx.find('(', at);
    if (open == std::string_view::npos)
      return Error{"a .entry without a parameter list"};
    std::string name(ptx.substr(at, open - at));
    std::optional<KernelKind> kind = kernelKind(name);
    if (!kind)
      return Error{"kernel " + name + " is not in the GPU ABI"};
    const std::vector<ParamInfo> &want = signature(*kind);
    std::vector<std::string_view> got = paramDecls(ptx.substr(open + 1));
    if (got.size() != want.size())
      return Error{"kernel " + name + " declares " +
                   std::to_string(got.size()) + " parameters, the ABI " +
                   std::to_string(want.size())};
    for (size_t i = 0; i < got.size(); ++i)
      if (!declares(got[i], want[i].kind))
        return Error{"kernel " + name + " parameter " + std::to_string(i) +
                     " (" + want[i].name + ") is '" + std::string(got[i]) +
                     "', the ABI says " + kindName(want[i].kind)};
  }
  if (entries)
    *entries = count;
  return Done{};
}
