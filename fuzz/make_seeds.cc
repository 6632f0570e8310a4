// Writes one valid encoded message of every kind into a directory: the fuzzer's seed
// corpus, so that it starts from the real wire format instead of from nothing.
#include <cstdio>
#include <fstream>
#include <string>

#include "protocols/codec.h"

using namespace custody::msg;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  Body bodies[] = {Error{custody::ErrorCode::kNotFound, "x"}, Register{NodeRole::kWorker, "a", "h", 1, "w"},
                   Heartbeat{true}, SubmitJob{"[job]\nepochs = 1\n", "f", "s"}, StatusRequest{true},
                   Push{"w", 3, {1.0f, 2.0f}, 64, 2}, Params{1, 0, {0.5f}}, Predict{"m", "p", 1, 2, {1, 2}, ""},
                   AddPrincipal{"n", "consumer", "", false}, UsageRequest{"m", 0, 0}, AuditHeadRequest{},
                   CheckpointShard{1, 0, {1.0f}, {{"w", 1, 0, 64, 1.0, 0, 0}}, false}};
  int i = 0;
  for (auto& b : bodies) {
    Envelope e;
    e.sender = "seed";
    e.job_id = "job-1";
    e.token = "t";
    e.body = b;
    auto bytes = encode(e);
    std::ofstream(dir + "/seed-" + std::to_string(i++), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  return 0;
}
