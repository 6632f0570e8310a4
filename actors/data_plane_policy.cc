#include "actors/data_plane_policy.h"

#include <set>

#include "protocols/data_plane.h"

namespace custody::actors {

DataPlaneChoice choose_data_plane(DataPlaneSealing mode, const std::vector<DataPlaneNode>& workers,
                                  const std::vector<DataPlaneNode>& servers) {
  std::set<std::string> hosts;
  std::vector<std::string> reachable;  // servers other hosts can reach
  for (const auto& n : workers) hosts.insert(n.host);
  for (const auto& n : servers) {
    hosts.insert(n.host);
    if (!data_plane::is_loopback_endpoint(n.address)) reachable.push_back(n.id + " at " + n.address);
  }
  const bool loopback_only = reachable.empty() && hosts.size() <= 1;
  std::string where;
  if (!reachable.empty()) {
    where = "servers reachable from other hosts (" + reachable.front() +
            (reachable.size() > 1 ? " and " + std::to_string(reachable.size() - 1) + " more" : "") + ")";
  } else if (hosts.size() > 1) {
    std::string list;
    for (const auto& h : hosts) list += (list.empty() ? "" : ", ") + h;
    where = "nodes on " + std::to_string(hosts.size()) + " hosts (" + list + ")";
  } else {
    where =
        "every node on host " + (hosts.empty() ? std::string("?") : *hosts.begin()) + ", servers on loopback";
  }
  DataPlaneChoice c;
  const std::string setting = std::string(" (data_plane_sealing = ") + to_string(mode) + ")";
  if (mode == DataPlaneSealing::kOn) {
    c.how = "sealed: AES-256-GCM under keys of the attempt; " + where + setting;
  } else if (loopback_only) {
    c.sealed = false;
    c.how = "in clear: " + where + setting;
  } else {
    c.overridden = mode == DataPlaneSealing::kOff;
    c.how = std::string(c.overridden ? "sealed anyway, although data_plane_sealing = off: " : "sealed: ") +
            "AES-256-GCM under keys of the attempt; " + where + (c.overridden ? "" : setting);
  }
  return c;
}

const char* to_string(DataPlaneSealing mode) {
  switch (mode) {
    case DataPlaneSealing::kAuto:
      return "auto";
    case DataPlaneSealing::kOn:
      return "on";
    case DataPlaneSealing::kOff:
      return "off";
  }
  return "?";
}

Result<AttemptKeys> AttemptKeys::make(uint32_t ranks, const std::vector<KeyRange>& ranges) {
  CUSTODY_ASSIGN_OR_RETURN(const AeadKey attempt, AeadKey::random());
  AttemptKeys k;
  for (uint32_t r = 0; r < ranks; ++r) {
    CUSTODY_ASSIGN_OR_RETURN(AeadKey rank, data_plane::rank_key(attempt, r));
    k.rank_keys_.push_back(std::move(rank));
  }
  CUSTODY_ASSIGN_OR_RETURN(AeadKey replies, data_plane::replies_key(attempt));
  for (const KeyRange& range : ranges) {
    std::vector<AeadKey> push;
    for (const AeadKey& rank : k.rank_keys_) {
      CUSTODY_ASSIGN_OR_RETURN(AeadKey key, data_plane::server_key(rank, range.begin, range.end));
      push.push_back(std::move(key));
    }
    k.push_keys_.push_back(std::move(push));
    CUSTODY_ASSIGN_OR_RETURN(AeadKey reply, data_plane::server_key(replies, range.begin, range.end));
    k.reply_keys_.push_back(std::move(reply));
  }
  k.replies_key_.push_back(std::move(replies));
  return k;
}

void AttemptKeys::fill(msg::AssignKeyRange& a, size_t server) const {
  a.rank_keys = push_keys_[server];
  a.reply_key = reply_keys_[server];
}

void AttemptKeys::fill(msg::AssignTask& t) const {
  t.rank_key = rank_keys_[t.rank];
  t.replies_key = replies_key_.front();
}

}  // namespace custody::actors
