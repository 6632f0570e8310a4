#include "tools/prediction_input.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/test_dir.h"

namespace custody::cli {
namespace {

namespace fs = std::filesystem;

// The Status of a failed read, which must be an invalid argument naming every `part`.
void expect_refused(const Result<PredictionInput>& r, std::initializer_list<const char*> parts) {
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << r.status().to_string();
  for (const char* part : parts)
    EXPECT_NE(r.status().message().find(part), std::string::npos) << r.status().message();
}

class PredictionInputFiles : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
  custody::testing::TestDir dir_{"custody-prediction-input"};
};

TEST(PredictionInputTest, CsvRowsAreReadAsTheyAreWithBlankLinesAndCarriageReturnsIgnored) {
  auto in = parse_csv("1, 2.5 ,-3\r\n\n  \n4,5e-1,6\n", "x.csv");
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_EQ(in->rows, 2);
  EXPECT_EQ(in->features, 3);
  EXPECT_EQ(in->values, (std::vector<float>{1, 2.5f, -3, 4, 0.5f, 6}));
}

TEST(PredictionInputTest, ALastLineWithoutANewlineIsARow) {
  auto in = parse_csv("1,2\n3,4", "x.csv");
  ASSERT_TRUE(in.is_ok());
  EXPECT_EQ(in->rows, 2);
}

TEST(PredictionInputTest, NonFiniteCsvValuesArePassedOnForTheModelToRefuseByRowAndFeature) {
  auto in = parse_csv("nan,inf,-inf\n", "x.csv");
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_TRUE(std::isnan(in->values[0]));
  EXPECT_TRUE(std::isinf(in->values[1]));
}

TEST(PredictionInputTest, ACsvValueThatIsNotWhollyANumberIsRefusedNamingLineValueAndText) {
  expect_refused(parse_csv("1,2\n3,abc\n", "in.csv"), {"'in.csv' line 2, value 2", "'abc' is not a number"});
  expect_refused(parse_csv("1.5x,2\n", "in.csv"), {"line 1, value 1", "'1.5x'"});
  expect_refused(parse_csv("0.5abc,1\n", "in.csv"), {"'in.csv' line 1, value 1", "'0.5abc' is not a number"});
  expect_refused(parse_csv("1,2\nx,y\n", "in.csv"), {"line 2", "'x' is not a number"});
}

TEST(PredictionInputTest, AnEmptyCsvValueIsRefusedIncludingATrailingComma) {
  expect_refused(parse_csv("1,,3\n", "in.csv"), {"line 1, value 2 is empty"});
  expect_refused(parse_csv("1,2,\n", "in.csv"), {"line 1, value 3 is empty"});
}

TEST(PredictionInputTest, ACsvValueBeyondFloat32IsRefused) {
  expect_refused(parse_csv("1e999\n", "in.csv"), {"'1e999' is too large for a float32"});
}

TEST(PredictionInputTest, CsvRowsOfDifferentLengthsAreRefusedNamingTheLine) {
  expect_refused(parse_csv("1,2,3\n4,5\n", "in.csv"), {"'in.csv' line 2 has 2 values; the first row has 3"});
}

TEST(PredictionInputTest, CsvWithoutRowsIsRefused) {
  expect_refused(parse_csv("", "in.csv"), {"'in.csv' holds no rows"});
  expect_refused(parse_csv("\n \r\n", "in.csv"), {"holds no rows"});
}

TEST(PredictionInputTest, RawFloat32IsReadInWholeRows) {
  const std::vector<float> values{1, 2, 3, 4, 5, 6};
  const std::string bytes(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  auto in = parse_f32(bytes, 3, "x.f32");
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_EQ(in->rows, 2);
  EXPECT_EQ(in->values, values);
}

TEST(PredictionInputTest, RawFloat32ThatIsNotWholeRowsOrLacksFeaturesIsRefused) {
  const std::string five_floats(5 * sizeof(float), '\0');
  expect_refused(parse_f32(five_floats, 3, "x.f32"), {"'x.f32' holds 20 bytes", "rows of 3 float32 values"});
  expect_refused(parse_f32(std::string(7, '\0'), 1, "x.f32"), {"holds 7 bytes"});
  expect_refused(parse_f32("", 3, "x.f32"), {"holds 0 bytes"});
  expect_refused(parse_f32(five_floats, 0, "x.f32"), {"needs --features"});
  // More values per row than the file holds bytes: refused, not an overflow.
  expect_refused(parse_f32(five_floats, int64_t{1} << 62, "x.f32"), {"holds 20 bytes"});
}

TEST(PredictionInputTest, TheFormatComesFromTheFlagOrElseTheFileName) {
  EXPECT_EQ(input_format("a.csv", "auto").value(), InputFormat::kCsv);
  EXPECT_EQ(input_format("a.f32", "auto").value(), InputFormat::kF32);
  EXPECT_EQ(input_format("t10k-images-idx3-ubyte.gz", "auto").value(), InputFormat::kIdx);
  EXPECT_EQ(input_format("a.csv", "f32").value(), InputFormat::kF32);
  EXPECT_EQ(input_format("a", "parquet").status().code(), ErrorCode::kInvalidArgument);
}

TEST(PredictionInputTest, TheFirstRowsAreKeptWhenAsked) {
  auto in = parse_csv("1,2\n3,4\n5,6\n", "x.csv");
  ASSERT_TRUE(in.is_ok());
  keep_first_rows(in.value(), 2);
  EXPECT_EQ(in->rows, 2);
  EXPECT_EQ(in->values, (std::vector<float>{1, 2, 3, 4}));
  keep_first_rows(in.value(), 0);
  EXPECT_EQ(in->rows, 2);
}

// An IDX file is sent as its raw pixel values, 0 to 255: the service scales them as
// training did (core/input_contract.h), so the CLI must not scale them first.
TEST_F(PredictionInputFiles, IdxImagesAreSentAsTheirRawPixelValues) {
  // Two 1x2 images: magic 0x00000803, count, rows, columns, then the pixels.
  const std::string idx =
      std::string("\0\0\x08\x03\0\0\0\x02\0\0\0\x01\0\0\0\x02", 16) + std::string("\x00\xff\x33\x66", 4);
  auto in = read_prediction_input(write("images-idx3-ubyte", idx), "auto", 0);
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_EQ(in->rows, 2);
  EXPECT_EQ(in->features, 2);
  EXPECT_EQ(in->values, (std::vector<float>{0.0f, 255.0f, 51.0f, 102.0f}));
}

TEST_F(PredictionInputFiles, FilesThatAreMissingDirectoriesOrNotIdxAreRefusedByName) {
  expect_refused(read_prediction_input((dir_ / "missing.csv").string(), "auto", 0), {"missing.csv"});
  expect_refused(read_prediction_input(dir_.string(), "csv", 0), {"is a directory"});
  expect_refused(read_prediction_input(write("rows.txt", "1,2\n"), "auto", 0), {"rows.txt"});
  expect_refused(read_prediction_input(write("rows.f32", "abcd"), "auto", 0), {"needs --features"});
  const std::string empty_idx = std::string("\0\0\x08\x03\0\0\0\0\0\0\0\x01\0\0\0\x02", 16);
  expect_refused(read_prediction_input(write("none-idx3-ubyte", empty_idx), "idx", 0), {"holds no images"});
}

TEST_F(PredictionInputFiles, ACsvFileIsReadThroughTheSameParser) {
  auto in = read_prediction_input(write("rows.csv", "1,2\n3,4\n"), "auto", 0);
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_EQ(in->rows, 2);
  expect_refused(read_prediction_input(write("bad.csv", "1,2\n3\n"), "auto", 0),
                 {"bad.csv' line 2 has 1 values"});
}

TEST(PredictionInputTest, AFirstRowOfNamesIsAHeaderAndAMixedRowIsData) {
  auto in = parse_csv("pixel1, pixel2,pixel3\n1,2,3\n4,5,6\n", "x.csv");
  ASSERT_TRUE(in.is_ok()) << in.status().to_string();
  EXPECT_EQ(in->rows, 2);
  EXPECT_EQ(in->features, 3);
  EXPECT_EQ(in->header, (std::vector<std::string>{"pixel1", "pixel2", "pixel3"}));
  EXPECT_EQ(in->values, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  // Names after the first row, or a first row with a number in it, are bad data.
  expect_refused(parse_csv("a,b\n1,2\nc,d\n", "x.csv"), {"'x.csv' line 3, value 1", "'c' is not a number"});
  expect_refused(parse_csv("a,2\n1,2\n", "x.csv"), {"line 1, value 1", "'a' is not a number"});
  expect_refused(parse_csv("a,b\n", "x.csv"), {"holds no rows"});
  auto numbers = parse_csv("nan,inf\n", "x.csv");
  ASSERT_TRUE(numbers.is_ok());
  EXPECT_TRUE(numbers->header.empty()) << "nan and inf are values, not names";
}

}  // namespace
}  // namespace custody::cli
