#include "protocols/curve_key_file.h"

#include <sys/stat.h>

#include <cstdio>
#include <cerrno>
#include <cstring>

#include "core/config_reader.h"
#include "core/files.h"

namespace custody::transport {
namespace {

Result<CurveIdentity> parse(const std::string& path, bool want_secret) {
  CUSTODY_ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::parse_file(path));
  CurveIdentity id;
  CUSTODY_RETURN_IF_ERROR(r.get("principal", id.principal));
  CUSTODY_RETURN_IF_ERROR(r.get("public_key", id.keys.public_key));
  CUSTODY_RETURN_IF_ERROR(r.get("secret_key", id.keys.secret_key));
  CUSTODY_RETURN_IF_ERROR(r.unknown_keys_error());
  if (!is_curve_key(id.keys.public_key)) {
    return invalid_argument("'" + path + "' has no public_key of 40 characters of Z85 (a Custody key file?)");
  }
  if (want_secret) {
    if (!is_curve_key(id.keys.secret_key)) {
      return invalid_argument("'" + path + "' has no secret_key of 40 characters of Z85 (is it a .pub file?)");
    }
    CUSTODY_ASSIGN_OR_RETURN(std::string derived, curve_public_key(id.keys.secret_key));
    if (derived != id.keys.public_key) {
      return invalid_argument("'" + path + "': its public_key is not the public half of its secret_key");
    }
  }
  return id;
}

std::string render(const CurveIdentity& id, bool with_secret) {
  std::string out = with_secret ? "# A Custody CurveZMQ key pair: keep this file secret (mode 0600).\n"
                                : "# The public half of a Custody CurveZMQ key pair: share it freely.\n";
  if (!id.principal.empty()) out += "principal = \"" + id.principal + "\"\n";
  out += "public_key = \"" + id.keys.public_key + "\"\n";
  if (with_secret) out += "secret_key = \"" + id.keys.secret_key + "\"\n";
  return out;
}

}  // namespace

Result<CurveIdentity> read_key_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return not_found("no key file '" + path + "'");
    return unavailable("cannot read '" + path + "': " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return failed_precondition("the key file '" + path + "' has mode " + mode +
                               ": group or others may read it. Fix it with `chmod 600 " + path + "`");
  }
  return parse(path, true);
}

Status write_key_file(const std::string& path, const CurveIdentity& identity) {
  CUSTODY_RETURN_IF_ERROR(write_file_atomically(path, render(identity, true), 0600));
  return write_file_atomically(path + ".pub", render(identity, false), 0644);
}

Result<CurveIdentity> load_or_create_key_file(const std::string& path, const std::string& principal, bool* created) {
  auto existing = read_key_file(path);
  if (created) *created = false;
  if (existing.is_ok() || existing.status().code() != ErrorCode::kNotFound) return existing;
  CUSTODY_ASSIGN_OR_RETURN(CurveKeyPair keys, make_curve_key_pair());
  CurveIdentity id{principal, keys};
  CUSTODY_RETURN_IF_ERROR(write_key_file(path, id));
  if (created) *created = true;
  return id;
}

Result<std::string> read_public_key(const std::string& key_or_path) {
  if (is_curve_key(key_or_path)) return key_or_path;
  struct stat st;
  if (::stat(key_or_path.c_str(), &st) != 0) {
    return invalid_argument("'" + key_or_path + "' is neither a CurveZMQ public key (40 characters of Z85) nor a file");
  }
  CUSTODY_ASSIGN_OR_RETURN(CurveIdentity id, parse(key_or_path, false));
  return id.keys.public_key;
}

}  // namespace custody::transport
