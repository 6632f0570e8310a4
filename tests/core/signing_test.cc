#include "core/signing.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "core/hex.h"

namespace custody {
namespace {

// RFC 8032 §7.1, "Test Vectors for Ed25519": TEST 1, TEST 2 and TEST 3.
struct Rfc8032Vector {
  const char* name;
  const char* secret_key;
  const char* public_key;
  const char* message;
  const char* signature;
};

const Rfc8032Vector kRfc8032[] = {
    {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f"
     "0595bbe24655141438e7a100b"},
    {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2ea"
     "eb4302aeeb00d291612bb0c00"},
    {"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e"
     "9716ed28dc027beceea1ec40a"},
};

std::string bytes(const char* hex) { return from_hex(hex).value(); }

std::string flip_hex_bit(const std::string& hex, size_t bit) {
  std::string raw = from_hex(hex).value();
  raw[bit / 8] = static_cast<char>(raw[bit / 8] ^ (1 << (bit % 8)));
  return to_hex(raw);
}

// A fresh directory per test, removed with what is in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "signing_test_XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

unsigned mode_of(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<unsigned>(st.st_mode & 07777) : 0xffffu;
}

SigningKey test_key(size_t i) { return SigningKey::from_seed_hex(kRfc8032[i].secret_key).value(); }

TEST(SigningTest, Rfc8032TestVectorsGiveThePublishedKeysAndSignatures) {
  for (const auto& v : kRfc8032) {
    SCOPED_TRACE(v.name);
    auto key = SigningKey::from_seed_hex(v.secret_key);
    ASSERT_TRUE(key.is_ok()) << key.status().to_string();
    EXPECT_EQ(key->public_key_hex(), v.public_key);
    EXPECT_EQ(key->sign(bytes(v.message)), v.signature);
    Status by_hex = verify_signature(v.public_key, bytes(v.message), v.signature);
    EXPECT_TRUE(by_hex.is_ok()) << by_hex.to_string();
    Status by_pem = verify_signature(key->public_key_pem(), bytes(v.message), v.signature);
    EXPECT_TRUE(by_pem.is_ok()) << by_pem.to_string();
  }
}

TEST(SigningTest, FlippingAnyBitOfTheMessageOrSignatureFailsVerification) {
  const SigningKey key = test_key(2);
  const std::string message = "custody tree head";
  const std::string sig = key.sign(message);
  ASSERT_TRUE(verify_signature(key.public_key_hex(), message, sig).is_ok());
  for (size_t bit = 0; bit < 8 * message.size(); ++bit) {
    std::string m = message;
    m[bit / 8] = static_cast<char>(m[bit / 8] ^ (1 << (bit % 8)));
    EXPECT_EQ(verify_signature(key.public_key_hex(), m, sig).code(), ErrorCode::kDataLoss)
        << "message bit " << bit;
  }
  for (size_t bit = 0; bit < 8 * 64; ++bit) {
    EXPECT_EQ(verify_signature(key.public_key_hex(), message, flip_hex_bit(sig, bit)).code(),
              ErrorCode::kDataLoss)
        << "signature bit " << bit;
  }
  EXPECT_EQ(verify_signature(test_key(0).public_key_hex(), message, sig).code(), ErrorCode::kDataLoss);
}

TEST(SigningTest, VerifyRefusesMalformedKeysAndSignaturesByName) {
  const SigningKey key = test_key(0);
  const std::string sig = key.sign("m");
  auto invalid = [](Status s) { return s.code() == ErrorCode::kInvalidArgument; };
  EXPECT_TRUE(invalid(verify_signature(key.public_key_hex(), "m", sig.substr(2))));
  EXPECT_TRUE(invalid(verify_signature(key.public_key_hex(), "m", sig + "00")));
  EXPECT_TRUE(invalid(verify_signature(key.public_key_hex(), "m", "")));
  EXPECT_TRUE(invalid(verify_signature(key.public_key_hex(), "m", std::string(128, 'z'))));
  EXPECT_TRUE(invalid(verify_signature(key.public_key_hex().substr(2), "m", sig)));
  EXPECT_TRUE(invalid(verify_signature("", "m", sig)));
  EXPECT_TRUE(invalid(verify_signature("not a key", "m", sig)));
  EXPECT_TRUE(
      invalid(verify_signature("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n", "m", sig)));
  Status s = verify_signature(key.public_key_hex(), "m", sig.substr(2));
  EXPECT_NE(s.message().find("signature"), std::string::npos) << s.message();
}

TEST(SigningTest, LoadOrCreateMakesAPrivateFileAndReloadsTheSameKey) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/log.key";
  bool created = false;
  auto first = SigningKey::load_or_create(path, &created);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_TRUE(created);
  EXPECT_EQ(mode_of(path), 0600u);
  std::ifstream in(path);
  std::string head;
  std::getline(in, head);
  EXPECT_EQ(head, "-----BEGIN PRIVATE KEY-----");  // PKCS#8

  auto again = SigningKey::load_or_create(path, &created);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_FALSE(created);
  EXPECT_EQ(again->public_key_hex(), first->public_key_hex());
  EXPECT_EQ(again->key_id(), first->key_id());
  EXPECT_EQ(again->sign("x"), first->sign("x"));
  EXPECT_TRUE(verify_signature(first->public_key_pem(), "x", again->sign("x")).is_ok());
  // No temporary file is left beside the key.
  EXPECT_EQ(std::system(("test \"$(ls -A '" + dir.path() + "')\" = log.key").c_str()), 0);

  // A second path gets a different key.
  auto other = SigningKey::load_or_create(dir.path() + "/other.key", &created);
  ASSERT_TRUE(other.is_ok());
  EXPECT_TRUE(created);
  EXPECT_NE(other->public_key_hex(), first->public_key_hex());
}

TEST(SigningTest, TheOpensslCommandReadsTheKeyFile) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl command";
  TempDir dir;
  const std::string path = dir.path() + "/log.key";
  auto key = SigningKey::load_or_create(path);
  ASSERT_TRUE(key.is_ok()) << key.status().to_string();
  FILE* out = ::popen(("openssl pkey -in '" + path + "' -pubout 2>/dev/null").c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string pem;
  char buf[256];
  while (size_t got = std::fread(buf, 1, sizeof(buf), out)) pem.append(buf, got);
  EXPECT_EQ(::pclose(out), 0);
  EXPECT_EQ(pem, key->public_key_pem());
}

TEST(SigningTest, AKeyFileOthersMayReadIsRefusedWithTheFix) {
  TempDir dir;
  const std::string path = dir.path() + "/log.key";
  ASSERT_TRUE(SigningKey::load_or_create(path).is_ok());
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto key = SigningKey::load_or_create(path);
    EXPECT_EQ(key.status().code(), ErrorCode::kFailedPrecondition) << std::oct << mode;
    EXPECT_NE(key.status().message().find("chmod 600 " + path), std::string::npos) << key.status().message();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(SigningKey::load_or_create(path).is_ok());
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(SigningKey::load_or_create(path).is_ok());
}

TEST(SigningTest, AFileThatIsNotAKeyOrCannotBeMadeIsNamed) {
  TempDir dir;
  const std::string garbage = dir.path() + "/garbage.key";
  { std::ofstream(garbage) << "not a key\n"; }
  ASSERT_EQ(::chmod(garbage.c_str(), 0600), 0);
  auto key = SigningKey::load_or_create(garbage);
  EXPECT_EQ(key.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(key.status().message().find(garbage), std::string::npos);

  const std::string missing_dir = dir.path() + "/no/such/dir/log.key";
  EXPECT_EQ(SigningKey::load_or_create(missing_dir).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(SigningKey::load_or_create(dir.path()).status().code(), ErrorCode::kFailedPrecondition);

  EXPECT_EQ(SigningKey::from_seed_hex("00").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SigningKey::from_seed_hex(std::string(64, 'x')).status().code(), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Tree heads

TreeHead sample_head() {
  TreeHead h;
  h.log = "lineage";
  h.size = 8;
  h.root_hex = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";
  h.time_ms = 1700000000123;
  return h;
}

TEST(SigningTest, TheTreeHeadMessageIsExactlyTheDocumentedBytes) {
  EXPECT_EQ(tree_head_message(sample_head()).value(),
            "custody-tree-head-v1\nlineage\n8\n"
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328\n1700000000123");
  TreeHead negative = sample_head();
  negative.time_ms = -5;
  EXPECT_EQ(tree_head_message(negative).value().substr(tree_head_message(negative).value().rfind('\n')),
            "\n-5");
}

TEST(SigningTest, ASignedTreeHeadVerifiesAndAnyChangedFieldFails) {
  const SigningKey key = test_key(1);
  TreeHead head = sample_head();
  ASSERT_TRUE(sign_tree_head(key, head).is_ok());
  EXPECT_EQ(head.key_id, key.key_id());
  EXPECT_EQ(head.key_id, key_id_of(key.public_key_pem()).value());
  EXPECT_EQ(head.key_id.size(), 16u);
  EXPECT_TRUE(verify_tree_head(head, key.public_key_hex()).is_ok());
  EXPECT_TRUE(verify_tree_head(head, key.public_key_pem()).is_ok());

  auto changed = [&](auto edit) {
    TreeHead h = head;
    edit(h);
    return verify_tree_head(h, key.public_key_hex()).code();
  };
  EXPECT_EQ(changed([](TreeHead& h) { h.log = "usage"; }), ErrorCode::kDataLoss);
  EXPECT_EQ(changed([](TreeHead& h) { h.size = 9; }), ErrorCode::kDataLoss);
  EXPECT_EQ(changed([](TreeHead& h) { h.root_hex[0] = '4'; }), ErrorCode::kDataLoss);
  EXPECT_EQ(changed([](TreeHead& h) { h.time_ms += 1; }), ErrorCode::kDataLoss);
  EXPECT_EQ(changed([](TreeHead& h) { h.signature_hex = flip_hex_bit(h.signature_hex, 100); }),
            ErrorCode::kDataLoss);
  EXPECT_EQ(changed([](TreeHead& h) { h.signature_hex.clear(); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(changed([](TreeHead& h) { h.key_id = "0000000000000000"; }), ErrorCode::kInvalidArgument);

  // Another key: its id does not match; forging the id does not help.
  const SigningKey other = test_key(2);
  EXPECT_EQ(verify_tree_head(head, other.public_key_hex()).code(), ErrorCode::kInvalidArgument);
  TreeHead forged = head;
  forged.key_id = other.key_id();
  EXPECT_EQ(verify_tree_head(forged, other.public_key_hex()).code(), ErrorCode::kDataLoss);
}

TEST(SigningTest, TreeHeadFieldsOutsideTheirCanonicalFormAreRefused) {
  const SigningKey key = test_key(0);
  auto refused = [&](auto edit) {
    TreeHead h = sample_head();
    edit(h);
    return sign_tree_head(key, h).code() == ErrorCode::kInvalidArgument && h.signature_hex.empty();
  };
  EXPECT_TRUE(refused([](TreeHead& h) { h.log = ""; }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.log = "a\nb"; }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.log = "two words"; }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.log = std::string(257, 'a'); }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.root_hex = h.root_hex.substr(1); }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.root_hex[0] = 'A'; }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.root_hex[0] = 'g'; }));
  EXPECT_TRUE(refused([](TreeHead& h) { h.root_hex += "\n"; }));
}

}  // namespace
}  // namespace custody
