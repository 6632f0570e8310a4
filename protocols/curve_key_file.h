// Key files of CurveZMQ identities: the coordinator's long-term key pair, and each
// principal's (a node's, a CLI user's). A key file is TOML, mode 0600, readable by
// `cat`:
//   # A Custody CurveZMQ key pair: keep this file secret.
//   principal = "alice"
//   public_key = "<40 characters of Z85>"
//   secret_key = "<40 characters of Z85>"
// A public key file ("FILE.pub") holds the first two keys only, and may be shared.
// Wherever a public key is asked for (the coordinator's, on a node or the CLI), either the
// 40-character key itself or the path of a file that holds it is accepted.
// Errors: kNotFound (no file), kFailedPrecondition (a key file that group or others may
// read: a secret others could read is not a secret), kInvalidArgument (not a key file, or
// a key that is not Z85), kPermissionDenied / kUnavailable from the file system.
// Thread-safety: functions over their arguments.
#pragma once

#include <string>

#include "core/error.h"
#include "protocols/transport.h"

namespace custody::transport {

struct CurveIdentity {
  std::string principal;  // who the key pair belongs to (empty: the coordinator's)
  CurveKeyPair keys;
};

Result<CurveIdentity> read_key_file(const std::string& path);
// Writes the key pair (mode 0600, atomically) and its public half to path + ".pub".
Status write_key_file(const std::string& path, const CurveIdentity& identity);
// The key at `path`, or, if there is no file there, a new one created there (with its
// .pub); *created says which.
Result<CurveIdentity> load_or_create_key_file(const std::string& path, const std::string& principal,
                                              bool* created = nullptr);
// A public key given as itself (40 characters of Z85) or as the path of a key or .pub file.
Result<std::string> read_public_key(const std::string& key_or_path);

}  // namespace custody::transport
