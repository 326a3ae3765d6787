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
// curves and a PNG plot of them (drawn by matplotlib). With --checkpoint
// the run's state is saved after every epoch, and --resume continues it to
// the numbers of the run never stopped (Checkpoint.h).
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
#include "llvm/Support/xxhash.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
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
cl::opt<std::string> checkpointDir(
    "checkpoint",
    cl::desc("Write a checkpoint into this directory after every epoch"),
    cl::value_desc("dir"), cl::cat(kCategory));
cl::opt<std::string> resumeDir(
    "resume",
    cl::desc("Continue the run checkpointed in this directory, with its "
             "options (any given must match)"),
    cl::value_desc("dir"), cl::cat(kCategory));

cl::opt<bool> profileEpochs(
    "profile",
    cl::desc("After each epoch, print where its training time went: the "
             "GEMMs by kind, the layers' own work, the loss, the finite "
             "check, the optimizer, the batch copy"),
    cl::cat(kCategory));

constexpr int kClasses = 10;

/// Where one epoch's training time went (--profile), in seconds.
struct EpochProfile {
  GemmTimes gemms;
  /// Forward and backward passes less their GEMMs: ReLU masks, bias sums,
  /// im2col, pooling, activation copies.
  double layers = 0;
  double batch = 0, loss = 0, check = 0, optimizer = 0;
};

/// Charges the time since the previous charge to a phase (a clock read
/// costs tens of nanoseconds, a step milliseconds: always on).
class Laps {
public:
  Laps() : last(now()) {}
  void charge(double &phase) {
    auto t = now();
    phase += std::chrono::duration<double>(t - last).count();
    last = t;
  }

private:
  static std::chrono::steady_clock::time_point now() {
    return std::chrono::steady_clock::now();
  }
  std::chrono::steady_clock::time_point last;
};

void error(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "lq-train") << message << "\n";
}

/// An option that affects the numbers: checkpoints record it, and a
/// resumed run takes it from there.
struct NumericOption {
  cl::Option &option;
  std::function<std::string()> get;
  std::function<bool(llvm::StringRef)> set;
};

/// The shortest spelling that reads back as the same float.
std::string formatFloat(float v) {
  char text[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, double(v));
    if (std::strtof(text, nullptr) == v)
      break;
  }
  return text;
}

template <typename T> NumericOption numeric(cl::opt<T> &opt) {
  NumericOption o{opt, nullptr, nullptr};
  if constexpr (std::is_same_v<T, float>) {
    o.get = [&opt] { return formatFloat(opt); };
    o.set = [&opt](llvm::StringRef text) {
      float v;
      if (!llvm::to_float(text, v))
        return false;
      opt = v;
      return true;
    };
  } else if constexpr (std::is_same_v<T, std::string>) {
    o.get = [&opt] { return opt.getValue(); };
    o.set = [&opt](llvm::StringRef text) {
      opt = text.str();
      return true;
    };
  } else {
    o.get = [&opt] { return std::to_string(opt.getValue()); };
    o.set = [&opt](llvm::StringRef text) {
      T v;
      if (text.getAsInteger(10, v))
        return false;
      opt = v;
      return true;
    };
  }
  return o;
}

/// In a fixed order: a checkpoint lists them in this one.
std::vector<NumericOption> numericOptions() {
  NumericOption modes{modeNames, [] { return llvm::join(modeNames, ","); },
                      [](llvm::StringRef text) {
                        llvm::SmallVector<llvm::StringRef> names;
                        text.split(names, ',');
                        modeNames.clear();
                        for (llvm::StringRef name : names)
                          modeNames.push_back(name.str());
                        return true;
                      }};
  return {numeric(modelName),    modes,
          numeric(epochs),       numeric(batchSize),
          numeric(learningRate), numeric(momentum),
          numeric(weightDecay),  numeric(samples),
          numeric(fntEpochs),    numeric(hindsightEta),
          numeric(seed),         numeric(trainLimit),
          numeric(maxSkips)};
}

/// Takes the checkpointed run's options; one given on the command line
/// must have the checkpointed value, or the resumed run would not be the
/// run that was checkpointed.
Status adoptOptions(const Checkpoint &checkpoint, const std::string &path) {
  std::vector<NumericOption> options = numericOptions();
  const auto &saved = checkpoint.options;
  if (saved.size() != options.size())
    return Status::failure(path + ": records " + std::to_string(saved.size()) +
                           " options where this lq-train has " +
                           std::to_string(options.size()));
  for (size_t i = 0; i < options.size(); ++i) {
    NumericOption &o = options[i];
    std::string name = o.option.ArgStr.str();
    if (saved[i].first != name)
      return Status::failure(path + ": records option --" + saved[i].first +
                             " where this lq-train has --" + name);
    if (o.option.getNumOccurrences() == 0) {
      if (!o.set(saved[i].second))
        return Status::failure(path + ": malformed value '" + saved[i].second +
                               "' of --" + name);
      continue;
    }
    if (o.get() != saved[i].second)
      return Status::failure(path + ": --" + name + "=" + o.get() +
                             " differs from the checkpointed run's --" + name +
                             "=" + saved[i].second +
                             " (a resumed run keeps its options: leave --" +
                             name + " out, or start a new run)");
  }
  return Done{};
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
  /// Of the parameters after the last epoch in `epochs`.
  uint64_t paramsDigest = 0;
};

/// A run in progress: what a checkpoint holds besides the network.
struct Run {
  DatasetIdentity data;
  /// The completed modes, then the one being trained.
  std::vector<ModeResult> results;
  /// Non-finite steps in a row so far in this mode; the count spans
  /// epochs.
  int64_t consecutiveSkips = 0;
  /// Where checkpoints go; empty: nowhere.
  std::string checkpointDir;
};

template <typename T> uint64_t digestOf(const std::vector<T> &v) {
  return llvm::xxh3_64bits(llvm::ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(v.data()), v.size() * sizeof(T)));
}

uint64_t paramsDigest(Net &net) {
  std::vector<uint64_t> digests;
  for (Params *p : net.parameters())
    for (const std::vector<float> *v : {&p->w, &p->b, &p->vw, &p->vb})
      digests.push_back(digestOf(*v));
  return digestOf(digests);
}

DatasetIdentity identify(const Dataset &train, const Dataset &test) {
  std::vector<uint64_t> parts = {digestOf(train.images), digestOf(train.labels),
                                 digestOf(test.images), digestOf(test.labels)};
  return {train.count, test.count, train.rows, train.cols, digestOf(parts)};
}

Status saveCheckpoint(const Run &run, Net &net, const Gemms &low) {
  Checkpoint c;
  for (NumericOption &o : numericOptions())
    c.options.emplace_back(o.option.ArgStr.str(), o.get());
  c.data = run.data;
  for (const ModeResult &r : run.results)
    c.results.push_back({r.mode.name, r.epochs, r.paramsDigest});
  c.consecutiveSkips = run.consecutiveSkips;
  for (Params *p : net.parameters())
    c.layers.push_back({p->w, p->b, p->vw, p->vb});
  c.estimates = low.estimates();
  return writeCheckpoint(run.checkpointDir, c);
}

/// Puts the checkpointed network and estimates into a freshly made `net`
/// and `low`.
Status restoreNetwork(const Checkpoint &c, Net &net, Gemms &low) {
  std::vector<Params *> params = net.parameters();
  bool same = c.layers.size() == params.size();
  for (size_t l = 0; same && l < params.size(); ++l) {
    const LayerState &s = c.layers[l];
    same = s.w.size() == params[l]->w.size() &&
           s.b.size() == params[l]->b.size() && s.vw.size() == s.w.size() &&
           s.vb.size() == s.b.size();
  }
  if (!same)
    return Status::failure("the checkpoint holds a network of other shapes "
                           "than " +
                           net.describe());
  for (size_t l = 0; l < params.size(); ++l) {
    const LayerState &s = c.layers[l];
    params[l]->w = s.w, params[l]->b = s.b;
    params[l]->vw = s.vw, params[l]->vb = s.vb;
  }
  low.restoreEstimates(c.estimates);
  return Done{};
}

/// One epoch of SGD over `count` training images; the loss and accuracy
/// of the steps taken (test accuracy and time are the caller's), and in
/// `phases` (zeroed) where the time went.
Result<EpochResult> trainEpoch(const Mode &mode, unsigned epoch, Net &net,
                               Gemms &untimedGemms, const Dataset &train,
                               int64_t count, int64_t &consecutiveSkips,
                               EpochProfile &phases) {
  using R = Result<EpochResult>;
  std::unique_ptr<Gemms> gemmsHolder =
      makeTimedGemms(untimedGemms, phases.gemms);
  Gemms &gemms = *gemmsHolder;
  Laps laps;
  int64_t steps = count / batchSize, pixels = train.pixels();
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::vector<float> images(size_t(batchSize * pixels)), dlogits;
  std::vector<uint8_t> labels(batchSize);
  // Seeded per epoch, so that no engine state outlives an epoch (which
  // keeps checkpoints free of it).
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + epoch));
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
    laps.charge(phases.batch);
    int64_t globalStep = int64_t(epoch) * steps + step;
    gemms.beginStep(seed * 0x9E3779B97F4A7C15ull + uint64_t(globalStep));
    StepReport report;
    Result<bool> ok = net.forward(images.data(), batch, gemms, report);
    if (!ok)
      return R::failure(ok.error());
    laps.charge(phases.layers);
    dlogits.resize(size_t(batch * kClasses));
    auto [loss, right] =
        softmaxLoss(net.logits().data(), labels.data(), batch, dlogits.data());
    laps.charge(phases.loss);
    ok = net.backward(dlogits.data(), batch, gemms, report);
    if (!ok)
      return R::failure(ok.error());
    laps.charge(phases.layers);
    // A non-finite loss, activation or gradient skips the step (as the
    // numerics contract's nonfinite flag asks); persistent ones stop.
    bool finite =
        !report.nonfinite && std::isfinite(loss) && net.gradientsFinite(gemms);
    laps.charge(phases.check);
    if (!finite) {
      ++er.skipped;
      if (++consecutiveSkips >= maxSkips)
        return R::failure(
            "training diverged: " + std::to_string(consecutiveSkips) +
            " steps in a row had non-finite values (epoch " +
            std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
            ")");
      continue;
    }
    consecutiveSkips = 0;
    double t = double(globalStep) / double(epochs * steps);
    net.sgdStep(float(learningRate * 0.5 * (1.0 + std::cos(M_PI * t))),
                momentum, weightDecay, gemms);
    laps.charge(phases.optimizer);
    lossSum += loss;
    correct += right;
    seen += batch;
    progress.update(step + 1, (step + 1) * batch, loss / double(batch));
  }
  // The GEMMs were charged to the passes that called them too.
  phases.layers -= phases.gemms.total();
  er.loss = seen ? lossSum / double(seen) : NAN;
  er.trainAcc = seen ? 100.0 * double(correct) / double(seen) : NAN;
  return er;
}

void printEpoch(const Mode &mode, unsigned epoch, bool fineTuning,
                const EpochResult &er) {
  std::printf(
      "%-10s epoch %2u/%u%s  loss %.4f  train %.2f%%  test %.2f%%  "
      "%.1f s%s\n",
      mode.name.c_str(), epoch + 1, unsigned(epochs),
      fineTuning ? " (fnt)" : "", er.loss, er.trainAcc, er.testAcc, er.seconds,
      er.skipped
          ? ("  " + std::to_string(er.skipped) + " steps skipped").c_str()
          : "");
  std::fflush(stdout);
}

void printProfile(const EpochProfile &p) {
  std::printf("           profile: GEMMs %.3f s (forward %.3f, backward-data "
              "%.3f, weight-grad %.3f), layers %.3f, loss %.3f, finite check "
              "%.3f, optimizer %.3f, batch copy %.3f\n",
              p.gemms.total(), p.gemms.forward, p.gemms.backwardData,
              p.gemms.weightGrad, p.layers, p.loss, p.check, p.optimizer,
              p.batch);
  std::fflush(stdout);
}

/// Trains run.results.back()'s mode from the epoch after its last
/// recorded one; `resume` (when that is not the first) holds the network
/// and estimates as they were then.
Status trainMode(Run &run, const Dataset &train, const Dataset &test,
                 const Checkpoint *resume) {
  ModeResult &result = run.results.back();
  const Mode &mode = result.mode;
  std::mt19937_64 rng(seed);
  Result<Net> made = Net::make(modelName, train.rows, train.cols, rng);
  if (!made)
    return made.takeError();
  Net &net = *made;
  std::unique_ptr<Gemms> fp32 = makeFp32Gemms();
  Result<std::unique_ptr<Gemms>> made4 = makeLqGemms(mode.lq, device == "gpu");
  if (!made4)
    return made4.takeError();
  std::unique_ptr<Gemms> low = std::move(*made4);
  std::unique_ptr<Gemms> fineTune = makeFineTuneGemms(*low, *fp32);
  if (resume)
    LQ_TRY(restoreNetwork(*resume, net, *low));
  int64_t count = trainLimit ? std::min<int64_t>(trainLimit, train.count)
                             : train.count;
  if (count < batchSize)
    return Status::failure("fewer training images (" + std::to_string(count) +
                           ") than one batch (" + std::to_string(batchSize) +
                           ")");
  for (unsigned epoch = unsigned(result.epochs.size()); epoch < epochs;
       ++epoch) {
    // FNT epochs keep the 4-bit forward pass (the low-precision model) and
    // take high-precision gradients.
    bool fineTuning = mode.lowPrecision && epoch + mode.fnt >= epochs;
    Gemms &gemms = !mode.lowPrecision ? *fp32 : fineTuning ? *fineTune : *low;
    auto start = std::chrono::steady_clock::now();
    EpochProfile profile;
    Result<EpochResult> er =
        trainEpoch(mode, epoch, net, gemms, train, count, run.consecutiveSkips,
                   profile);
    if (!er)
      return er.takeError();
    er->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    Result<double> acc = evaluate(net, gemms, test);
    if (!acc)
      return acc.takeError();
    er->testAcc = *acc;
    result.epochs.push_back(*er);
    result.paramsDigest = paramsDigest(net);
    // Saved before the epoch's line: a printed epoch is a saved one.
    if (!run.checkpointDir.empty())
      LQ_TRY(saveCheckpoint(run, net, *low));
    printEpoch(mode, epoch, fineTuning, *er);
    if (profileEpochs)
      printProfile(profile);
  }
  return Done{};
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

/// The run a checkpoint left, its results checked against `modes`.
Result<Run> resumeRun(const Checkpoint &c, const std::vector<Mode> &modes,
                      const std::string &path) {
  Run run;
  bool fits = !c.results.empty() && c.results.size() <= modes.size();
  for (size_t m = 0; fits && m < c.results.size(); ++m) {
    const ModeRecord &r = c.results[m];
    bool current = m + 1 == c.results.size();
    fits = r.name == modes[m].name &&
           (current ? !r.epochs.empty() && r.epochs.size() <= epochs
                    : r.epochs.size() == epochs);
    run.results.push_back({modes[m], r.epochs, r.paramsDigest});
  }
  if (!fits)
    return Result<Run>::failure(path + ": malformed: its results do not fit "
                                       "its modes and epochs");
  run.consecutiveSkips = c.consecutiveSkips;
  return run;
}

/// The checkpoint --resume names, its options adopted; none without
/// --resume.
Result<std::optional<Checkpoint>> loadResumed() {
  if (resumeDir.empty())
    return std::optional<Checkpoint>();
  Result<Checkpoint> checkpoint = readCheckpoint(resumeDir);
  if (!checkpoint)
    return checkpoint.takeError();
  LQ_TRY(adoptOptions(*checkpoint, checkpointPath(resumeDir)));
  return std::optional<Checkpoint>(std::move(*checkpoint));
}

/// A new run, or the one `resumed` left if it trained on this data.
Result<Run> startRun(const std::optional<Checkpoint> &resumed,
                     const std::vector<Mode> &modes, DatasetIdentity data) {
  Run run;
  if (resumed) {
    std::string path = checkpointPath(resumeDir);
    if (!(resumed->data == data))
      return Result<Run>::failure(path + ": the checkpointed run trained on " +
                                  resumed->data.describe() + "; --data-dir=" +
                                  dataDir + " holds " + data.describe());
    Result<Run> r = resumeRun(*resumed, modes, path);
    if (!r)
      return r;
    run = std::move(*r);
  }
  run.data = data;
  run.checkpointDir = checkpointDir.empty() ? resumeDir : checkpointDir;
  return run;
}

/// Trains the modes that `run` has not completed.
Status trainModes(Run &run, const std::vector<Mode> &modes,
                  const Dataset &train, const Dataset &test,
                  const std::optional<Checkpoint> &resumed) {
  for (size_t m = 0; m < modes.size(); ++m) {
    // A checkpointed mode is done, or the one to continue.
    const Checkpoint *from = nullptr;
    if (m < run.results.size()) {
      if (run.results[m].epochs.size() == epochs)
        continue;
      from = &*resumed;
    } else {
      run.results.push_back({modes[m], {}, 0});
      run.consecutiveSkips = 0;
    }
    if (Status trained = trainMode(run, train, test, from); !trained)
      return Status::failure(modes[m].name + ": " + trained.error());
  }
  return Done{};
}

/// Makes the checkpoint directory and says where checkpoints go, and that
/// one there is replaced unless it is the one this run resumes.
Status prepareCheckpoints(const std::string &dir,
                          const std::string &resumedFrom) {
  if (llvm::sys::fs::exists(dir) && !llvm::sys::fs::is_directory(dir))
    return Status::failure(dir + ": not a directory (checkpoints go into a "
                                 "directory)");
  if (std::error_code error = llvm::sys::fs::create_directories(dir))
    return Status::failure(
        dir + ": cannot create the checkpoint directory: " + error.message());
  std::string path = checkpointPath(dir);
  std::printf("checkpoints: %s after every epoch\n", path.c_str());
  if (llvm::sys::fs::exists(path) &&
      (resumedFrom.empty() || !llvm::sys::fs::equivalent(path, resumedFrom)))
    std::printf("note: %s exists and will be replaced\n", path.c_str());
  return Done{};
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // Only the tool\'s own options in --help, not LLVM\'s internal ones.
  cl::HideUnrelatedOptions(kCategory);
  cl::ParseCommandLineOptions(
      argc, argv,
      "lq-train: trains a network on Fashion-MNIST with 4-bit GEMMs\n");
  Result<std::optional<Checkpoint>> resumed = loadResumed();
  if (!resumed)
    return error(resumed.error()), 1;
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
  Result<Run> run = startRun(*resumed, modes, identify(*train, *test));
  if (!run)
    return error(run.error()), 1;
  std::mt19937_64 rng(seed);
  Result<Net> net = Net::make(modelName, train->rows, train->cols, rng);
  if (!net)
    return error(net.error()), 1;
  std::printf("Fashion-MNIST: %lld training and %lld test images of %lldx%lld; "
              "%s, batch %u, %u epochs per mode\n",
              (long long)train->count, (long long)test->count,
              (long long)train->rows, (long long)train->cols,
              net->describe().c_str(), unsigned(batchSize), unsigned(epochs));
  std::string resumePath = resumeDir.empty() ? "" : checkpointPath(resumeDir);
  if (*resumed) {
    const ModeResult &at = run->results.back();
    std::printf("resumed from %s after %s epoch %zu/%u\n", resumePath.c_str(),
                at.mode.name.c_str(), at.epochs.size(), unsigned(epochs));
  }
  if (!run->checkpointDir.empty())
    if (Status ready = prepareCheckpoints(run->checkpointDir, resumePath);
        !ready)
      return error(ready.error()), 1;
  if (Status trained = trainModes(*run, modes, *train, *test, *resumed);
      !trained)
    return error(trained.error()), 1;
  const std::vector<ModeResult> &results = run->results;
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
