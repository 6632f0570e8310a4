// The coordinator's side of the data plane's sealing (protocols/data_plane.h): whether an
// attempt's pushes and pulls are sealed, and the keys it hands its servers and workers.
//
// The choice (CoordinatorOptions::data_plane_sealing, per attempt, since a recovery may
// move a job onto other hosts): a job is loopback-only when every one of its servers
// advertises a loopback address (so every worker that reaches them is on their host) and
// every node of it reports the same host. "auto" seals a job unless it is loopback-only;
// "on" always; "off" leaves a loopback-only job in clear and seals any other anyway (the
// caller logs that loudly): the data plane never travels in clear between hosts.
//
// The keys: a fresh random attempt key per sealed attempt (AttemptKeys), kept by the
// coordinator in memory only, never logged or recorded, and wiped when the attempt ends;
// a server gets every rank's push key for its own range and its reply key, a worker its
// rank's key and the replies key. Records name keys by fingerprint only.
// Thread-safety: plain values and pure functions.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "actors/node_config.h"
#include "core/aead.h"
#include "core/partition.h"
#include "protocols/messages.h"

namespace custody::actors {

struct DataPlaneNode {
  std::string id, host;
  std::string address;  // a server's, as workers reach it; empty for a worker
};

struct DataPlaneChoice {
  bool sealed = true;
  bool overridden = false;  // "off" was asked for a job that is not loopback-only
  std::string how;          // for status and lineage: "sealed: ...", "in clear: ..."
};

DataPlaneChoice choose_data_plane(DataPlaneSealing mode, const std::vector<DataPlaneNode>& workers,
                                  const std::vector<DataPlaneNode>& servers);

const char* to_string(DataPlaneSealing mode);

// One sealed attempt's keys, every one derived when it is made, so that handing them out
// cannot fail half way. Wiped when destroyed (AeadKey).
class AttemptKeys {
 public:
  // A fresh random attempt key and its derivations for `ranks` ranks and the servers of
  // `ranges` (by server index). Errors: kUnavailable when the random source or OpenSSL
  // fails.
  static Result<AttemptKeys> make(uint32_t ranks, const std::vector<KeyRange>& ranges);
  // Server `server`'s keys: every rank's push key for its range, and its reply key.
  void fill(msg::AssignKeyRange& a, size_t server) const;
  // A worker's keys for rank t.rank.
  void fill(msg::AssignTask& t) const;
  // The fingerprint of `rank`'s push key at server `server`: what that server reports in
  // its contributions, recorded with the assignment to link the two.
  std::string push_key_fingerprint(uint32_t rank, size_t server) const {
    return push_keys_[server][rank].fingerprint();
  }

 private:
  AttemptKeys() = default;
  std::vector<AeadKey> rank_keys_;               // by rank
  std::vector<AeadKey> replies_key_;             // one
  std::vector<std::vector<AeadKey>> push_keys_;  // by server, then rank
  std::vector<AeadKey> reply_keys_;              // by server
};

}  // namespace custody::actors
