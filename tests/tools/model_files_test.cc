// The exported files' layouts, byte by byte (the numbers are checked against `custody
// predict` with real clients in tests/integration/model_files_test.cc).
#include "tools/model_files.h"

#include <gtest/gtest.h>

#include <cstring>

namespace custody::cli {
namespace {

// Softmax regression 3 -> 2: weight (2 x 3, column-major: w(o, i) at i * 2 + o), bias (2).
ExportedModel tiny() {
  ExportedModel m;
  m.layer_sizes = {3, 2};
  // w(0,0)=1 w(1,0)=2 | w(0,1)=3 w(1,1)=4 | w(0,2)=5 w(1,2)=6 ; b = 7, 8
  m.values = {1, 2, 3, 4, 5, 6, 7, 8};
  m.metadata = {{"custody_root_hash", "abc"}};
  return m;
}

TEST(ModelFiles, SafetensorsHoldsNamedOutByInWeightsAfterAnAlignedHeader) {
  auto bytes = model_file_bytes(ModelFileFormat::kSafetensors, tiny());
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  const std::string& b = bytes.value();
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(b[i])) << (8 * i);
  ASSERT_EQ(n % 8, 0u) << "the data starts 8-byte aligned";
  auto header = nlohmann::json::parse(b.substr(8, n));
  EXPECT_EQ(header["layer1.weight"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(header["layer1.bias"]["shape"], nlohmann::json({2}));
  EXPECT_EQ(header["__metadata__"]["custody_root_hash"], "abc");
  std::vector<float> w(6);
  const auto offsets = header["layer1.weight"]["data_offsets"];
  ASSERT_EQ(offsets[1].get<size_t>() - offsets[0].get<size_t>(), 24u);
  std::memcpy(w.data(), b.data() + 8 + n + offsets[0].get<size_t>(), 24);
  // Row-major [out, in]: row 0 is w(0, 0..2) = 1 3 5, row 1 is 2 4 6.
  EXPECT_EQ(w, (std::vector<float>{1, 3, 5, 2, 4, 6}));
  ASSERT_EQ(b.size(), 8 + n + 32);
}

TEST(ModelFiles, ValuesThatDoNotFitTheLayersOrAnUnknownActivationAreRefused) {
  ExportedModel m = tiny();
  m.values.pop_back();
  auto r = model_file_bytes(ModelFileFormat::kOnnx, m);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("holds 7 values, but its layer sizes describe 8"), std::string::npos);
  m = tiny();
  m.hidden_activation = "swish";
  EXPECT_FALSE(model_file_bytes(ModelFileFormat::kRaw, m).is_ok());
}

// A conv model (issue 17): safetensors holds the conv weight as ONNX's [F, C, kh, kw], in
// the flat layout's order, and the dense one transposed as for the MLP; values that do not
// fit the architecture are refused naming it.
TEST(ModelFiles, AConvModelsTensorsHaveOnnxShapesAndMisfitsAreRefused) {
  ExportedModel m;
  m.architecture = "1x3x3 conv2d:2:2 flatten dense:2";
  m.layer_sizes = {9, 8, 8, 2};
  const size_t n = 2 * 4 + 2 + 8 * 2 + 2;
  for (size_t i = 0; i < n; ++i) m.values.push_back(static_cast<float>(i));
  auto bytes = model_file_bytes(ModelFileFormat::kSafetensors, m);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  const std::string& b = bytes.value();
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t(uint8_t(b[i])) << (8 * i);
  auto header = nlohmann::json::parse(b.substr(8, len));
  EXPECT_EQ(header["layer1.weight"]["shape"], nlohmann::json({2, 1, 2, 2}));
  EXPECT_EQ(header["layer3.weight"]["shape"], nlohmann::json({2, 8}));
  std::vector<float> conv(8);
  std::memcpy(conv.data(), b.data() + 8 + len + header["layer1.weight"]["data_offsets"][0].get<size_t>(), 32);
  EXPECT_EQ(conv, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  auto onnx = model_file_bytes(ModelFileFormat::kOnnx, m);
  ASSERT_TRUE(onnx.is_ok()) << onnx.status().to_string();
  for (const char* op : {"Reshape", "Conv", "Relu", "Flatten", "Gemm", "Softmax"}) {
    EXPECT_NE(onnx.value().find(op), std::string::npos) << op;
  }
  m.values.pop_back();
  auto refused = model_file_bytes(ModelFileFormat::kOnnx, m);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("1x3x3 conv2d:2:2 flatten dense:2 has 28"), std::string::npos)
      << refused.status().message();
}

TEST(ModelFiles, TheFormatFollowsTheFlagOrTheFilesExtension) {
  EXPECT_EQ(model_file_format("auto", "m.onnx").value(), ModelFileFormat::kOnnx);
  EXPECT_EQ(model_file_format("auto", "m.safetensors").value(), ModelFileFormat::kSafetensors);
  EXPECT_EQ(model_file_format("auto", "m.bin").value(), ModelFileFormat::kRaw);
  EXPECT_EQ(model_file_format("onnx", "m.bin").value(), ModelFileFormat::kOnnx);
  auto bad = model_file_format("pdf", "m.pdf");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("not one of auto, onnx, safetensors, raw"), std::string::npos);
}

}  // namespace
}  // namespace custody::cli
