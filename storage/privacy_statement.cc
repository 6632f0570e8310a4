#include "storage/privacy_statement.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "storage/model_card.h"

namespace custody::storage {
namespace {

std::string number(double v, const char* format = "%.4g") {
  char b[64];
  std::snprintf(b, sizeof(b), format, v);
  return b;
}

std::string model_name(const json& card) {
  const json& m = card["model"];
  return m.is_null() ? "checkpoint " + card.value("checkpoint", std::string())
                     : "model " + m.value("name", std::string()) + " version " + std::to_string(m.value("version", 0));
}

std::string datasets_named(const json& card) {
  std::string out;
  for (const json& d : card["datasets"]) {
    out += (out.empty() ? "" : ", ") + d.value("name", std::string()) + " (sha256 " +
           d.value("sha256", std::string()).substr(0, 16) + "...)";
  }
  return out.empty() ? "its training data" : out;
}

}  // namespace

Result<json> privacy_statement(const CustodyStore& store, const std::string& reference) {
  CUSTODY_ASSIGN_OR_RETURN(const json card, model_card(store, reference));
  const json& p = card["privacy"];
  json out{{"model", card["model"]},
           {"checkpoint", card["checkpoint"]},
           {"root_hash", card["root_hash"]},
           {"private", p.is_object()},
           {"guarantee", p},
           {"datasets", card["datasets"]}};
  std::ostringstream s;
  const std::string who = model_name(card);
  if (!p.is_object()) {
    s << "No differential-privacy guarantee is claimed for " << who << " (checkpoint "
      << card.value("checkpoint", std::string()) << "): its run trained without a [privacy] section, so "
      << "nothing bounds what the model may reveal about any record of " << datasets_named(card) << ".\n";
    out["statement"] = s.str();
    return out;
  }
  const double eps = p.value("epsilon", 0.0), delta = p.value("delta", 0.0), sigma = p.value("noise_multiplier", 0.0),
               clip = p.value("clip_norm", 0.0), q = p.value("sampling_rate", 0.0);
  const uint64_t steps = p.value("steps_accounted", uint64_t(0)), rolled = p.value("steps_rolled_back", uint64_t(0));
  const bool poisson = p.value("sampling", std::string()) == "poisson";
  // q = B / N: N is the records the run could sample (a CSV table's rows kept after dropped
  // rows and the test split; a retraining's records less those it excluded). Older records
  // lack N.
  const int64_t n = p.value("training_examples", int64_t{0});
  const std::string of_n = n > 0 ? " = " + std::to_string(p.value("expected_batch", int64_t{0})) + " / " +
                                       std::to_string(n) + " training records"
                                 : std::string();
  s << who << " (checkpoint " << card.value("checkpoint", std::string()) << ", weights root "
    << card.value("root_hash", std::string()).substr(0, 16) << "...) was trained with differentially private SGD.\n\n"
    << "Guarantee: (epsilon = " << number(eps) << ", delta = " << number(delta, "%.3g")
    << ")-differential privacy at the example level, under add/remove adjacency: adding or removing any one "
       "training record of "
    << datasets_named(card)
    << " changes the probability of any outcome of the training (this model and every checkpoint the run "
       "recorded before it) by at most a factor of e^epsilon = "
    << number(std::exp(eps), "%.3g") << ", except with probability delta.\n\n"
    << "Accounting: " << p.value("accountant", std::string()) << ", over " << steps << " steps"
    << (rolled > 0 ? " (" + std::to_string(rolled) + " of them computed and then rolled back, counted all the same)"
                   : std::string())
    << "; best Renyi order " << number(p.value("rdp_order", 0.0)) << ".\n\n"
    << "Mechanism: every example's gradient clipped to L2 norm C = " << number(clip)
    << " on the workers; Gaussian noise of standard deviation sigma x C = " << number(sigma) << " x "
    << number(clip)
    << " added once to each step's summed gradient by the parameter servers, from a cryptographic random source; "
    << (poisson ? "each example included in each step independently with probability q = " + number(q) + of_n +
                      " (Poisson sampling, as the accountant assumes)"
                : "shuffled fixed-size batches (q = " + number(q) + of_n +
                      "). The accountant's analysis assumes Poisson sampling: for shuffled batches the stated "
                      "epsilon is what Poisson sampling would give, not a proven bound")
    << ".\n\n"
    << "Trust: the coordinator and the parameter servers are trusted; they see clipped gradient sums before the "
       "noise. The guarantee is about what the released weights reveal.\n\n"
    << "Not covered: the choice of hyperparameters (tuning runs are not accounted in this statement); other runs "
       "on the same data (they compose with this one: `custody privacy dataset:HASH` gives the data set's total "
       "and the budget that bounds it, if one is set); a person with k records in the data is protected at about k x epsilon; the test "
       "accuracy reported with the model (the test set is not protected); the data set's size and metadata.\n";
  out["statement"] = s.str();
  return out;
}

}  // namespace custody::storage
