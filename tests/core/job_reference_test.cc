// configs/jobs/reference.toml against the parser itself: each value it sets is the parser's
// default, each key the parser reads is in it (set, or commented out when it has no
// default), and the file as a whole is the same job as an empty file. The keys and their
// defaults come from parsing an empty job with ConfigReader's trace, so a key added to
// core/job_spec.cc fails here until it is documented.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "core/job_spec.h"

namespace custody {
namespace {

const std::string kReference = std::string(CUSTODY_SOURCE_DIR) + "/configs/jobs/reference.toml";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every key the parser reads, with its default as text, in the order it reads them.
std::vector<ConfigReader::KeyRead> parser_keys() {
  std::vector<ConfigReader::KeyRead> reads;
  auto empty = parse_job_spec("", "empty.toml", &reads);
  EXPECT_TRUE(empty.is_ok()) << empty.status().message();
  return reads;
}

// The keys the reference file sets or shows commented out ("# key = example" at the start
// of a line), as dotted names under their [section], with their line numbers.
struct Documented {
  std::map<std::string, size_t> set, commented;
};
Documented documented_keys(const std::string& text) {
  static const std::regex section(R"(^\[([A-Za-z0-9_.]+)\].*)");
  static const std::regex key(R"(^([A-Za-z_][A-Za-z0-9_]*)\s*=.*)");
  static const std::regex commented_key(R"(^#\s*([A-Za-z_][A-Za-z0-9_]*)\s*=.*)");
  Documented d;
  std::istringstream in(text);
  std::string line, prefix;
  for (size_t n = 0; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, section)) prefix = m[1].str() + ".";
    else if (std::regex_match(line, m, key)) d.set[prefix + m[1].str()] = n;
    else if (std::regex_match(line, m, commented_key)) d.commented[prefix + m[1].str()] = n;
    ++n;
  }
  return d;
}

// `text` with line `n` uncommented.
std::string uncommented(const std::string& text, size_t n) {
  std::istringstream in(text);
  std::string out, line;
  for (size_t i = 0; std::getline(in, line); ++i) out += (i == n ? line.substr(line.find_first_not_of("# ")) : line) + "\n";
  return out;
}

TEST(JobReferenceTest, EveryValueInTheReferenceIsTheParsersDefault) {
  std::map<std::string, std::string> defaults;
  for (const auto& k : parser_keys()) defaults[k.key] = k.before;
  const std::string text = read_text(kReference);
  ASSERT_FALSE(text.empty()) << "cannot read " << kReference;
  std::vector<ConfigReader::KeyRead> reads;
  auto reference = parse_job_spec(text, kReference, &reads);
  ASSERT_TRUE(reference.is_ok()) << reference.status().message();
  size_t compared = 0;
  for (const auto& k : reads) {
    if (!k.present) continue;
    ++compared;
    EXPECT_EQ(k.after, defaults[k.key]) << kReference << ": '" << k.key << "' shows " << k.after
                                        << " but the parser's default is " << defaults[k.key];
  }
  EXPECT_GE(compared, 40u) << "the reference sets (almost) every key";
  // The file as a whole: the same job as an empty file.
  EXPECT_EQ(reference->canonical_form(), parse_job_spec("", "empty.toml")->canonical_form());
  EXPECT_FALSE(reference->privacy.enabled);
}

TEST(JobReferenceTest, EveryKeyTheParserAcceptsIsInTheReference) {
  const Documented d = documented_keys(read_text(kReference));
  const auto keys = parser_keys();
  ASSERT_GE(keys.size(), 40u);
  for (const auto& k : keys) {
    EXPECT_TRUE(d.set.count(k.key) || d.commented.count(k.key))
        << "the parser accepts '" << k.key << "' (default " << k.before << "), but " << kReference
        << " does not document it: add it there with its default";
  }
  std::set<std::string> accepted;
  for (const auto& k : keys) accepted.insert(k.key);
  for (const auto& [key, line] : d.commented) {
    EXPECT_TRUE(accepted.count(key)) << kReference << ":" << line + 1 << " documents '" << key
                                     << "', which the parser does not accept";
  }
}

// A key is commented out only when it has no default value to show: setting it to the
// example its line shows changes the job (or is refused alone), unlike a default would.
TEST(JobReferenceTest, AKeyCommentedOutHasNoDefaultItCouldShow) {
  const std::string text = read_text(kReference);
  const Documented d = documented_keys(text);
  ASSERT_FALSE(d.commented.empty());
  const std::string plain = parse_job_spec(text, kReference)->canonical_form();
  for (const auto& [key, line] : d.commented) {
    auto with = parse_job_spec(uncommented(text, line), kReference);
    if (!with.is_ok()) continue;  // refused alone: it needs other keys, so no default
    EXPECT_NE(with->canonical_form(), plain)
        << kReference << ":" << line + 1 << ": '" << key << "' set to its example is the default job: "
        << "show it set, not commented out";
  }
}

// The trace itself: defaults and values as the parser's own types print them.
TEST(JobReferenceTest, TheTraceGivesDefaultsAndValuesInTheParsersTypes) {
  std::vector<ConfigReader::KeyRead> reads;
  ASSERT_TRUE(parse_job_spec("[optimizer]\nlearning_rate = 0.1\n[model]\nhidden = [8]\n", "t.toml", &reads).is_ok());
  std::map<std::string, ConfigReader::KeyRead> by_key;
  for (const auto& k : reads) by_key[k.key] = k;
  EXPECT_EQ(by_key["optimizer.learning_rate"].before, "0.0500000007");  // a float's 9 digits
  EXPECT_EQ(by_key["optimizer.learning_rate"].after, "0.100000001");
  EXPECT_TRUE(by_key["optimizer.learning_rate"].present);
  EXPECT_EQ(by_key["model.hidden"].before, "[256, 128]");
  EXPECT_EQ(by_key["model.hidden"].after, "[8]");
  EXPECT_EQ(by_key["job.name"].before, "\"job\"");
  EXPECT_FALSE(by_key["job.name"].present);
  EXPECT_EQ(by_key["job.name"].after, "\"job\"");
}

}  // namespace
}  // namespace custody
