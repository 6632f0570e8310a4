#include "tools/model_files.h"

#include <cstring>
#include <sstream>

#include <onnx/onnx_pb.h>

#include "core/model.h"

namespace custody::cli {
namespace {

using nlohmann::json;

// A layer's tensors inside the flat vector (core/model.h): the weight, out x in
// column-major, then the bias.
struct Layer {
  uint32_t in, out;
  size_t weight_offset, bias_offset;
};

Result<std::vector<Layer>> layers_of(const ExportedModel& m) {
  if (m.layer_sizes.size() < 2) return invalid_argument("a model needs at least an input and an output layer size");
  std::vector<Layer> layers;
  size_t offset = 0;
  for (size_t l = 1; l < m.layer_sizes.size(); ++l) {
    Layer layer{m.layer_sizes[l - 1], m.layer_sizes[l], offset, 0};
    if (layer.in == 0 || layer.out == 0) return invalid_argument("layer sizes must be positive");
    offset += size_t(layer.in) * layer.out;
    layer.bias_offset = offset;
    offset += layer.out;
    layers.push_back(layer);
  }
  if (offset != m.values.size()) {
    return invalid_argument("the checkpoint holds " + std::to_string(m.values.size()) +
                            " values, but its layer sizes describe " + std::to_string(offset));
  }
  if (m.hidden_activation != "relu" && m.hidden_activation != "tanh") {
    return invalid_argument("hidden activation '" + m.hidden_activation + "' cannot be exported (relu or tanh)");
  }
  return layers;
}

// Layer l's weight as a row-major [out, in] tensor. Custody's out x in column-major matrix
// is the row-major [in, out] one: transpose it.
std::vector<float> weight_out_by_in(const ExportedModel& m, const Layer& l) {
  std::vector<float> w(size_t(l.out) * l.in);
  const float* src = m.values.data() + l.weight_offset;
  for (uint32_t i = 0; i < l.in; ++i) {
    for (uint32_t o = 0; o < l.out; ++o) w[size_t(o) * l.in + i] = src[size_t(i) * l.out + o];
  }
  return w;
}

std::string name_of(size_t l, const char* what) { return "layer" + std::to_string(l + 1) + "." + what; }

void append_floats(std::string& out, const float* p, size_t n) {
  // Little-endian float32, as both formats require (and as this machine stores them).
  static_assert(sizeof(float) == 4);
  out.append(reinterpret_cast<const char*>(p), n * sizeof(float));
}

Result<std::string> safetensors(const ExportedModel& m, const std::vector<Layer>& layers) {
  // https://github.com/huggingface/safetensors: an 8-byte little-endian header length, a
  // JSON header naming each tensor's dtype, shape and byte range in the data that follows,
  // and "__metadata__" (string to string).
  json header = json::object();
  std::string data;
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::vector<float> w = weight_out_by_in(m, layers[l]);
    header[name_of(l, "weight")] = {{"dtype", "F32"},
                                    {"shape", {layers[l].out, layers[l].in}},
                                    {"data_offsets", {data.size(), data.size() + w.size() * 4}}};
    append_floats(data, w.data(), w.size());
    header[name_of(l, "bias")] = {{"dtype", "F32"},
                                  {"shape", {layers[l].out}},
                                  {"data_offsets", {data.size(), data.size() + size_t(layers[l].out) * 4}}};
    append_floats(data, m.values.data() + layers[l].bias_offset, layers[l].out);
  }
  json meta = json::object();
  for (auto& [k, v] : m.metadata.items()) meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text + data;
}

void add_initializer(onnx::GraphProto& g, const std::string& name, std::vector<int64_t> dims, const float* p,
                     size_t n) {
  onnx::TensorProto* t = g.add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(p), n * sizeof(float)));
}

void set_float_matrix_type(onnx::ValueInfoProto* v, const std::string& name, const std::string& rows, int64_t cols) {
  v->set_name(name);
  auto* tensor = v->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param(rows);
  tensor->mutable_shape()->add_dim()->set_dim_value(cols);
}

onnx::NodeProto* add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          std::vector<std::string> inputs, const std::string& output) {
  onnx::NodeProto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (auto& i : inputs) n->add_input(i);
  n->add_output(output);
  return n;
}

// What every exported ONNX model starts with: IR version, producer, opset and the model
// card's fields as metadata.
void onnx_header(const ExportedModel& m, onnx::ModelProto& model) {
  model.set_ir_version(7);  // ONNX 1.8's, the first with opset 13: what most runtimes read
  model.set_producer_name("custody");
  model.set_model_version(1);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  for (auto& [k, v] : m.metadata.items()) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(k);
    e->set_value(v.is_string() ? v.get<std::string>() : v.dump());
  }
}

// What every exported ONNX model ends with: the softmax over the classes (axis 1) of the
// last layer's output `x`, as "probabilities", and the model serialized.
Result<std::string> with_softmax(onnx::ModelProto& model, const std::string& x) {
  onnx::NodeProto* softmax = add_node(*model.mutable_graph(), "Softmax", "softmax", {x}, "probabilities");
  onnx::AttributeProto* axis = softmax->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  std::string out;
  if (!model.SerializeToString(&out)) return internal_error("the ONNX model could not be serialized");
  return out;
}

// The graph's first nodes: the raw input made the model's input as training made it. A
// model trained on a table standardizes each feature (Sub, then Div: the same two float32
// roundings as core/csv_table.h standardize(), so the file answers as `custody predict`
// does); any other multiplies by the input scale (IDX: 1/255). Returns the value's name.
std::string input_preprocessing(onnx::GraphProto& g, const ExportedModel& m) {
  if (!m.standardize_mean.empty()) {
    const auto n = static_cast<int64_t>(m.standardize_mean.size());
    add_initializer(g, "feature_mean", {n}, m.standardize_mean.data(), m.standardize_mean.size());
    add_initializer(g, "feature_std", {n}, m.standardize_std.data(), m.standardize_std.size());
    add_node(g, "Sub", "standardize_sub", {"input", "feature_mean"}, "centred");
    add_node(g, "Div", "standardize_div", {"centred", "feature_std"}, "standardized");
    return "standardized";
  }
  add_initializer(g, "input_scale", {}, &m.input_scale, 1);
  add_node(g, "Mul", "scale", {"input", "input_scale"}, "scaled");
  return "scaled";
}

Result<std::string> onnx_model(const ExportedModel& m, const std::vector<Layer>& layers) {
  onnx::ModelProto model;
  onnx_header(m, model);
  onnx::GraphProto& g = *model.mutable_graph();
  g.set_name("custody_mlp");
  set_float_matrix_type(g.add_input(), "input", "N", layers.front().in);
  set_float_matrix_type(g.add_output(), "probabilities", "N", layers.back().out);
  std::string x = input_preprocessing(g, m);
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::vector<float> w = weight_out_by_in(m, layers[l]);
    add_initializer(g, name_of(l, "weight"), {layers[l].out, layers[l].in}, w.data(), w.size());
    add_initializer(g, name_of(l, "bias"), {layers[l].out}, m.values.data() + layers[l].bias_offset, layers[l].out);
    const bool last = l + 1 == layers.size();
    const std::string y = last ? "logits" : name_of(l, "linear");
    onnx::NodeProto* gemm = add_node(g, "Gemm", name_of(l, "gemm"), {x, name_of(l, "weight"), name_of(l, "bias")}, y);
    onnx::AttributeProto* trans_b = gemm->add_attribute();
    trans_b->set_name("transB");
    trans_b->set_type(onnx::AttributeProto::INT);
    trans_b->set_i(1);
    x = y;
    if (!last) {
      const std::string op = m.hidden_activation == "tanh" ? "Tanh" : "Relu";
      add_node(g, op, name_of(l, "activation"), {x}, name_of(l, "activation"));
      x = name_of(l, "activation");
    }
  }
  return with_softmax(model, x);
}

// A model with conv, pool or flatten layers, rebuilt from its architecture text; its
// values must be exactly its parameters.
Result<Model> layered_model(const ExportedModel& m) {
  const auto activation = parse_activation(m.hidden_activation);
  if (!activation) {
    return invalid_argument("hidden activation '" + m.hidden_activation + "' cannot be exported (relu or tanh)");
  }
  CUSTODY_ASSIGN_OR_RETURN(Model model, Model::parse_architecture(m.architecture, *activation));
  if (model.num_parameters() != m.values.size()) {
    return invalid_argument("the checkpoint holds " + std::to_string(m.values.size()) + " values, but its model " +
                            m.architecture + " has " + std::to_string(model.num_parameters()));
  }
  return model;
}

// Tensor t as the files hold it: a dense weight transposed to row-major [out, in] (as
// weight_out_by_in), a conv weight and every bias as they lie in the flat layout.
std::vector<float> file_tensor(const ExportedModel& m, const Model::Tensor& t) {
  if (t.shape.size() == 2) {
    return weight_out_by_in(m, Layer{static_cast<uint32_t>(t.shape[1]), static_cast<uint32_t>(t.shape[0]), t.offset, 0});
  }
  return std::vector<float>(m.values.begin() + static_cast<std::ptrdiff_t>(t.offset),
                            m.values.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size));
}

Result<std::string> layered_safetensors(const ExportedModel& m, const Model& model) {
  json header = json::object();
  std::string data;
  for (const Model::Tensor& t : model.tensors()) {
    const std::vector<float> v = file_tensor(m, t);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + v.size() * 4}}};
    append_floats(data, v.data(), v.size());
  }
  json meta = json::object();
  for (auto& [k, v] : m.metadata.items()) meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text + data;
}

void add_ints_attribute(onnx::NodeProto* node, const std::string& name, std::vector<int64_t> values) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

// The same graph as onnx_model() for an MLP, with the image layers in between: the scaled
// [N, C*H*W] input reshaped to NCHW (Custody's per-sample order is C, H, W), Conv ('valid',
// stride 1; its weight is the flat layout's [F, C, kh, kw] as is), MaxPool (stride = size),
// Flatten (axis 1: the same C, H, W order dense layers read).
Result<std::string> layered_onnx(const ExportedModel& m, const Model& model) {
  onnx::ModelProto proto;
  onnx_header(m, proto);
  onnx::GraphProto& g = *proto.mutable_graph();
  g.set_name("custody_layers");
  set_float_matrix_type(g.add_input(), "input", "N", model.input_size());
  set_float_matrix_type(g.add_output(), "probabilities", "N", model.num_classes());
  std::string x = input_preprocessing(g, m);
  const Shape in = model.input_shape();
  if (!in.flat()) {
    onnx::TensorProto* shape = g.add_initializer();
    shape->set_name("image_shape");
    shape->set_data_type(onnx::TensorProto::INT64);
    shape->add_dims(4);
    for (int64_t d : {int64_t{-1}, int64_t{in.channels}, int64_t{in.height}, int64_t{in.width}}) shape->add_int64_data(d);
    add_node(g, "Reshape", "image", {x, "image_shape"}, "image");
    x = "image";
  }
  const std::vector<Model::Tensor> tensors = model.tensors();
  const auto tensor = [&](const std::string& name) -> const Model::Tensor& {
    for (const auto& t : tensors) {
      if (t.name == name) return t;
    }
    return tensors.front();  // unreachable: every conv and dense layer has both tensors
  };
  const auto& layers = model.layers();
  for (size_t l = 0; l < layers.size(); ++l) {
    const bool last = l + 1 == layers.size();
    const std::string weight = name_of(l, "weight"), bias = name_of(l, "bias");
    const std::string y = last ? "logits" : name_of(l, "out");
    switch (layers[l].kind) {
      case LayerKind::kDense:
      case LayerKind::kConv2D: {
        const Model::Tensor& w = tensor(weight);
        const std::vector<float> wv = file_tensor(m, w);
        add_initializer(g, weight, std::vector<int64_t>(w.shape.begin(), w.shape.end()), wv.data(), wv.size());
        const Model::Tensor& b = tensor(bias);
        add_initializer(g, bias, {b.shape[0]}, m.values.data() + b.offset, b.size);
        if (layers[l].kind == LayerKind::kDense) {
          onnx::NodeProto* gemm = add_node(g, "Gemm", name_of(l, "gemm"), {x, weight, bias}, y);
          onnx::AttributeProto* trans_b = gemm->add_attribute();
          trans_b->set_name("transB");
          trans_b->set_type(onnx::AttributeProto::INT);
          trans_b->set_i(1);
        } else {
          onnx::NodeProto* conv = add_node(g, "Conv", name_of(l, "conv"), {x, weight, bias}, y);
          add_ints_attribute(conv, "kernel_shape", {layers[l].kernel, layers[l].kernel});
        }
        x = y;
        if (!last) {
          add_node(g, m.hidden_activation == "tanh" ? "Tanh" : "Relu", name_of(l, "activation"), {x},
                   name_of(l, "activation"));
          x = name_of(l, "activation");
        }
        break;
      }
      case LayerKind::kMaxPool: {
        onnx::NodeProto* pool = add_node(g, "MaxPool", name_of(l, "maxpool"), {x}, y);
        add_ints_attribute(pool, "kernel_shape", {layers[l].kernel, layers[l].kernel});
        add_ints_attribute(pool, "strides", {layers[l].kernel, layers[l].kernel});
        x = y;
        break;
      }
      case LayerKind::kFlatten: {
        onnx::NodeProto* flatten = add_node(g, "Flatten", name_of(l, "flatten"), {x}, y);
        onnx::AttributeProto* axis = flatten->add_attribute();
        axis->set_name("axis");
        axis->set_type(onnx::AttributeProto::INT);
        axis->set_i(1);
        x = y;
        break;
      }
    }
  }
  return with_softmax(proto, x);
}

}  // namespace

Result<ModelFileFormat> model_file_format(const std::string& name, const std::string& path) {
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (name == "raw") return ModelFileFormat::kRaw;
  if (name == "safetensors") return ModelFileFormat::kSafetensors;
  if (name == "onnx") return ModelFileFormat::kOnnx;
  if (name != "auto") return invalid_argument("--format '" + name + "' is not one of auto, onnx, safetensors, raw");
  if (ends_with(".onnx")) return ModelFileFormat::kOnnx;
  if (ends_with(".safetensors")) return ModelFileFormat::kSafetensors;
  return ModelFileFormat::kRaw;
}

const char* to_string(ModelFileFormat f) {
  switch (f) {
    case ModelFileFormat::kRaw: return "raw";
    case ModelFileFormat::kSafetensors: return "safetensors";
    case ModelFileFormat::kOnnx: return "onnx";
  }
  return "?";
}

Result<std::string> model_file_bytes(ModelFileFormat format, const ExportedModel& m) {
  if (!m.architecture.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(const Model model, layered_model(m));
    switch (format) {
      case ModelFileFormat::kRaw: {
        std::string out;
        append_floats(out, m.values.data(), m.values.size());
        return out;
      }
      case ModelFileFormat::kSafetensors: return layered_safetensors(m, model);
      case ModelFileFormat::kOnnx: return layered_onnx(m, model);
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::vector<Layer> layers, layers_of(m));
  switch (format) {
    case ModelFileFormat::kRaw: {
      std::string out;
      append_floats(out, m.values.data(), m.values.size());
      return out;
    }
    case ModelFileFormat::kSafetensors: return safetensors(m, layers);
    case ModelFileFormat::kOnnx: return onnx_model(m, layers);
  }
  return invalid_argument("unknown model file format");
}

std::string model_card_markdown(const json& c) {
  auto text = [](const json& v) -> std::string {
    if (v.is_null()) return "none recorded";
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
  };
  std::ostringstream md;
  const json& model = c.value("model", json());
  md << "# Model card: "
     << (model.is_null() ? c.value("checkpoint", std::string("?"))
                         : model.value("name", std::string()) + " version " + std::to_string(model.value("version", 0)))
     << "\n\n";
  md << "| | |\n|---|---|\n";
  md << "| checkpoint | `" << text(c.value("checkpoint", json())) << "` (step " << c.value("step", 0)
     << (c.value("final", false) ? ", final" : "") << ") |\n";
  md << "| root hash | `" << text(c.value("root_hash", json())) << "` |\n";
  md << "| test accuracy | " << text(c.value("test_accuracy", json())) << " |\n";
  md << "| submitter | " << text(c.value("submitter", json())) << " |\n";
  const json& arch = c.value("architecture", json::object());
  md << "| architecture | "
     << (arch.contains("layers") ? text(arch["layers"]) + " (outputs per layer " : std::string("layers "))
     << text(arch.value("layer_sizes", json())) << (arch.contains("layers") ? ")" : "") << ", hidden "
     << text(arch.value("hidden_activation", json())) << ", " << text(arch.value("output", json())) << " |\n";
  const json& pre = c.value("preprocessing", json::object());
  if (pre.contains("standardize")) {
    md << "| input | " << text(pre.value("input", json())) << ": " << text(pre.value("features", json()))
       << "; standardized per feature with the training rows' mean " << text(pre["standardize"].value("mean", json()))
       << " and std " << text(pre["standardize"].value("std", json())) << " (" << text(pre.value("applied", json()))
       << ") |\n";
    md << "| classes | " << text(pre.value("classes", json())) << " (output i is the i-th; label column '"
       << text(pre.value("label", json())) << "') |\n";
  } else {
    md << "| input | " << text(pre.value("input", json())) << "; scaled by " << text(pre.value("scale", json()))
       << " (" << text(pre.value("applied", json())) << ") |\n";
  }
  md << "| privacy | "
     << (c.value("privacy", json()).is_null() ? std::string("no differential-privacy guarantee is claimed")
                                              : text(c["privacy"]))
     << " |\n\n";
  md << "## Data\n\n";
  for (const json& d : c.value("datasets", json::array())) {
    md << "* **" << text(d.value("name", json())) << "** `" << text(d.value("sha256", json())) << "`, "
       << d.value("train_samples", 0) << " training samples; licence: " << text(d.value("license", json()))
       << "; consent: " << text(d.value("consent", json())) << "; declared by " << text(d.value("declared_by", json()))
       << (d.value("inherited_through_fine_tuning", false) ? " (through fine-tuning)" : "") << "\n";
  }
  const json& t = c.value("training", json::object());
  md << "\n## Training\n\nrun `" << text(t.value("run", json())) << "` '" << text(t.value("name", json())) << "': "
     << text(t.value("consistency", json())) << ", " << t.value("workers", 0) << " workers, "
     << t.value("epochs", 0) << " epochs, batch " << t.value("batch_size", 0) << ", "
     << text(t.value("optimizer", json())) << " at learning rate " << t.value("learning_rate", 0.0) << "; job spec `"
     << text(t.value("job_spec", json())) << "`.\n\n";
  for (const json& w : c.value("contributors", json::array())) {
    md << "* " << text(w.value("node", json())) << " (rank " << w.value("rank", 0) << "): " << w.value("steps", 0)
       << " steps, " << w.value("samples", 0) << " samples\n";
  }
  const json& e = c.value("export", json::object());
  md << "\n## This export\n\nusage record `" << text(e.value("usage_id", json())) << "` by "
     << text(e.value("principal", json())) << " for purpose '" << text(e.value("purpose", json())) << "'; file `"
     << text(e.value("file", json())) << "` (" << text(e.value("format", json())) << ", sha256 `"
     << text(e.value("sha256", json())) << "`).\n";
  return md.str();
}

}  // namespace custody::cli
