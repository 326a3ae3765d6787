//===- Spec.cpp - lq's vocabulary: names, constructors, validity ----------===//

#include "lq/Spec/Spec.h"

using namespace lq;

namespace {

struct TargetName {
  Target target;
  const char *name;
};

/// The one table of target names.
constexpr TargetName kTargets[] = {{Target::HostCPU, "host"},
                                   {Target::CudaSm80, "sm_80"},
                                   {Target::CudaSm90a, "sm_90a"}};

} // namespace

const char *lq::lqVersion() { return LQ_VERSION; }

const char *lq::formatName(Format format) {
  switch (format) {
  case Format::SInt4:
    return "sint4";
  case Format::UInt4:
    return "uint4";
  case Format::Log4:
    return "log4";
  }
  return "?";
}

const char *lq::dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  case DType::Packed4:
    return "packed4";
  }
  return "?";
}

const char *lq::targetName(Target target) {
  for (const TargetName &t : kTargets)
    if (t.target == target)
      return t.name;
  return "?";
}

std::optional<Target> lq::parseTarget(std::string_view name) {
  for (const TargetName &t : kTargets)
    if (name == t.name)
      return t.target;
  return std::nullopt;
}

const std::vector<Target> &lq::cudaTargets() {
  static const std::vector<Target> targets = [] {
    std::vector<Target> cuda;
    for (const TargetName &t : kTargets)
      if (isCudaTarget(t.target))
        cuda.push_back(t.target);
    return cuda;
  }();
  return targets;
}

std::string lq::cudaTargetNames() {
  std::string names;
  const std::vector<Target> &cuda = cudaTargets();
  for (size_t i = 0; i < cuda.size(); ++i)
    names += std::string(i == 0 ? "" : i + 1 == cuda.size() ? " or " : ", ") +
             targetName(cuda[i]);
  return names;
}

size_t lq::elementBytes(DType dtype) {
  return dtype == DType::F32 ? 4 : dtype == DType::BF16 ? 2 : 1;
}

bool lq::knownFormat(Format f) {
  return f == Format::SInt4 || f == Format::UInt4 || f == Format::Log4;
}

bool lq::knownDType(DType d) {
  return d == DType::F32 || d == DType::BF16 || d == DType::Packed4;
}

GemmSpec GemmSpec::forward(DType input, bool unsignedInput) {
  GemmSpec spec;
  spec.lhs = {unsignedInput ? Format::UInt4 : Format::SInt4, input, false};
  spec.rhs = {Format::SInt4, input, /*transposed=*/true};
  return spec;
}

GemmSpec GemmSpec::backwardData(DType input, unsigned samples) {
  GemmSpec spec;
  spec.lhs = {Format::Log4, input, false};
  spec.rhs = {Format::SInt4, input, false};
  spec.samples = samples;
  return spec;
}

GemmSpec GemmSpec::weightGrad(DType input, unsigned samples,
                              bool unsignedInput) {
  GemmSpec spec;
  spec.lhs = {Format::Log4, input, /*transposed=*/true};
  spec.rhs = {unsignedInput ? Format::UInt4 : Format::SInt4, input, false};
  spec.samples = samples;
  return spec;
}

std::string GemmSpec::describe() const {
  auto side = [](const OperandSpec &op) {
    return std::string(formatName(op.format)) + ":" + dtypeName(op.dtype) +
           (op.transposed ? ":t" : ":n");
  };
  return "gemm lhs=" + side(lhs) + " rhs=" + side(rhs) +
         " smp=" + std::to_string(samples) + " hindsight=" +
         (hindsight ? "1" : "0") + " bias=" + (bias ? "1" : "0") +
         " relu=" + (relu ? "1" : "0") + " out=" + dtypeName(output) +
         " target=" + targetName(target);
}

Status lq::validateSpec(const GemmSpec &spec) {
  if (!knownFormat(spec.lhs.format) || !knownFormat(spec.rhs.format))
    return Error{"unknown operand format"};
  if (!knownDType(spec.lhs.dtype) || !knownDType(spec.rhs.dtype))
    return Error{"unknown operand dtype"};
  if (!knownDType(spec.output))
    return Error{"unknown output dtype"};
  if (spec.target != Target::HostCPU && !isCudaTarget(spec.target))
    return Error{"unknown target"};
  if (spec.lhs.format == Format::Log4 && spec.rhs.format == Format::Log4)
    return Error{"at most one GEMM operand may be log4 (the exact int32 "
                 "bound assumes |a * b| <= 15 * 64)"};
  if (spec.samples < 1 || spec.samples > kMaxSamples ||
      (spec.samples & (spec.samples - 1)) != 0)
    return Error{"SMP sample count must be a power of two in [1, " +
                 std::to_string(kMaxSamples) + "], got " +
                 std::to_string(spec.samples)};
  if (spec.samples > 1 && spec.lhs.format != Format::Log4)
    return Error{"SMP samples apply to a LUQ (log4) left operand"};
  if (spec.hindsight &&
      (spec.lhs.format != Format::Log4 || spec.lhs.dtype == DType::Packed4))
    return Error{"in-hindsight scaling applies to a float LUQ (log4) left "
                 "operand"};
  if (spec.output == DType::Packed4)
    return Error{"GEMM output must be f32 or bf16"};
  return Done{};
}
