// The lineage picture's graph: one node per entity however often the tree names it, and
// arrows that follow the data (upstream trees point child -> parent, impact trees the
// other way).
#include "tools/lineage_graph.h"

#include <gtest/gtest.h>

namespace custody::cli {
namespace {

using nlohmann::json;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(LineageGraph, DrawsEachEntityOnceWithArrowsFromTheDataToTheModel) {
  const json dataset = {{"label", "data set d \"quoted\""}, {"entity", {{"id", "dataset:d"}, {"kind", "dataset"}}}};
  const json tree = {
      {"label", "model m@1"},
      {"entity", {{"id", "model:m@1"}, {"kind", "model_version"}}},
      {"children",
       {{{"label", "run r"},
         {"entity", {{"id", "job-r"}, {"kind", "run"}}},
         {"children", {dataset, dataset}}}}}};  // named twice: drawn once
  const std::string dot = lineage_dot(tree, /*downstream=*/false);
  EXPECT_EQ(count(dot, "shape=cylinder"), 1u) << dot;
  EXPECT_NE(dot.find("data set d \\\"quoted\\\""), std::string::npos) << "quotes are escaped";
  EXPECT_NE(dot.find("n2 -> n1;"), std::string::npos) << "data set -> run\n" << dot;
  EXPECT_NE(dot.find("n1 -> n0;"), std::string::npos) << "run -> model\n" << dot;
  const std::string down = lineage_dot(tree, /*downstream=*/true);
  EXPECT_NE(down.find("n0 -> n1;"), std::string::npos) << down;
}

TEST(LineageGraph, GraphvizDrawsTheDotAsSvgOrSaysWhatFailed) {
  auto svg = dot_to_svg("digraph g { a -> b; }\n");
  ASSERT_TRUE(svg.is_ok()) << svg.status().to_string();
  EXPECT_NE(svg->find("<svg"), std::string::npos);
  auto broken = dot_to_svg("digraph g { a -> ; ");
  ASSERT_FALSE(broken.is_ok());
  EXPECT_NE(broken.status().message().find("Graphviz's dot failed"), std::string::npos) << broken.status().message();
}

}  // namespace
}  // namespace custody::cli
