#include <map>
#include <mutex>
#include <vector>

#include "storage/key_value.h"

namespace custody::storage {

Result<std::shared_ptr<PendingWrite>> KeyValue::apply_deferred(const std::vector<Put>& puts) {
  class Done final : public PendingWrite {
   public:
    Status wait() override { return Status::ok(); }
  };
  CUSTODY_RETURN_IF_ERROR(apply(puts));
  return std::shared_ptr<PendingWrite>(std::make_shared<Done>());
}

namespace {

class MemoryKeyValue final : public KeyValue {
 public:
  Status apply(const std::vector<Put>& puts) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& p : puts) {
      if (!known(p.family)) return invalid_argument("no column family '" + p.family + "'");
    }
    for (const auto& p : puts) {
      if (p.erase) {
        data_[p.family].erase(p.key);
      } else {
        data_[p.family][p.key] = p.value;
      }
    }
    return Status::ok();
  }
  Result<std::optional<std::string>> get(const std::string& family, const std::string& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto f = data_.find(family);
    if (f == data_.end()) return std::optional<std::string>();
    auto it = f->second.find(key);
    if (it == f->second.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status scan(const std::string& family, const std::string& prefix,
              const std::function<bool(const std::string&, const std::string&)>& visit) const override {
    std::map<std::string, std::string> copy;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto f = data_.find(family);
      if (f == data_.end()) return Status::ok();
      copy = f->second;
    }
    for (auto it = copy.lower_bound(prefix); it != copy.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it) {
      if (!visit(it->first, it->second)) break;
    }
    return Status::ok();
  }
  Status scan_from(const std::string& family, const std::string& prefix, const std::string& from, bool newest_first,
                   const std::function<bool(const std::string&, const std::string&)>& visit) const override {
    std::vector<std::pair<std::string, std::string>> in_prefix;
    CUSTODY_RETURN_IF_ERROR(scan(family, prefix, [&](const std::string& k, const std::string& v) {
      in_prefix.emplace_back(k, v);
      return true;
    }));
    if (!newest_first) {
      for (const auto& [k, v] : in_prefix)
        if (k >= from && !visit(k, v)) break;
    } else {
      for (auto it = in_prefix.rbegin(); it != in_prefix.rend(); ++it)
        if ((from.empty() || it->first <= from) && !visit(it->first, it->second)) break;
    }
    return Status::ok();
  }

 private:
  static bool known(const std::string& family) {
    for (const auto& f : column_families())
      if (f == family) return true;
    return false;
  }
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, std::string>> data_;
};

}  // namespace

std::unique_ptr<KeyValue> make_memory_key_value() { return std::make_unique<MemoryKeyValue>(); }

}  // namespace custody::storage
