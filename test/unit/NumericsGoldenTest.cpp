//===- NumericsGoldenTest.cpp - Golden vectors of numerics v1 -------------===//
//
// Reproduces test/golden/numerics_v1.json, written by an implementation of
// the numerics contract independent of this one, bit for bit.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

using namespace lq::numerics;

namespace {

// The file carries every float twice, as hex bits and as a decimal for
// readers; the decimals of non-finite values are the non-standard tokens
// NaN, Infinity and -Infinity, which strict JSON parsers reject. The tests
// read only the bits, so those tokens (outside strings) become null.
size_t nonfiniteTokenLength(llvm::StringRef rest) {
  for (llvm::StringRef token : {"-Infinity", "Infinity", "NaN"})
    if (rest.starts_with(token))
      return token.size();
  return 0;
}

std::string withNonfiniteAsNull(llvm::StringRef text) {
  std::string result;
  bool inString = false;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (inString) {
      bool escape = c == '\\' && i + 1 < text.size();
      result.append(text.data() + i, escape ? 2 : 1);
      i += escape ? 2 : 1;
      inString = c != '"';
      continue;
    }
    if (size_t length = nonfiniteTokenLength(text.substr(i))) {
      result += "null";
      i += length;
      continue;
    }
    inString = c == '"';
    result += c;
    ++i;
  }
  return result;
}

llvm::json::Value loadGolden() {
  auto buffer = llvm::MemoryBuffer::getFile(LQ_GOLDEN_DIR "/numerics_v1.json");
  if (!buffer) {
    ADD_FAILURE() << "cannot read " << LQ_GOLDEN_DIR "/numerics_v1.json";
    return nullptr;
  }
  llvm::Expected<llvm::json::Value> parsed =
      llvm::json::parse(withNonfiniteAsNull((*buffer)->getBuffer()));
  if (!parsed) {
    ADD_FAILURE() << llvm::toString(parsed.takeError());
    return nullptr;
  }
  return std::move(*parsed);
}

const llvm::json::Array &section(const char *name) {
  static const llvm::json::Value root = loadGolden();
  static const llvm::json::Array empty;
  const llvm::json::Object *object = root.getAsObject();
  const llvm::json::Array *array = object ? object->getArray(name) : nullptr;
  if (!array || array->empty())
    ADD_FAILURE() << "golden file has no '" << name << "' vectors";
  return array ? *array : empty;
}

uint32_t hexBits(const llvm::json::Value &value) {
  return uint32_t(std::strtoul(value.getAsString()->str().c_str(), nullptr, 16));
}

uint32_t hexField(const llvm::json::Object &object, const char *key) {
  return hexBits(*object.get(key));
}

uint64_t unsignedField(const llvm::json::Object &object, const char *key) {
  return *object.get(key)->getAsUINT64();
}

std::vector<uint32_t> hexList(const llvm::json::Object &object,
                              const char *key) {
  std::vector<uint32_t> bits;
  for (const llvm::json::Value &value : *object.getArray(key))
    bits.push_back(hexBits(value));
  return bits;
}

std::vector<float> floatList(const llvm::json::Object &object,
                             const char *key) {
  std::vector<float> values;
  for (uint32_t bits : hexList(object, key))
    values.push_back(bitsToFloat(bits));
  return values;
}

std::vector<int8_t> intList(const llvm::json::Object &object,
                            const char *key) {
  std::vector<int8_t> values;
  for (const llvm::json::Value &value : *object.getArray(key))
    values.push_back(int8_t(*value.getAsInteger()));
  return values;
}

std::string nameOf(const llvm::json::Object &object) {
  return object.getString("name").value_or("").str();
}

template <typename T>
std::vector<T> transposed(const std::vector<T> &values, size_t rows,
                          size_t cols) {
  std::vector<T> result(values.size());
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      result[c * rows + r] = values[r * cols + c];
  return result;
}

TEST(NumericsGolden, Uniforms) {
  for (const llvm::json::Value &entry : section("uniforms")) {
    const llvm::json::Object &vector = *entry.getAsObject();
    RandomKey key{unsignedField(vector, "seed"),
                  uint32_t(unsignedField(vector, "stream")),
                  uint32_t(unsignedField(vector, "sample"))};
    std::vector<uint32_t> expected = hexList(vector, "u_bits");
    ASSERT_EQ(expected.size(), unsignedField(vector, "first_indices"));
    UniformGenerator generator(key);
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(floatToBits(uniform(key, i)), expected[i]) << "index " << i;
      EXPECT_EQ(floatToBits(generator(i)), expected[i]) << "index " << i;
    }
  }
}

TEST(NumericsGolden, Luq) {
  for (const llvm::json::Value &entry : section("luq")) {
    const llvm::json::Object &vector = *entry.getAsObject();
    SCOPED_TRACE(nameOf(vector));
    RandomKey key{unsignedField(vector, "seed"),
                  uint32_t(unsignedField(vector, "stream")),
                  uint32_t(unsignedField(vector, "sample"))};
    std::vector<float> x = floatList(vector, "x_bits");
    std::vector<int8_t> codes(x.size(), -1);
    MatrixView view = MatrixView::f32(x.data(), 1, x.size());
    std::optional<double> hindsight = vector.getNumber("hindsight_max");
    LuqResult result =
        hindsight ? luqEncodeHindsight(view, float(*hindsight), key,
                                       codes.data())
                  : luqEncode(view, key, codes.data());
    ASSERT_EQ(result.status, Status::Ok);
    EXPECT_EQ(codes, intList(vector, "codes"));
    EXPECT_EQ(floatToBits(result.alpha), hexField(vector, "alpha_bits"));
    EXPECT_EQ(result.nonfinite, *vector.getBoolean("nonfinite"));
    EXPECT_EQ(result.overflowCount, unsignedField(vector, "overflow_count"));
  }
}

TEST(NumericsGolden, Sawb) {
  for (const llvm::json::Value &entry : section("sawb")) {
    const llvm::json::Object &vector = *entry.getAsObject();
    std::string name = nameOf(vector);
    SCOPED_TRACE(name);
    SawbKind kind = name.find("unsigned") != std::string::npos
                        ? SawbKind::Unsigned
                        : SawbKind::Signed;
    std::vector<float> x = floatList(vector, "x_bits");
    std::vector<int8_t> codes(x.size(), -1);
    MatrixView view = MatrixView::f32(x.data(), 1, x.size());
    SawbClipResult clip = sawbClip(view);
    ASSERT_EQ(clip.status, Status::Ok);
    EXPECT_EQ(floatToBits(clip.clip), hexField(vector, "clip_bits"));
    SawbResult result = sawbQuantize(view, kind, codes.data());
    ASSERT_EQ(result.status, Status::Ok);
    EXPECT_FALSE(result.nonfinite);
    EXPECT_EQ(floatToBits(result.clip), hexField(vector, "clip_bits"));
    EXPECT_EQ(floatToBits(result.step), hexField(vector, "step_bits"));
    EXPECT_EQ(codes, intList(vector, "codes"));
  }
}

// The golden GEMM is LUQ codes [3, 5] times signed int4 [5, 4]; it must
// come out the same whichever way the operands are stored.
TEST(NumericsGolden, Gemm) {
  for (const llvm::json::Value &entry : section("gemm")) {
    const llvm::json::Object &vector = *entry.getAsObject();
    SCOPED_TRACE(nameOf(vector));
    const GemmShape shape{3, 4, 5};
    std::vector<int8_t> a = intList(vector, "a_codes");
    std::vector<int8_t> b = intList(vector, "b_int");
    ASSERT_EQ(a.size(), shape.m * shape.k);
    ASSERT_EQ(b.size(), shape.k * shape.n);
    std::vector<int8_t> aT = transposed(a, shape.m, shape.k);
    std::vector<int8_t> bT = transposed(b, shape.k, shape.n);
    float aScale = bitsToFloat(hexField(vector, "a_scale_bits"));
    float bScale = bitsToFloat(hexField(vector, "b_scale_bits"));
    std::vector<uint32_t> expectedC = hexList(vector, "c_bits");
    std::vector<int32_t> expectedAccumulators;
    for (const llvm::json::Value &value : *vector.getArray("acc_int32"))
      expectedAccumulators.push_back(int32_t(*value.getAsInteger()));

    for (bool transA : {false, true}) {
      for (bool transB : {false, true}) {
        for (bool packed : {false, true}) {
          SCOPED_TRACE(testing::Message() << "transA " << transA << " transB "
                                          << transB << " packed " << packed);
          const std::vector<int8_t> &aStored = transA ? aT : a;
          const std::vector<int8_t> &bStored = transB ? bT : b;
          std::vector<float> c(shape.m * shape.n);
          std::vector<int32_t> acc(shape.m * shape.n);
          GemmOutput output{c.data(), nullptr, acc.data()};
          GemmResult result;
          if (packed) {
            size_t aRows = transA ? shape.k : shape.m;
            size_t aCols = transA ? shape.m : shape.k;
            size_t bRows = transB ? shape.n : shape.k;
            size_t bCols = transB ? shape.k : shape.n;
            std::vector<uint8_t> aPacked(aRows * packedRowBytes(aCols));
            std::vector<uint8_t> bPacked(bRows * packedRowBytes(bCols));
            ASSERT_EQ(packCodes(Format::Log4, aStored.data(), aRows, aCols,
                                aPacked.data()),
                      Status::Ok);
            ASSERT_EQ(packCodes(Format::Int4Signed, bStored.data(), bRows,
                                bCols, bPacked.data()),
                      Status::Ok);
            result = quantizedGemmPacked(
                shape, {aPacked.data(), Format::Log4, aScale, transA},
                {bPacked.data(), Format::Int4Signed, bScale, transB}, {},
                output);
          } else {
            result = quantizedGemm(
                shape, {aStored.data(), Format::Log4, aScale, transA},
                {bStored.data(), Format::Int4Signed, bScale, transB}, {},
                output);
          }
          ASSERT_EQ(result.status, Status::Ok);
          EXPECT_EQ(floatToBits(result.scale), hexField(vector, "s_bits"));
          EXPECT_EQ(acc, expectedAccumulators);
          std::vector<uint32_t> cBits;
          for (float value : c)
            cBits.push_back(floatToBits(value));
          EXPECT_EQ(cBits, expectedC);
        }
      }
    }
  }
}

} // namespace
