// CSV training data (core/csv_table.h): parsing, missing cells dropped or refused and
// counted, labels as ids, standardization fitted on the training rows only, the seeded
// split, and the small table shipped in tests/data.
#include "core/csv_table.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "core/hash.h"

namespace custody {
namespace {

CsvOptions label(const std::string& name, CsvOptions::Missing missing = CsvOptions::Missing::kRefuse) {
  CsvOptions o;
  o.label = name;
  o.missing = missing;
  return o;
}

TEST(CsvTableTest, ParsesQuotesCrLfAndAByteOrderMarkAndPutsTheLabelAside) {
  const std::string text = "\xEF\xBB\xBF" "a,\"the label\",b\r\n1.5,\"x, y\",2\r\n-3e2,\"say \"\"z\"\"\",4\r\n\r\n";
  auto t = parse_csv(text, label("the label"), "t.csv");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t->rows, 2);
  EXPECT_EQ(t->values, (std::vector<float>{1.5f, 2.0f, -300.0f, 4.0f}));
  EXPECT_EQ(t->classes, (std::vector<std::string>{"say \"z\"", "x, y"})) << "text labels, sorted";
  EXPECT_EQ(t->labels, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(t->sha256, sha256_hex(text));
}

TEST(CsvTableTest, IntegerLabelsAreTheirOwnClassIds) {
  auto t = parse_csv("x,y\n0.1,2\n0.2,0\n0.3,2\n", label("y"), "t");
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->labels, (std::vector<uint8_t>{2, 0, 2}));
  EXPECT_EQ(t->classes, (std::vector<std::string>{"0", "1", "2"}));
  auto big = parse_csv("x,y\n0.1,256\n0.2,3\n", label("y"), "t");
  ASSERT_TRUE(big.is_ok()) << "256 is not a class id: the labels are texts then";
  EXPECT_EQ(big->classes, (std::vector<std::string>{"256", "3"}));
}

TEST(CsvTableTest, MissingOrNonNumericCellsAreRefusedNamingTheLineOrDroppedAndCounted) {
  const std::string text = "f1,f2,label\n1,2,a\n,2,b\n3,NA,a\n4,0.5abc,b\n5,6,\n7,8,b\n9,inf,a\n";
  auto refused = parse_csv(text, label("label"), "'t.csv'");
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("'t.csv': line 3: 'f1' is empty"), std::string::npos)
      << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("data.missing = \"drop\""), std::string::npos) << "says what to do";
  auto dropped = parse_csv(text, label("label", CsvOptions::Missing::kDrop), "t");
  ASSERT_TRUE(dropped.is_ok()) << dropped.status().to_string();
  EXPECT_EQ(dropped->rows, 2);
  EXPECT_EQ(dropped->dropped, 5);
  EXPECT_EQ(dropped->dropped_lines, (std::vector<int64_t>{3, 4, 5, 6, 8}));
  EXPECT_EQ(dropped->values, (std::vector<float>{1, 2, 7, 8}));
  EXPECT_EQ(dropped->lines, (std::vector<int64_t>{2, 7})) << "each kept row's line: what names it to a person";
}

TEST(CsvTableTest, MalformedFilesAreRefusedWhateverTheMissingPolicy) {
  for (auto missing : {CsvOptions::Missing::kDrop, CsvOptions::Missing::kRefuse}) {
    auto ragged = parse_csv("a,b,c\n1,2,3\n1,2\n", label("c", missing), "t");
    EXPECT_NE(ragged.status().message().find("line 3 has 2 cells, the header 3"), std::string::npos)
        << ragged.status().to_string();
    auto no_label = parse_csv("a,b\n1,2\n", label("species", missing), "t");
    EXPECT_NE(no_label.status().message().find("no column 'species' in the header (a, b)"), std::string::npos);
    auto open_quote = parse_csv("a,b\n\"1,2\n", label("b", missing), "t");
    EXPECT_NE(open_quote.status().message().find("never closes"), std::string::npos);
    auto only_label = parse_csv("b\n1\n", label("b", missing), "t");
    EXPECT_EQ(only_label.status().code(), ErrorCode::kInvalidArgument);
  }
  auto all_dropped = parse_csv("a,b\n,1\n", label("b", CsvOptions::Missing::kDrop), "t");
  EXPECT_NE(all_dropped.status().message().find("no rows left after dropping 1"), std::string::npos);
}

TEST(CsvTableTest, StandardizationIsFittedOnTheTrainingRowsOnly) {
  auto t = parse_csv("x,c,y\n1,5,0\n3,5,1\n100,7,0\n", label("y"), "t").value();
  const Standardization s = fit_standardization(t, 0, 2);  // the first two rows train
  EXPECT_FLOAT_EQ(s.mean[0], 2.0f) << "the test row's 100 does not move the mean";
  EXPECT_FLOAT_EQ(s.std[0], 1.0f);
  EXPECT_FLOAT_EQ(s.mean[1], 5.0f);
  EXPECT_FLOAT_EQ(s.std[1], 1.0f) << "constant on the training rows: std 1, not a division by 0";
  std::vector<float> v = t.values;
  standardize(v, s);
  EXPECT_EQ(v, (std::vector<float>{-1, 0, 1, 0, 98, 2}));
  const Standardization all = fit_standardization(t, 0, 3);
  EXPECT_NE(all.mean[0], s.mean[0]);
}

TEST(CsvTableTest, TheSplitIsSeededDisjointAndCoversEveryRow) {
  const RowSplit a = split_rows(100, 0.2, 7).value(), b = split_rows(100, 0.2, 7).value();
  EXPECT_EQ(a.test, b.test);
  EXPECT_EQ(a.test.size(), 20u);
  EXPECT_EQ(a.train.size(), 80u);
  std::vector<int64_t> all = a.train;
  all.insert(all.end(), a.test.begin(), a.test.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
  EXPECT_NE(split_rows(100, 0.2, 8).value().test, a.test) << "another seed, another split";
  EXPECT_EQ(split_rows(3, 0.01, 1).value().test.size(), 1u) << "at least one test row";
  EXPECT_EQ(split_rows(10, 1.0, 1).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(split_rows(1, 0.5, 1).status().code(), ErrorCode::kInvalidArgument);
}

TEST(CsvTableTest, TheShippedTableHasItsTwelveIncompleteRowsDroppedAndStringClasses) {
  const std::string path = std::string(CUSTODY_SOURCE_DIR) + "/tests/data/penguins_small.csv";
  auto refused = read_csv(path, label("species"));
  EXPECT_NE(refused.status().message().find("line 19"), std::string::npos) << refused.status().to_string();
  auto t = read_csv(path, label("species", CsvOptions::Missing::kDrop));
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->rows, 288);
  EXPECT_EQ(t->dropped, 12);
  EXPECT_EQ(t->features(), 4);
  EXPECT_EQ(t->classes, (std::vector<std::string>{"adelie", "chinstrap", "gentoo"}));
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(t->sha256, sha256_hex(bytes)) << "the identity covers the file's bytes";
  EXPECT_EQ(read_csv(path + ".nope", label("species")).status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace custody
