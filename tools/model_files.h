// Model files people can open elsewhere: ONNX (opset 13, protobuf through Debian's
// libonnx), safetensors (named, shaped tensors with metadata), and Custody's raw float32
// layout; and the model card (storage/model_card.h) rendered as Markdown.
//
// Every format holds the same numbers. Custody's flat layout keeps layer l's weight as an
// out_l x in_l column-major matrix; the files hold it as the row-major [out, in] tensor
// that PyTorch's nn.Linear and ONNX's Gemm(transB=1) expect, so that loading it the
// natural way gives the right model. The ONNX graph takes the data set's raw values
// ([N, in] float32, e.g. pixels 0-255, or a table's raw feature values) and applies the
// input scaling (node "scale") or a table's standardization itself, then Gemm and the hidden activation per layer, and Softmax: its output
// "probabilities" is what `custody predict` answers.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace custody::cli {

enum class ModelFileFormat { kRaw, kSafetensors, kOnnx };

// "raw", "safetensors", "onnx", or "auto": by FILE's extension (.onnx, .safetensors; else raw).
Result<ModelFileFormat> model_file_format(const std::string& name, const std::string& path);
const char* to_string(ModelFileFormat f);

struct ExportedModel {
  std::vector<uint32_t> layer_sizes;  // {in, hidden..., classes}
  // A model with conv, pool or flatten layers: core/model.h's architecture text, which then
  // describes the model instead of layer_sizes. ONNX: Reshape to NCHW, Conv, Relu/Tanh,
  // MaxPool, Flatten, Gemm; safetensors: conv weights as [filters, in_channels, kh, kw].
  std::string architecture;
  std::string hidden_activation = "relu";  // "relu" or "tanh"
  float input_scale = 1.0f;
  // A model trained on a CSV table: each feature's training mean and std. ONNX graphs then
  // standardize raw rows (nodes "standardize_sub", "standardize_div") instead of scaling.
  std::vector<float> standardize_mean, standardize_std;
  std::vector<float> values;  // Custody's flat layout (core/model.h)
  nlohmann::json metadata;    // string values only: goes into the file where the format has room
};

// The file's bytes in the given format; refuses values that do not fit the layer sizes.
Result<std::string> model_file_bytes(ModelFileFormat format, const ExportedModel& model);

// The card as a Markdown page for people (the JSON beside it is for programs).
std::string model_card_markdown(const nlohmann::json& card);

}  // namespace custody::cli
