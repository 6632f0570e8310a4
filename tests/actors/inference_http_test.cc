// The Open Inference Protocol's JSON, both ways: what a KServe client sends becomes the
// Predict the serving path checks, bad tensors are refused naming what is wrong, and an
// answer carries the probabilities, the classes and the call's prediction ids.
#include "actors/inference_http.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace custody::actors::http {
namespace {

using nlohmann::json;

std::string infer_body(const json& shape, const json& data, const std::string& datatype = "FP32") {
  return json{{"id", "req-7"},
              {"inputs", {{{"name", "input"}, {"shape", shape}, {"datatype", datatype}, {"data", data}}}}}
      .dump();
}

std::string message_of(const Result<InferRequest>& r) { return r.is_ok() ? "(ok)" : r.status().message(); }

TEST(InferenceHttpTest, AnOipTensorBecomesRowsTimesFeaturesFlatOrNested) {
  auto flat = parse_infer(infer_body({2, 3}, {1, 2, 3, 4, 5, 6}), "mnist@2", 100);
  ASSERT_TRUE(flat.is_ok()) << message_of(flat);
  EXPECT_EQ(flat->predict.model, "mnist@2");
  EXPECT_EQ(flat->predict.rows, 2u);
  EXPECT_EQ(flat->predict.features, 3u);
  EXPECT_EQ(flat->predict.inputs, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(flat->id, "req-7");
  auto nested = parse_infer(infer_body({2, 3}, {{1, 2, 3}, {4, 5, 6}}), "mnist", 100);
  ASSERT_TRUE(nested.is_ok()) << message_of(nested);
  EXPECT_EQ(nested->predict.inputs, flat->predict.inputs);
}

TEST(InferenceHttpTest, BadTensorsAreRefusedNamingTheProblem) {
  struct Case {
    std::string body, says;
  };
  const std::vector<Case> cases = {
      {"{\"inputs\": [", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {R"({"inputs": [{"name":"x","shape":[1,2],"datatype":"FP32","data":[NaN, 1]}]})", "not valid JSON"},
      {infer_body({1, 2}, {1e39, 1}), "is not a finite float32"},
      {infer_body({2, 3}, {1, 2, 3, 4, 5}), "holds 5 values; its shape [2, 3] needs 6"},
      {infer_body({2, 3}, {1, 2, 3, 4, 5, 6, 7}), "more values than its shape says"},
      {infer_body({6}, {1, 2, 3, 4, 5, 6}), "\"shape\": [N, features]"},
      {infer_body({-1, 3}, {1, 2, 3}), "\"shape\": [N, features]"},
      {infer_body({1, 2}, {"a", "b"}), "holds string, not a number"},
      {infer_body({1, 2}, {1, 2}, "BYTES"), "datatype 'BYTES'"},
      {infer_body({0, 2}, json::array()), "1 to 100 rows; got 0"},
      {infer_body({101, 1}, std::vector<int>(101, 1)), "1 to 100 rows; got 101"},
      {R"({"inputs": []})", "exactly one tensor"},
      {R"({"inputs": [{"shape":[1,1],"datatype":"FP32","data":[1]}], "outputs": [{"name":"logits"}]})",
       "unknown output 'logits'"},
  };
  for (const auto& c : cases) {
    auto r = parse_infer(c.body, "m", 100);
    ASSERT_FALSE(r.is_ok()) << c.body;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << c.body;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.body << " -> " << r.status().message();
  }
}

TEST(InferenceHttpTest, FlaskStyleInstancesNeedEqualRowsAndAModel) {
  auto ok =
      parse_instances(R"({"instances": [[1, 2], [3, 4.5]], "parameters": {"purpose": "triage"}})", "m", 10);
  ASSERT_TRUE(ok.is_ok()) << message_of(ok);
  EXPECT_EQ(ok->predict.rows, 2u);
  EXPECT_EQ(ok->predict.features, 2u);
  EXPECT_EQ(ok->predict.purpose, "triage");
  EXPECT_EQ(ok->predict.inputs, (std::vector<float>{1, 2, 3, 4.5f}));
  EXPECT_EQ(parse_instances(R"({"instances": [[1]], "model": "other@3"})", "m", 10)->predict.model,
            "other@3");
  EXPECT_NE(message_of(parse_instances(R"({"instances": [[1, 2], [3]]})", "m", 10))
                .find("instance 1 must be an array of 2"),
            std::string::npos);
  EXPECT_NE(message_of(parse_instances(R"({"instances": [[1, "x"]]})", "m", 10))
                .find("instance 0, feature 1 is not a number"),
            std::string::npos);
  EXPECT_NE(message_of(parse_instances(R"({"instances": [[1]]})", "", 10)).find("name the model"),
            std::string::npos);
  EXPECT_NE(message_of(parse_instances(R"({"rows": [[1]]})", "m", 10)).find("\"instances\" must be"),
            std::string::npos);
}

TEST(InferenceHttpTest, TheAnswerCarriesProbabilitiesClassesAndPredictionIds) {
  msg::PredictReply reply;
  reply.model = "mnist@2";
  reply.checkpoint = "checkpoint:abc";
  reply.root_hash = "00ff";
  reply.classes = 3;
  reply.probabilities = {0.1f, 0.7f, 0.2f, 0.6f, 0.3f, 0.1f};
  reply.prediction_ids = {"pred-1-0", "pred-1-1"};
  reply.call_id = "call-1";
  reply.receipt = R"({"signature":"s"})";
  InferRequest request;
  request.id = "req-7";
  json doc = json::parse(infer_response("mnist", request, reply));
  EXPECT_EQ(doc["model_name"], "mnist");
  EXPECT_EQ(doc["model_version"], "2");
  EXPECT_EQ(doc["id"], "req-7");
  EXPECT_EQ(doc["parameters"]["prediction_ids"], json({"pred-1-0", "pred-1-1"}));
  EXPECT_EQ(doc["parameters"]["receipt"]["signature"], "s");
  ASSERT_EQ(doc["outputs"].size(), 2u);
  EXPECT_EQ(doc["outputs"][0]["shape"], json({2, 3}));
  EXPECT_NEAR(doc["outputs"][0]["data"][1].get<double>(), 0.7, 1e-6);
  EXPECT_EQ(doc["outputs"][1]["data"], json({1, 0}));
  request.outputs = {"class"};
  EXPECT_EQ(json::parse(infer_response("mnist", request, reply))["outputs"].size(), 1u);
  json flask = json::parse(instances_response(reply));
  EXPECT_EQ(flask["predictions"][1]["class"], 0);
  EXPECT_EQ(flask["predictions"][1]["prediction_id"], "pred-1-1");
}

TEST(InferenceHttpTest, FailuresMapToTheirHttpStatus) {
  EXPECT_EQ(status_of(invalid_argument("x"), true), 400);
  EXPECT_EQ(status_of(Status(ErrorCode::kPermissionDenied, "x"), false), 401);
  EXPECT_EQ(status_of(Status(ErrorCode::kPermissionDenied, "x"), true), 403);
  EXPECT_EQ(status_of(not_found("x"), true), 404);
  EXPECT_EQ(status_of(unavailable("x"), true), 503);
  // A tainted version: 451 Unavailable For Legal Reasons; other preconditions stay 503.
  EXPECT_EQ(status_of(failed_precondition("fashion@1 is tainted by revocation revocation:ab (withdrawn)"), true), 451);
  EXPECT_EQ(status_of(failed_precondition("the coordinator runs without a store"), true), 503);
  EXPECT_EQ(json::parse(error_body("bad \"row\""))["error"], "bad \"row\"");
}

// The model metadata states the input contract (core/input_contract.h) on the input
// tensor and among the model's parameters: what to send and what the service does with it.
TEST(InferenceHttpTest, ModelMetadataStatesTheInputContract) {
  ModelInfo image;
  image.name = "fashion";
  image.version = "2";
  image.features = 784;
  image.classes = 10;
  image.input = "raw pixel values 0 to 255";
  image.preprocessing = "model input = pixel x (1/255)";
  image.input_range = {0, 255};
  image.input_scale = 1.0f / 255.0f;
  json doc = json::parse(model_metadata(image));
  const json& contract = doc["inputs"][0]["parameters"];
  EXPECT_EQ(contract["expects"], "raw pixel values 0 to 255");
  EXPECT_EQ(contract["preprocessing"], "model input = pixel x (1/255)");
  EXPECT_EQ(contract["range"], json({0, 255}));
  EXPECT_NEAR(contract["scale"].get<double>(), 1.0 / 255.0, 1e-9);
  EXPECT_FALSE(contract.contains("columns"));
  EXPECT_EQ(doc["parameters"]["input_range"], json({0, 255}));
  EXPECT_EQ(doc["inputs"][0]["shape"], json({-1, 784}));

  ModelInfo table;
  table.name = "penguins";
  table.features = 2;
  table.classes = 3;
  table.input = "finite raw values of the table's columns, in this order: bill, mass";
  table.preprocessing = "standardized";
  table.feature_names = {"bill", "mass"};
  doc = json::parse(model_metadata(table));
  EXPECT_EQ(doc["inputs"][0]["parameters"]["columns"], json({"bill", "mass"}));
  EXPECT_FALSE(doc["inputs"][0]["parameters"].contains("range"));
  EXPECT_EQ(doc["parameters"]["input_columns"], json({"bill", "mass"}));
}

}  // namespace
}  // namespace custody::actors::http
