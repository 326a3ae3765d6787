//===- Dataset.cpp - IDX image classification data ------------------------===//

#include "Dataset.h"

#include <zlib.h>

#include <sys/mman.h>
#include <sys/stat.h>

using namespace lq;
using namespace lq::train;

namespace {

constexpr uint32_t kImagesMagic = 0x00000803; // unsigned bytes, 3 dims
constexpr uint32_t kLabelsMagic = 0x00000801; // unsigned bytes, 1 dim
constexpr int kClasses = 10;

/// The file `base` or `base.gz`, whichever exists.
Result<std::string> findFile(const std::string &base) {
  struct stat st;
  for (std::string path : {base + ".gz", base})
    if (::stat(path.c_str(), &st) == 0)
      return path;
  return Result<std::string>::failure(
      base + "[.gz]: no such file (install the dataset-fashion-mnist package "
             "or pass --data-dir)");
}

/// The whole (decompressed) contents of `path`.
Result<std::string> readAll(const std::string &path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file)
    return Result<std::string>::failure(path + ": cannot open");
  std::string data;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0)
    data.append(buffer, size_t(n));
  int error = 0;
  std::string message = n < 0 ? gzerror(file, &error) : "";
  gzclose(file);
  if (n < 0)
    return Result<std::string>::failure(path + ": corrupt compressed data (" +
                                        message + ")");
  return data;
}

uint32_t bigEndian(const std::string &data, size_t offset) {
  auto byte = [&](size_t i) { return uint32_t(uint8_t(data[offset + i])); };
  return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

/// Asks for transparent huge pages under [data, data + bytes) before its
/// pages are first touched. A batch gathers 128 random images, each on
/// pages of its own: with 4 KiB pages every image costs a TLB miss, with
/// 2 MiB pages the whole training set needs fewer than a hundred entries.
/// Only a hint: where the kernel declines, nothing changes.
void preferHugePages(void *data, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  uintptr_t begin = (uintptr_t(data) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (uintptr_t(data) + bytes) & ~(kHuge - 1);
  if (end > begin)
    (void)madvise(reinterpret_cast<void *>(begin), end - begin,
                  MADV_HUGEPAGE);
}

/// The header words of an IDX file after checking its magic and size.
Result<std::vector<uint32_t>> header(const std::string &path,
                                     const std::string &data, uint32_t magic,
                                     size_t dims) {
  using R = Result<std::vector<uint32_t>>;
  size_t headerBytes = 4 * (1 + dims);
  if (data.size() < headerBytes)
    return R::failure(path + ": truncated header (" +
                      std::to_string(data.size()) + " bytes)");
  if (bigEndian(data, 0) != magic)
    return R::failure(path + ": not an IDX file of this kind (magic " +
                      std::to_string(bigEndian(data, 0)) + ", expected " +
                      std::to_string(magic) + ")");
  std::vector<uint32_t> sizes;
  uint64_t payload = 1;
  for (size_t d = 0; d < dims; ++d) {
    sizes.push_back(bigEndian(data, 4 * (1 + d)));
    payload *= sizes.back();
  }
  if (data.size() != headerBytes + payload)
    return R::failure(path + ": " + std::to_string(data.size() - headerBytes) +
                      " bytes of data where the header promises " +
                      std::to_string(payload));
  return sizes;
}

} // namespace

Result<Dataset> lq::train::loadIdx(const std::string &dir,
                                   const std::string &prefix) {
  using R = Result<Dataset>;
  Result<std::string> imagesPath =
      findFile(dir + "/" + prefix + "-images-idx3-ubyte");
  if (!imagesPath)
    return R::failure(imagesPath.error());
  Result<std::string> labelsPath =
      findFile(dir + "/" + prefix + "-labels-idx1-ubyte");
  if (!labelsPath)
    return R::failure(labelsPath.error());
  Result<std::string> images = readAll(*imagesPath);
  if (!images)
    return R::failure(images.error());
  Result<std::string> labels = readAll(*labelsPath);
  if (!labels)
    return R::failure(labels.error());
  auto imageHeader = header(*imagesPath, *images, kImagesMagic, 3);
  if (!imageHeader)
    return R::failure(imageHeader.error());
  auto labelHeader = header(*labelsPath, *labels, kLabelsMagic, 1);
  if (!labelHeader)
    return R::failure(labelHeader.error());
  if ((*imageHeader)[0] != (*labelHeader)[0])
    return R::failure(*imagesPath + " holds " +
                      std::to_string((*imageHeader)[0]) + " images but " +
                      *labelsPath + " " + std::to_string((*labelHeader)[0]) +
                      " labels");
  Dataset set;
  set.count = (*imageHeader)[0];
  set.rows = (*imageHeader)[1];
  set.cols = (*imageHeader)[2];
  if (set.count == 0 || set.pixels() == 0)
    return R::failure(*imagesPath + ": no images");
  size_t elements = size_t(set.count * set.pixels());
  set.images.reserve(elements);
  preferHugePages(set.images.data(), elements * sizeof(float));
  set.images.resize(elements);
  for (size_t i = 0; i < set.images.size(); ++i)
    set.images[i] = float(uint8_t((*images)[16 + i])) * (1.0f / 255.0f);
  set.labels.assign(labels->begin() + 8, labels->end());
  for (size_t i = 0; i < set.labels.size(); ++i)
    if (set.labels[i] >= kClasses)
      return R::failure(*labelsPath + ": label " +
                        std::to_string(set.labels[i]) + " of item " +
                        std::to_string(i) + " is outside 0..9");
  return set;
}
