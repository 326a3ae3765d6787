//===- lq-train.cpp - 4-bit training of real networks with lq kernels -----===//
//
// Trains an MLP on Fashion-MNIST with every GEMM of every layer -- forward,
// backward-data, weight-gradient -- run by lq's generated kernels (or by
// OpenBLAS for the fp32 baseline), in several modes one after the other,
// and compares them:
//
//   lq-train --modes=fp32,luq,smp-fnt --epochs=10
//
// Per epoch: training loss and accuracy, test accuracy, time; at the end a
// table (accuracy, degradation against fp32, time per epoch), a CSV of the
// curves and a PNG plot of them (drawn by matplotlib).
//
//===----------------------------------------------------------------------===//

#include "Checkpoint.h"
#include "Dataset.h"
#include "Gemms.h"
#include "Model.h"
#include "Plot.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <unistd.h>

using namespace lq;
using namespace lq::train;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory kCategory("lq-train options");

cl::opt<std::string> dataDir("data-dir", cl::desc("Directory of the IDX files"),
                             cl::init("/usr/share/datasets/fashion-mnist"),
    cl::cat(kCategory));
cl::opt<std::string> modelName("model", cl::desc("Model: mlp or cnn"),
                               cl::init("mlp"),
    cl::cat(kCategory));
cl::list<std::string>
    modeNames("modes",
              cl::desc("Modes to train, in order: fp32, luq, smp, hindsight, "
                       "fnt, smp-fnt"),
              cl::CommaSeparated,
    cl::cat(kCategory));
cl::opt<std::string> device("device",
                           cl::desc("Where lq kernels run: cpu or gpu"),
                           cl::init("cpu"),
    cl::cat(kCategory));
cl::opt<unsigned> epochs("epochs", cl::desc("Epochs per mode"), cl::init(10),
    cl::cat(kCategory));
cl::opt<unsigned> batchSize("batch", cl::desc("Batch size"), cl::init(128),
    cl::cat(kCategory));
cl::opt<float> learningRate("lr", cl::desc("Peak learning rate (cosine decay)"),
                            cl::init(0.05f),
    cl::cat(kCategory));
cl::opt<float> momentum("momentum", cl::desc("SGD momentum"), cl::init(0.9f),
    cl::cat(kCategory));
cl::opt<float> weightDecay("weight-decay", cl::desc("L2 weight decay"),
                           cl::init(5e-4f),
    cl::cat(kCategory));
cl::opt<unsigned> samples("samples", cl::desc("SMP samples of smp modes"),
                          cl::init(2),
    cl::cat(kCategory));
cl::opt<unsigned> fntEpochs(
    "fnt-epochs",
    cl::desc("Final epochs of fnt modes with fp32 gradients (4-bit forward)"),
    cl::init(1),
    cl::cat(kCategory));
cl::opt<float> hindsightEta("eta", cl::desc("In-hindsight momentum"),
                            cl::init(0.5f),
    cl::cat(kCategory));
cl::opt<uint64_t> seed("seed", cl::desc("Seed of everything random"),
                       cl::init(1),
    cl::cat(kCategory));
cl::opt<unsigned> trainLimit("train-limit",
                             cl::desc("Use the first N training images (0: all)"),
                             cl::init(0),
    cl::cat(kCategory));
cl::opt<std::string> csvPath("csv", cl::desc("CSV of the curves"),
                             cl::init("lq-train.csv"),
    cl::cat(kCategory));
cl::opt<std::string> pngPath("png", cl::desc("PNG plot of the curves"),
                             cl::init("lq-train.png"),
    cl::cat(kCategory));
cl::opt<unsigned> maxSkips(
    "max-skipped-steps",
    cl::desc("Stop when this many steps in a row are skipped as non-finite"),
    cl::init(20),
    cl::cat(kCategory));

constexpr int kClasses = 10;

void error(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "lq-train") << message << "\n";
}

struct Mode {
  std::string name;
  bool lowPrecision = true;
  LqOptions lq;
  /// Final epochs fine-tuned with fp32 backward GEMMs, the forward pass
  /// (weights and activations) staying 4-bit.
  unsigned fnt = 0;
};

Result<Mode> parseMode(const std::string &name) {
  Mode mode;
  mode.name = name;
  if (name == "fp32")
    mode.lowPrecision = false;
  else if (name == "luq")
    ;
  else if (name == "smp" || name == "smp-fnt")
    mode.lq.samples = samples;
  else if (name == "hindsight")
    mode.lq.hindsight = true;
  else if (name == "fnt")
    ;
  else
    return Result<Mode>::failure("unknown mode '" + name +
                                 "': expected fp32, luq, smp, hindsight, fnt "
                                 "or smp-fnt");
  if (llvm::StringRef(name).ends_with("fnt"))
    mode.fnt = fntEpochs;
  mode.lq.eta = hindsightEta;
  return mode;
}

/// Softmax cross-entropy of the logits; writes d loss / d logits into
/// `grad` and returns (loss sum, correct count).
std::pair<double, int64_t> softmaxLoss(const float *logits,
                                       const uint8_t *labels, int64_t batch,
                                       float *grad) {
  double loss = 0.0;
  int64_t correct = 0;
  for (int64_t r = 0; r < batch; ++r) {
    const float *z = logits + r * kClasses;
    float m = *std::max_element(z, z + kClasses);
    double sum = 0.0;
    for (int c = 0; c < kClasses; ++c)
      sum += std::exp(double(z[c] - m));
    int label = labels[r];
    loss += std::log(sum) - double(z[label] - m);
    correct += std::max_element(z, z + kClasses) - z == label;
    if (grad)
      for (int c = 0; c < kClasses; ++c)
        grad[r * kClasses + c] =
            float((std::exp(double(z[c] - m)) / sum - (c == label)) /
                  double(batch));
  }
  return {loss, correct};
}

/// Test accuracy with `gemms`' forward pass (the quantized model in 4-bit
/// modes).
Result<double> evaluate(Net &net, Gemms &gemms, const Dataset &test) {
  int64_t correct = 0;
  int64_t pixels = test.pixels();
  for (int64_t start = 0; start < test.count; start += batchSize) {
    int64_t batch = std::min<int64_t>(batchSize, test.count - start);
    StepReport report;
    Result<bool> ok =
        net.forward(&test.images[size_t(start * pixels)], batch, gemms, report);
    if (!ok)
      return Result<double>::failure(ok.error());
    correct += softmaxLoss(net.logits().data(), &test.labels[size_t(start)],
                           batch, nullptr)
                   .second;
  }
  return 100.0 * double(correct) / double(test.count);
}

struct EpochResult {
  double loss = 0, trainAcc = 0, testAcc = 0, seconds = 0;
  int64_t skipped = 0;
};

/// A one-line progress bar with rate and ETA on a terminal; nothing
/// otherwise (logs keep the per-epoch lines).
class Progress {
public:
  Progress(std::string label, int64_t total)
      : label(std::move(label)), total(total), tty(isatty(2)),
        start(std::chrono::steady_clock::now()), last(start) {}
  void update(int64_t done, int64_t images, double loss) {
    if (!tty)
      return;
    auto now = std::chrono::steady_clock::now();
    if (done < total && now - last < std::chrono::milliseconds(200))
      return;
    last = now;
    double elapsed = std::chrono::duration<double>(now - start).count();
    double rate = elapsed > 0 ? double(images) / elapsed : 0.0;
    double eta = done > 0 ? elapsed * double(total - done) / double(done) : 0;
    constexpr int width = 30;
    int filled = int(width * done / std::max<int64_t>(1, total));
    std::string bar(size_t(filled), '=');
    if (filled < width)
      bar += '>' + std::string(size_t(width - filled - 1), ' ');
    std::fprintf(stderr, "\r%-16s [%s] %lld/%lld  %6.0f img/s  ETA %3.0fs  loss %.4f",
                 label.c_str(), bar.c_str(), (long long)done, (long long)total,
                 rate, eta, loss);
    if (done == total)
      std::fprintf(stderr, "\r%*s\r", 100, "");
  }

private:
  std::string label;
  int64_t total;
  bool tty;
  std::chrono::steady_clock::time_point start, last;
};

struct ModeResult {
  Mode mode;
  std::vector<EpochResult> epochs;
};

Result<ModeResult> trainMode(const Mode &mode, const Dataset &train,
                             const Dataset &test) {
  using R = Result<ModeResult>;
  std::mt19937_64 rng(seed);
  Result<Net> made = Net::make(modelName, train.rows, train.cols, rng);
  if (!made)
    return R::failure(made.error());
  Net &net = *made;
  std::unique_ptr<Gemms> fp32 = makeFp32Gemms();
  Result<std::unique_ptr<Gemms>> made4 = makeLqGemms(mode.lq, device == "gpu");
  if (!made4)
    return R::failure(made4.error());
  std::unique_ptr<Gemms> low = std::move(*made4);
  std::unique_ptr<Gemms> fineTune = makeFineTuneGemms(*low, *fp32);
  int64_t count = trainLimit ? std::min<int64_t>(trainLimit, train.count)
                             : train.count;
  int64_t steps = count / batchSize;
  if (steps == 0)
    return R::failure("fewer training images (" + std::to_string(count) +
                      ") than one batch (" + std::to_string(batchSize) + ")");
  int64_t pixels = train.pixels();
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::vector<float> images(size_t(batchSize * pixels)), dlogits;
  std::vector<uint8_t> labels(batchSize);
  ModeResult result{mode, {}};
  int64_t consecutiveSkips = 0;

  for (unsigned epoch = 0; epoch < epochs; ++epoch) {
    // FNT epochs keep the 4-bit forward pass (the low-precision model) and
    // take high-precision gradients.
    bool fineTuning = mode.lowPrecision && epoch + mode.fnt >= epochs;
    Gemms &gemms = !mode.lowPrecision ? *fp32 : fineTuning ? *fineTune : *low;
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + epoch));
    auto start = std::chrono::steady_clock::now();
    EpochResult er;
    double lossSum = 0.0;
    int64_t correct = 0, seen = 0;
    Progress progress(mode.name + " " + std::to_string(epoch + 1) + "/" +
                          std::to_string(epochs),
                      steps);
    for (int64_t step = 0; step < steps; ++step) {
      int64_t batch = batchSize;
      for (int64_t r = 0; r < batch; ++r) {
        int64_t item = order[size_t(step * batch + r)];
        std::copy_n(&train.images[size_t(item * pixels)], pixels,
                    &images[size_t(r * pixels)]);
        labels[size_t(r)] = train.labels[size_t(item)];
      }
      int64_t globalStep = int64_t(epoch) * steps + step;
      gemms.beginStep(seed * 0x9E3779B97F4A7C15ull + uint64_t(globalStep));
      StepReport report;
      Result<bool> ok = net.forward(images.data(), batch, gemms, report);
      if (!ok)
        return R::failure(ok.error());
      dlogits.resize(size_t(batch * kClasses));
      auto [loss, right] = softmaxLoss(net.logits().data(), labels.data(),
                                       batch, dlogits.data());
      ok = net.backward(dlogits.data(), batch, gemms, report);
      if (!ok)
        return R::failure(ok.error());
      // A non-finite loss, activation or gradient skips the step (as the
      // numerics contract's nonfinite flag asks); persistent ones stop.
      if (report.nonfinite || !std::isfinite(loss) || !net.gradientsFinite()) {
        ++er.skipped;
        if (++consecutiveSkips >= maxSkips)
          return R::failure("training diverged: " +
                            std::to_string(consecutiveSkips) +
                            " steps in a row had non-finite values (epoch " +
                            std::to_string(epoch + 1) + ", step " +
                            std::to_string(step + 1) + ")");
        continue;
      }
      consecutiveSkips = 0;
      double t = double(globalStep) / double(epochs * steps);
      net.sgdStep(float(learningRate * 0.5 * (1.0 + std::cos(M_PI * t))),
                  momentum, weightDecay);
      lossSum += loss;
      correct += right;
      seen += batch;
      progress.update(step + 1, (step + 1) * batch, loss / double(batch));
    }
    er.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    er.loss = seen ? lossSum / double(seen) : NAN;
    er.trainAcc = seen ? 100.0 * double(correct) / double(seen) : NAN;
    Result<double> acc = evaluate(net, gemms, test);
    if (!acc)
      return R::failure(acc.error());
    er.testAcc = *acc;
    std::printf("%-10s epoch %2u/%u%s  loss %.4f  train %.2f%%  test %.2f%%  "
                "%.1f s%s\n",
                mode.name.c_str(), epoch + 1, unsigned(epochs),
                fineTuning ? " (fnt)" : "", er.loss,
                er.trainAcc, er.testAcc, er.seconds,
                er.skipped ? ("  " + std::to_string(er.skipped) +
                              " steps skipped")
                                 .c_str()
                           : "");
    std::fflush(stdout);
    result.epochs.push_back(er);
  }
  return result;
}

Result<bool> writeCsv(const std::vector<ModeResult> &results) {
  std::string tmp = csvPath + ".tmp";
  {
    std::ofstream out(tmp);
    out << "mode,epoch,train_loss,train_accuracy,test_accuracy,seconds,"
           "skipped_steps\n";
    for (const ModeResult &r : results)
      for (size_t e = 0; e < r.epochs.size(); ++e) {
        const EpochResult &er = r.epochs[e];
        out << r.mode.name << ',' << e + 1 << ',' << er.loss << ','
            << er.trainAcc << ',' << er.testAcc << ',' << er.seconds << ','
            << er.skipped << '\n';
      }
    if (!out)
      return Result<bool>::failure(csvPath + ": cannot write");
  }
  if (std::rename(tmp.c_str(), csvPath.c_str()) != 0)
    return Result<bool>::failure(csvPath + ": cannot write");
  return true;
}

void printTable(const std::vector<ModeResult> &results) {
  const ModeResult *baseline = nullptr;
  for (const ModeResult &r : results)
    if (!r.mode.lowPrecision)
      baseline = &r;
  auto meanSeconds = [](const ModeResult &r) {
    double s = 0;
    for (const EpochResult &e : r.epochs)
      s += e.seconds;
    return s / double(std::max<size_t>(1, r.epochs.size()));
  };
  std::printf("\n%-10s %10s %12s %12s %10s\n", "mode", "test acc",
              "vs fp32 (pt)", "s / epoch", "vs fp32");
  for (const ModeResult &r : results) {
    double acc = r.epochs.back().testAcc, secs = meanSeconds(r);
    if (baseline && baseline != &r)
      std::printf("%-10s %9.2f%% %+12.2f %12.2f %9.2fx\n",
                  r.mode.name.c_str(), acc,
                  acc - baseline->epochs.back().testAcc, secs,
                  secs / meanSeconds(*baseline));
    else
      std::printf("%-10s %9.2f%% %12s %12.2f %10s\n", r.mode.name.c_str(), acc,
                  "-", secs, "-");
  }
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // Only the tool\'s own options in --help, not LLVM\'s internal ones.
  cl::HideUnrelatedOptions(kCategory);
  cl::ParseCommandLineOptions(
      argc, argv,
      "lq-train: trains a network on Fashion-MNIST with 4-bit GEMMs\n");
  if (modelName != "mlp" && modelName != "cnn")
    return error("unknown model '" + modelName + "': expected mlp or cnn"), 1;
  if (device != "cpu" && device != "gpu")
    return error("unknown device '" + device + "': expected cpu or gpu"), 1;
  if (batchSize == 0)
    return error("--batch must be positive"), 1;
  if (samples == 0 || (samples & (samples - 1)) != 0 || samples > 64)
    return error("--samples must be a power of two in [1, 64]"), 1;
  if (modeNames.empty())
    modeNames.push_back("fp32"), modeNames.push_back("luq");
  std::vector<Mode> modes;
  for (const std::string &name : modeNames) {
    Result<Mode> mode = parseMode(name);
    if (!mode)
      return error(mode.error()), 1;
    if (mode->fnt >= epochs)
      return error("--fnt-epochs (" + std::to_string(mode->fnt) +
                   ") must be below --epochs (" + std::to_string(epochs) + ")"),
             1;
    modes.push_back(*mode);
  }

  Result<Dataset> train = loadIdx(dataDir, "train");
  if (!train)
    return error(train.error()), 1;
  Result<Dataset> test = loadIdx(dataDir, "t10k");
  if (!test)
    return error(test.error()), 1;
  if (test->pixels() != train->pixels())
    return error("training and test images differ in size"), 1;
  std::mt19937_64 rng(seed);
  Result<Net> net = Net::make(modelName, train->rows, train->cols, rng);
  if (!net)
    return error(net.error()), 1;
  std::printf("Fashion-MNIST: %lld training and %lld test images of %lldx%lld; "
              "%s, batch %u, %u epochs per mode\n",
              (long long)train->count, (long long)test->count,
              (long long)train->rows, (long long)train->cols,
              net->describe().c_str(), unsigned(batchSize), unsigned(epochs));

  std::vector<ModeResult> results;
  for (const Mode &mode : modes) {
    Result<ModeResult> r = trainMode(mode, *train, *test);
    if (!r)
      return error(mode.name + ": " + r.error()), 1;
    results.push_back(std::move(*r));
  }
  printTable(results);

  // Outputs replace files of the same name: say which did exist.
  std::vector<std::string> replaced;
  for (const std::string &path : {std::string(csvPath), std::string(pngPath)})
    if (llvm::sys::fs::exists(path))
      replaced.push_back(path);
  Result<bool> csv = writeCsv(results);
  if (!csv)
    return error(csv.error()), 1;
  Result<PlotOutcome> plot = writePlot(csvPath, pngPath);
  if (!plot)
    return error(plot.error()), 1;
  if (plot->written) {
    std::printf("curves: %s, %s\n", csvPath.c_str(), pngPath.c_str());
  } else {
    std::printf("curves: %s\nplot: %s\n", csvPath.c_str(),
                plot->note.c_str());
    llvm::erase(replaced, std::string(pngPath));
  }
  for (const std::string &path : replaced)
    std::printf("note: %s existed and was replaced\n", path.c_str());
  return 0;
}
