#include "core/signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/hash.h"
#include "core/hex.h"

namespace custody {

namespace {

constexpr size_t kPublicKeySize = 32;
constexpr size_t kSignatureSize = 64;
// A PKCS#8 Ed25519 PEM is about 120 bytes; anything far larger is not our key file.
constexpr size_t kMaxKeyFileSize = 64 * 1024;
constexpr std::string_view kPemPublicBegin = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kHeadTag = "custody-tree-head-v1";

using PkeyPtr = std::shared_ptr<evp_pkey_st>;

PkeyPtr own(EVP_PKEY* k) { return PkeyPtr(k, EVP_PKEY_free); }

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string errno_text(int err) { return std::strerror(err); }

Status file_error(const std::string& what, const std::string& path, int err) {
  std::string m = what + " " + path + ": " + errno_text(err);
  if (err == EACCES || err == EPERM) return Status(ErrorCode::kPermissionDenied, m);
  if (err == ENOENT || err == ENOTDIR) return not_found(m);
  return unavailable(m);
}

bool is_ed25519(const EVP_PKEY* k) { return k != nullptr && EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519; }

Result<PkeyPtr> parse_public_key(std::string_view public_key) {
  if (public_key.substr(0, kPemPublicBegin.size()) == kPemPublicBegin) {
    BioPtr bio(BIO_new_mem_buf(public_key.data(), static_cast<int>(public_key.size())));
    if (!bio) return internal_error("OpenSSL could not allocate a buffer");
    PkeyPtr k = own(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!k) return invalid_argument("the public key is not a readable PEM public key");
    if (!is_ed25519(k.get())) return invalid_argument("the public key is not an Ed25519 key");
    return k;
  }
  CUSTODY_ASSIGN_OR_RETURN(auto raw, from_hex(public_key, kPublicKeySize, "the Ed25519 public key"));
  PkeyPtr k = own(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                              reinterpret_cast<const unsigned char*>(raw.data()),
                                              raw.size()));
  if (!k) return invalid_argument("the public key is not a valid Ed25519 public key");
  return k;
}

std::string raw_public_key(const EVP_PKEY* k) {
  unsigned char buf[kPublicKeySize];
  size_t len = sizeof(buf);
  if (EVP_PKEY_get_raw_public_key(k, buf, &len) != 1 || len != kPublicKeySize) return {};
  return std::string(reinterpret_cast<const char*>(buf), len);
}

// The whole file through one descriptor, so the mode checked is that of the file read.
Result<std::string> read_private_file(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return file_error("cannot stat the signing key", path, errno);
  if (!S_ISREG(st.st_mode)) return failed_precondition("the signing key " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return failed_precondition("the signing key " + path + " has mode " + mode +
                               ": group or others may access it, so it may not be secret; "
                               "run `chmod 600 " +
                               path + "` if it is, or remove it to make a new key");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyFileSize) {
    return data_loss("the signing key " + path + " is " + std::to_string(st.st_size) +
                     " bytes: too large to be a PEM Ed25519 private key");
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got < 0) {
      if (errno == EINTR) continue;
      return file_error("cannot read the signing key", path, errno);
    }
    if (got == 0) break;
    out.append(buf, static_cast<size_t>(got));
    if (out.size() > kMaxKeyFileSize) return data_loss("the signing key " + path + " is too large");
  }
  return out;
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t put = ::write(fd, data.data() + done, data.size() - done);
    if (put < 0) {
      if (errno == EINTR) continue;
      return file_error("cannot write the signing key", path, errno);
    }
    done += static_cast<size_t>(put);
  }
  return Status::ok();
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Temp file, fsync, rename, fsync the directory: after a crash the key file is either
// absent or whole, never a truncated key that would then be refused (or worse, replaced).
Status write_key_file(const std::string& path, std::string& pem) {
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return file_error("cannot create a temporary file for the signing key", path, errno);
  Status s;
  if (::fchmod(fd, 0600) != 0) s = file_error("cannot set mode 0600 on", tmp, errno);
  if (s.is_ok()) s = write_all(fd, pem, tmp);
  if (s.is_ok() && ::fsync(fd) != 0) s = file_error("cannot sync", tmp, errno);
  if (::close(fd) != 0 && s.is_ok()) s = file_error("cannot close", tmp, errno);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = file_error("cannot rename the new signing key to", path, errno);
  }
  if (!s.is_ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  const std::string dir = parent_directory(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return file_error("cannot open the key's directory", dir, errno);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return file_error("cannot sync the key's directory", dir, err);
  return Status::ok();
}

bool lowercase_hex(std::string_view s, size_t digits) {
  if (s.size() != digits) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool printable_no_space(std::string_view s) {
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

Result<SigningKey> SigningKey::load_or_create(const std::string& path, bool* created) {
  if (created) *created = false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    auto pem = read_private_file(fd, path);
    ::close(fd);
    if (!pem.is_ok()) return pem.status();
    BioPtr bio(BIO_new_mem_buf(pem.value().data(), static_cast<int>(pem.value().size())));
    if (!bio) return internal_error("OpenSSL could not allocate a buffer");
    PkeyPtr k = own(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    OPENSSL_cleanse(pem.value().data(), pem.value().size());
    if (!k) return data_loss("the signing key " + path + " is not a readable unencrypted PEM private key");
    if (!is_ed25519(k.get())) return data_loss("the signing key " + path + " is not an Ed25519 key");
    return SigningKey(std::move(k));
  }
  if (errno != ENOENT) return file_error("cannot open the signing key", path, errno);

  PkeyPtr k = own(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!k) return unavailable("OpenSSL could not generate an Ed25519 key (no secure randomness?)");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return internal_error("OpenSSL could not encode the new signing key as PEM");
  }
  std::string pem = bio_contents(bio.get());
  CUSTODY_RETURN_IF_ERROR(write_key_file(path, pem));
  if (created) *created = true;
  return SigningKey(std::move(k));
}

Result<SigningKey> SigningKey::from_seed_hex(std::string_view seed_hex) {
  CUSTODY_ASSIGN_OR_RETURN(auto seed, from_hex(seed_hex, 32, "the Ed25519 seed"));
  PkeyPtr k = own(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                               reinterpret_cast<const unsigned char*>(seed.data()),
                                               seed.size()));
  OPENSSL_cleanse(seed.data(), seed.size());
  if (!k) return internal_error("OpenSSL could not make an Ed25519 key from the seed");
  return SigningKey(std::move(k));
}

std::string SigningKey::public_key_hex() const { return to_hex(raw_public_key(key_.get())); }

std::string SigningKey::public_key_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) return {};
  return bio_contents(bio.get());
}

std::string SigningKey::key_id() const { return sha256_hex(raw_public_key(key_.get())).substr(0, 16); }

std::string SigningKey::sign(std::string_view message) const {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) return {};
  unsigned char sig[kSignatureSize];
  size_t len = sizeof(sig);
  if (EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      len != kSignatureSize) {
    return {};
  }
  return to_hex(std::string_view(reinterpret_cast<const char*>(sig), len));
}

Status verify_signature(std::string_view public_key, std::string_view message,
                        std::string_view signature_hex) {
  CUSTODY_ASSIGN_OR_RETURN(auto k, parse_public_key(public_key));
  CUSTODY_ASSIGN_OR_RETURN(auto sig, from_hex(signature_hex, kSignatureSize, "the Ed25519 signature"));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) != 1) {
    return internal_error("OpenSSL could not start an Ed25519 verification");
  }
  const int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                                  sig.size(), reinterpret_cast<const unsigned char*>(message.data()),
                                  message.size());
  if (rc != 1) {
    return data_loss(
        "the Ed25519 signature does not verify: the message, the signature or the key "
        "differs from what was signed");
  }
  return Status::ok();
}

Result<std::string> key_id_of(std::string_view public_key) {
  CUSTODY_ASSIGN_OR_RETURN(auto k, parse_public_key(public_key));
  return sha256_hex(raw_public_key(k.get())).substr(0, 16);
}

Result<std::string> tree_head_message(const TreeHead& head) {
  if (head.log.empty() || head.log.size() > 256 || !printable_no_space(head.log)) {
    return invalid_argument(
        "tree head: the log name must be 1 to 256 printable ASCII characters "
        "without spaces");
  }
  if (!lowercase_hex(head.root_hex, 64)) {
    return invalid_argument("tree head: root_hex must be 64 lowercase hex digits");
  }
  std::string m(kHeadTag);
  m += '\n';
  m += head.log;
  m += '\n';
  m += std::to_string(head.size);
  m += '\n';
  m += head.root_hex;
  m += '\n';
  m += std::to_string(head.time_ms);
  return m;
}

Status sign_tree_head(const SigningKey& key, TreeHead& head) {
  CUSTODY_ASSIGN_OR_RETURN(auto m, tree_head_message(head));
  std::string sig = key.sign(m);
  if (sig.empty()) return internal_error("OpenSSL could not sign the tree head");
  head.signature_hex = std::move(sig);
  head.key_id = key.key_id();
  return Status::ok();
}

Status verify_tree_head(const TreeHead& head, std::string_view public_key) {
  CUSTODY_ASSIGN_OR_RETURN(auto id, key_id_of(public_key));
  if (head.key_id != id) {
    return invalid_argument("tree head of log " + head.log + " names key " + head.key_id +
                            ", not the key given (" + id + ")");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto m, tree_head_message(head));
  Status s = verify_signature(public_key, m, head.signature_hex);
  if (!s.is_ok()) {
    return Status(s.code(), "tree head of log " + head.log + " at size " + std::to_string(head.size) + ": " +
                                s.message());
  }
  return Status::ok();
}

}  // namespace custody
