// The loss-threshold membership-inference attack (Yeom, Giacomelli, Fredrikson, Jha 2018,
// "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF 2018,
// section 3.2) against a model Custody exported, for bench/membership_inference.sh.
//
//   custody-bench-membership split TRAIN_IMAGES TRAIN_LABELS OUT_DIR
//     writes OUT_DIR/members-{images,labels} (the first half of the training set: what the
//     models are trained on) and OUT_DIR/nonmembers-{images,labels} (the second half: held
//     out, from the same distribution), as plain IDX files.
//   custody-bench-membership attack MODEL.raw OUT_DIR [ACTIVATION]
//     MODEL.raw: `custody export --format raw` (little-endian float32, the flat layout; the
//     layer sizes in MODEL.raw.json). Every member and non-member gets its cross-entropy loss
//     under the model; the attack says "member" when the loss is below a threshold tau.
//     Prints JSON: each side's mean loss, the Yeom attack's advantage (tau = the members' mean
//     loss, the attacker's knowledge of the training loss in the paper), and the best
//     advantage any threshold gets (max over tau of TPR - FPR: an upper bound on what this
//     attack can do, since it picks tau with the answers known). Advantage 0: the losses do
//     not tell members from non-members; 1: they always do.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dataset.h"
#include "core/model.h"

using namespace custody;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "custody-bench-membership: %s\n", what.c_str());
  return 2;
}

void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

bool write_idx(const std::string& dir, const std::string& name, const LabeledSet& set, int rows, int cols) {
  std::string images, labels;
  put_be32(images, 0x00000803);
  put_be32(images, static_cast<uint32_t>(set.count));
  put_be32(images, static_cast<uint32_t>(rows));
  put_be32(images, static_cast<uint32_t>(cols));
  images.append(reinterpret_cast<const char*>(set.pixels.data()), set.pixels.size());
  put_be32(labels, 0x00000801);
  put_be32(labels, static_cast<uint32_t>(set.count));
  labels.append(reinterpret_cast<const char*>(set.labels.data()), set.labels.size());
  std::ofstream(dir + "/" + name + "-images", std::ios::binary) << images;
  std::ofstream(dir + "/" + name + "-labels", std::ios::binary) << labels;
  return static_cast<bool>(std::ifstream(dir + "/" + name + "-labels"));
}

// Per-example cross-entropy under the model.
std::vector<double> losses(const Model& model, const std::vector<float>& params, const LabeledSet& set) {
  std::vector<double> out;
  Workspace ws;
  constexpr int64_t kChunk = 1000;
  for (int64_t begin = 0; begin < set.count; begin += kChunk) {
    const int64_t end = std::min(set.count, begin + kChunk);
    Matrix x = features(set, begin, end);
    MatrixView view(x.data(), x.rows(), x.cols());
    Matrix probs = model.predict(params.data(), view, ws);
    for (int64_t i = begin; i < end; ++i) {
      const float p = probs(set.labels[static_cast<size_t>(i)], i - begin);
      out.push_back(-std::log(std::max(static_cast<double>(p), 1e-30)));
    }
  }
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// TPR - FPR of "member iff loss < tau".
double advantage_at(const std::vector<double>& members, const std::vector<double>& others, double tau) {
  auto below = [tau](const std::vector<double>& v) {
    return static_cast<double>(std::count_if(v.begin(), v.end(), [tau](double l) { return l < tau; })) /
           static_cast<double>(v.size());
  };
  return below(members) - below(others);
}

// max over tau of TPR - FPR: one sweep over the merged sorted losses.
double best_advantage(std::vector<double> members, std::vector<double> others, double* best_tau) {
  std::vector<std::pair<double, int>> all;
  for (double l : members) all.push_back({l, 1});
  for (double l : others) all.push_back({l, 0});
  std::sort(all.begin(), all.end());
  double tp = 0, fp = 0, best = 0;
  *best_tau = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    (all[i].second ? tp : fp) += 1;
    if (i + 1 < all.size() && all[i + 1].first == all[i].first) continue;  // ties go together
    const double adv = tp / static_cast<double>(members.size()) - fp / static_cast<double>(others.size());
    if (adv > best) {
      best = adv;
      *best_tau = i + 1 < all.size() ? (all[i].first + all[i + 1].first) / 2 : all[i].first + 1;
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 4 && args[0] == "split") {
    auto train = read_idx(args[1], args[2]);
    if (!train.is_ok()) return fail(train.status().message());
    const int64_t half = train->count / 2;
    const int side = static_cast<int>(std::lround(std::sqrt(train->features)));
    if (!write_idx(args[3], "members", slice(*train, 0, half), side, side) ||
        !write_idx(args[3], "nonmembers", slice(*train, half, 2 * half), side, side)) {
      return fail("cannot write the halves into " + args[3]);
    }
    std::printf("{\"members\": %lld, \"nonmembers\": %lld}\n", static_cast<long long>(half),
                static_cast<long long>(half));
    return 0;
  }
  if ((args.size() == 3 || args.size() == 4) && args[0] == "attack") {
    std::ifstream raw(args[1], std::ios::binary), desc(args[1] + ".json");
    if (!raw || !desc) return fail("cannot read " + args[1] + " and its .json (custody export --format raw)");
    const auto layout = nlohmann::json::parse(desc, nullptr, false);
    if (layout.is_discarded() || !layout.contains("layer_sizes")) return fail(args[1] + ".json has no layer_sizes");
    const std::string bytes((std::istreambuf_iterator<char>(raw)), {});
    std::vector<float> params(bytes.size() / sizeof(float));
    std::copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(params.size() * sizeof(float)),
              reinterpret_cast<char*>(params.data()));
    const auto activation = parse_activation(args.size() == 4 ? args[3] : "relu");
    if (!activation) return fail("unknown activation '" + args[3] + "' (relu or tanh)");
    auto model = Model::make(layout["layer_sizes"].get<std::vector<int>>(), *activation);
    if (!model.is_ok()) return fail(model.status().message());
    if (params.size() != model->num_parameters()) {
      return fail(args[1] + " holds " + std::to_string(params.size()) + " floats, the model " +
                  std::to_string(model->num_parameters()));
    }
    auto members = read_idx(args[2] + "/members-images", args[2] + "/members-labels");
    auto others = read_idx(args[2] + "/nonmembers-images", args[2] + "/nonmembers-labels");
    if (!members.is_ok() || !others.is_ok()) return fail("cannot read the halves in " + args[2] + "; run split first");
    const std::vector<double> in = losses(*model, params, *members), out = losses(*model, params, *others);
    const double tau = mean(in);
    double best_tau = 0;
    const double best = best_advantage(in, out, &best_tau);
    nlohmann::json report{{"members", in.size()},
                          {"nonmembers", out.size()},
                          {"member_mean_loss", tau},
                          {"nonmember_mean_loss", mean(out)},
                          {"yeom_threshold", tau},
                          {"yeom_advantage", advantage_at(in, out, tau)},
                          {"best_threshold", best_tau},
                          {"best_advantage", best}};
    std::printf("%s\n", report.dump().c_str());
    return 0;
  }
  return fail("usage: split TRAIN_IMAGES TRAIN_LABELS OUT_DIR | attack MODEL.raw OUT_DIR");
}
