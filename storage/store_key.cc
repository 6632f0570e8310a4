#include "storage/store_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "storage/custody_store.h"

namespace custody::storage {
namespace {

using nlohmann::json;

constexpr char kKeyFormat[] = "custody-store-key-v1";
constexpr size_t kMaxKeyFile = 64 * 1024;

// Key text does not outlive its use in freed memory (best effort: copies made by the JSON
// library are not reached).
void wipe(std::string& s) {
  volatile char* p = s.data();
  for (size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

Status file_error(const std::string& what, const std::string& path, int err) {
  const std::string message = what + " '" + path + "': " + std::strerror(err);
  if (err == ENOENT) return not_found(message);
  if (err == EACCES || err == EPERM) return Status(ErrorCode::kPermissionDenied, message);
  return unavailable(message);
}

// The whole file through one descriptor, so the mode checked is that of the file read.
Result<std::string> read_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error("cannot open the store key", path, errno);
  struct stat st;
  Status s;
  if (::fstat(fd, &st) != 0) {
    s = file_error("cannot stat the store key", path, errno);
  } else if (!S_ISREG(st.st_mode)) {
    s = failed_precondition("the store key " + path + " is not a regular file");
  } else if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    s = failed_precondition("the store key " + path + " has mode " + mode +
                            ": group or others may read it, so it may no longer be secret; run `chmod 600 " +
                            path + "` if it is, or rotate it (`custody store rekey`)");
  } else if (static_cast<uint64_t>(st.st_size) > kMaxKeyFile) {
    s = data_loss("the store key " + path + " is " + std::to_string(st.st_size) +
                  " bytes: not a store key file");
  }
  std::string text;
  char buf[4096];
  while (s.is_ok()) {
    const ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) s = file_error("cannot read the store key", path, errno);
    if (got <= 0) break;
    text.append(buf, static_cast<size_t>(got));
  }
  std::memset(buf, 0, sizeof(buf));
  ::close(fd);
  if (!s.is_ok()) {
    wipe(text);
    return s;
  }
  return text;
}

}  // namespace

StoreKeys::StoreKeys(std::vector<AeadKey> keys) : keys_(std::move(keys)) {
  for (const auto& k : keys_) versions_.push_back(k.fingerprint());
}

StoreKeys StoreKeys::of(AeadKey key) { return StoreKeys({std::move(key)}); }

Result<StoreKeys> StoreKeys::load(const std::string& path) {
  CUSTODY_ASSIGN_OR_RETURN(std::string text, read_key_file(path));
  json j = json::parse(text, nullptr, false);
  wipe(text);
  auto damaged = [&](const std::string& what) {
    return data_loss("the store key " + path + " is not a store key file (" + what + ")");
  };
  if (j.is_discarded() || !j.is_object()) return damaged("not JSON");
  if (j.value("format", std::string()) != kKeyFormat)
    return damaged("its format is not " + std::string(kKeyFormat));
  if (!j.contains("current") || !j["current"].is_string()) return damaged("no current key");
  std::vector<std::string> hexes{j["current"].get<std::string>()};
  if (j.contains("retiring")) {
    if (!j["retiring"].is_array()) return damaged("'retiring' is not a list");
    for (const auto& k : j["retiring"]) {
      if (!k.is_string()) return damaged("a retiring key is not text");
      hexes.push_back(k.get<std::string>());
    }
  }
  std::vector<AeadKey> keys;
  Status bad;
  for (auto& hex : hexes) {
    auto key = AeadKey::from_hex(hex);
    wipe(hex);
    if (!key.is_ok()) bad = damaged(key.status().message());
    if (key.is_ok()) keys.push_back(std::move(key).value());
  }
  if (!bad.is_ok()) return bad;
  return StoreKeys(std::move(keys));
}

Result<StoreKeys> StoreKeys::create(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) {
    return failed_precondition("the store key " + path + " exists already; it is not replaced");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto key, AeadKey::random());
  StoreKeys keys({std::move(key)});
  CUSTODY_RETURN_IF_ERROR(keys.save(path));
  return keys;
}

const AeadKey* StoreKeys::find(std::string_view version) const {
  for (size_t i = 0; i < keys_.size(); ++i)
    if (versions_[i] == version) return &keys_[i];
  return nullptr;
}

Result<StoreKeys> StoreKeys::rotated() const {
  CUSTODY_ASSIGN_OR_RETURN(auto fresh, AeadKey::random());
  std::vector<AeadKey> keys{std::move(fresh)};
  keys.insert(keys.end(), keys_.begin(), keys_.end());
  return StoreKeys(std::move(keys));
}

StoreKeys StoreKeys::current_only() const { return StoreKeys({keys_.front()}); }

Status StoreKeys::save(const std::string& path) const {
  json retiring = json::array();
  for (size_t i = 1; i < keys_.size(); ++i) retiring.push_back(keys_[i].hex());
  std::string text =
      json{{"format", kKeyFormat}, {"current", keys_.front().hex()}, {"retiring", retiring}}.dump() + "\n";
  Status s = write_file_atomically(path, text, 0600);
  wipe(text);
  if (!s.is_ok()) return Status(s.code(), "cannot write the store key: " + s.message());
  return Status::ok();
}

std::string default_store_key_path(const std::string& store_path) {
  std::string base = store_path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + ".store-key";
}

Result<std::shared_ptr<const StoreKeys>> attach_store_keys(CustodyStore& store, const std::string& path,
                                                           bool* created) {
  if (created) *created = false;
  CUSTODY_ASSIGN_OR_RETURN(const auto in_use, store.key_versions());
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  auto loaded = StoreKeys::load(path);
  if (!loaded.is_ok() && loaded.status().code() == ErrorCode::kNotFound) {
    if (!in_use.empty()) {
      return failed_precondition(
          "the custody store holds tensors sealed under store key " + join(in_use) +
          ", but there is no key file at " + path +
          ": put that key file back (or name it with --store-key); a new key could not "
          "open them");
    }
    loaded = StoreKeys::create(path);
    if (loaded.is_ok() && created) *created = true;
  }
  if (!loaded.is_ok()) return loaded.status();
  auto keys = std::make_shared<const StoreKeys>(std::move(loaded).value());
  for (const auto& v : in_use) {
    if (!keys->find(v)) {
      return failed_precondition("the custody store holds tensors sealed under store key " + v +
                                 ", which the key file " + path + " (key " + join(keys->versions()) +
                                 ") does not hold: name the key file that sealed them with --store-key");
    }
  }
  if (in_use != keys->versions()) CUSTODY_RETURN_IF_ERROR(store.record_key_versions(keys->versions()));
  store.set_keys(keys);
  return std::shared_ptr<const StoreKeys>(keys);
}

Result<std::shared_ptr<const StoreKeys>> load_store_keys_if_present(const std::string& path) {
  auto loaded = StoreKeys::load(path);
  if (!loaded.is_ok() && loaded.status().code() == ErrorCode::kNotFound)
    return std::shared_ptr<const StoreKeys>();
  if (!loaded.is_ok()) return loaded.status();
  return std::shared_ptr<const StoreKeys>(std::make_shared<const StoreKeys>(std::move(loaded).value()));
}

}  // namespace custody::storage
