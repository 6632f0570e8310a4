#include "tools/lineage_graph.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

extern char** environ;

namespace custody::cli {
namespace {

using nlohmann::json;

std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Long labels wrap at a word near `width`, so that boxes stay readable.
std::string wrapped(const std::string& s, size_t width = 44) {
  std::string out;
  size_t line = 0;
  std::istringstream words(s);
  std::string w;
  while (words >> w) {
    if (line > 0 && line + 1 + w.size() > width) {
      out += '\n';
      line = 0;
    } else if (line > 0) {
      out += ' ';
      ++line;
    }
    out += w;
    line += w.size();
  }
  return out;
}

struct Style {
  const char* shape;
  const char* fill;
};

Style style_of(const json& node) {
  const std::string kind = node.contains("entity") ? node["entity"].value("kind", std::string()) : std::string();
  const std::string label = node.value("label", std::string());
  if (kind == "dataset" || label.rfind("data set", 0) == 0) return {"cylinder", "#dbeafe"};
  if (kind == "run" || label.rfind("run ", 0) == 0) return {"box", "#fef3c7"};
  if (kind == "checkpoint" || label.rfind("checkpoint", 0) == 0) return {"note", "#f3f4f6"};
  if (kind == "model_version" || label.rfind("model ", 0) == 0) return {"component", "#dcfce7"};
  if (kind == "principal" || label.rfind("submitted by", 0) == 0 || label.rfind("called by", 0) == 0)
    return {"ellipse", "#fce7f3"};
  if (kind == "jobspec" || label.rfind("job spec", 0) == 0) return {"tab", "#ede9fe"};
  if (label.rfind("prediction", 0) == 0) return {"parallelogram", "#fee2e2"};
  return {"box", "#ffffff"};
}

struct Drawer {
  bool downstream;
  std::ostringstream nodes, edges;
  std::map<std::string, std::string> by_entity;  // entity id -> DOT node
  int next = 0;

  std::string draw(const json& node, bool root) {
    const std::string entity =
        node.contains("entity") && node["entity"].is_object() ? node["entity"].value("id", std::string()) : "";
    if (!entity.empty()) {
      auto it = by_entity.find(entity);
      if (it != by_entity.end()) return it->second;
    }
    const std::string id = "n" + std::to_string(next++);
    if (!entity.empty()) by_entity[entity] = id;
    const Style st = style_of(node);
    nodes << "  " << id << " [label=\"" << escaped(wrapped(node.value("label", std::string("?")))) << "\", shape="
          << st.shape << ", style=filled, fillcolor=\"" << st.fill << "\"" << (root ? ", penwidth=2.5" : "")
          << "];\n";
    if (node.contains("children") && node["children"].is_array()) {
      for (const json& child : node["children"]) {
        if (!child.is_object()) continue;
        const std::string c = draw(child, false);
        edges << "  " << (downstream ? id : c) << " -> " << (downstream ? c : id) << ";\n";
      }
    }
    return id;
  }
};

}  // namespace

std::string lineage_dot(const json& tree, bool downstream) {
  Drawer d{downstream, {}, {}, {}, 0};
  d.draw(tree, true);
  std::ostringstream out;
  out << "// custody lineage graph: " << (downstream ? "downstream" : "upstream") << " of "
      << tree.value("label", std::string()) << "\n"
      << "digraph custody_lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
      << "  edge [color=\"#6b7280\"];\n"
      << d.nodes.str() << d.edges.str() << "}\n";
  return out.str();
}

Result<std::string> dot_to_svg(const std::string& dot) {
  namespace fs = std::filesystem;
  char dir_template[] = "/tmp/custody-graph-XXXXXX";
  if (!mkdtemp(dir_template)) return internal_error("cannot make a temporary directory for Graphviz");
  const fs::path dir = dir_template, in = dir / "lineage.dot", out = dir / "lineage.svg", err = dir / "dot.err";
  std::ofstream(in) << dot;
  std::vector<std::string> argv{"dot", "-Tsvg", in.string(), "-o", out.string()};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  const int spawned = posix_spawnp(&pid, "dot", &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  std::string svg, why;
  if (spawned != 0) {
    why = "cannot run Graphviz's dot (install the Debian package graphviz, or use --format dot)";
  } else {
    int status = 0;
    waitpid(pid, &status, 0);
    std::ifstream f(out, std::ios::binary);
    svg.assign(std::istreambuf_iterator<char>(f), {});
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || svg.empty()) {
      std::ifstream e(err);
      why = "Graphviz's dot failed: " + std::string(std::istreambuf_iterator<char>(e), {});
    }
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  if (!why.empty()) return failed_precondition(why);
  return svg;
}

}  // namespace custody::cli
