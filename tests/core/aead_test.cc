#include "core/aead.h"

#include <gtest/gtest.h>

#include "core/hex.h"

namespace custody {
namespace {

std::string unhex(std::string_view h) { return from_hex(h).value(); }

// "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, 2005, Test Case 16
// (AES-256, 60-byte plaintext, 20 bytes of additional data); the same vector is in
// OpenSSL's evptests and was checked here against python3-cryptography's AESGCM.
TEST(AeadTest, OpensTheGcmSpecsTestCase16) {
  auto key = AeadKey::from_hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  ASSERT_TRUE(key.is_ok());
  const std::string plain = unhex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de"
      "657ba637b39");
  const std::string aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string sealed = unhex(
      "cafebabefacedbaddecaf888"
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7"
      "a0abcc9f662"
      "76fc6ece0f4e1768cddf8853bb2d551b");
  auto opened = open(key.value(), sealed, aad);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  EXPECT_EQ(std::string(opened->begin(), opened->end()), plain);
}

TEST(AeadTest, RoundTripsAndRefusesAlteredBytesWrongKeyAndWrongContext) {
  auto key = AeadKey::random().value();
  auto other = AeadKey::random().value();
  const std::string plain = "the weights of layer 1";
  auto sealed = seal(key, plain, "job-1 attempt 0 rank 1");
  ASSERT_TRUE(sealed.is_ok());
  EXPECT_EQ(sealed->size(), plain.size() + kAeadOverhead);
  const std::string bytes(sealed->begin(), sealed->end());
  EXPECT_EQ(bytes.find(plain), std::string::npos);  // not in clear
  auto opened = open(key, bytes, "job-1 attempt 0 rank 1");
  ASSERT_TRUE(opened.is_ok());
  EXPECT_EQ(std::string(opened->begin(), opened->end()), plain);

  EXPECT_EQ(open(other, bytes, "job-1 attempt 0 rank 1").status().code(), ErrorCode::kDataLoss);
  EXPECT_EQ(open(key, bytes, "job-1 attempt 0 rank 2").status().code(), ErrorCode::kDataLoss);
  for (size_t i : {size_t(0), size_t(13), bytes.size() - 1}) {  // nonce, ciphertext, tag
    std::string altered = bytes;
    altered[i] ^= 1;
    EXPECT_EQ(open(key, altered, "job-1 attempt 0 rank 1").status().code(), ErrorCode::kDataLoss) << i;
  }
  EXPECT_EQ(open(key, bytes.substr(0, kAeadOverhead - 1), "").status().code(), ErrorCode::kInvalidArgument);
  // Two seals of the same bytes differ (fresh nonces), and both open.
  auto again = seal(key, plain, "job-1 attempt 0 rank 1").value();
  EXPECT_NE(std::string(again.begin(), again.end()), bytes);
}

TEST(AeadTest, EmptyPlaintextStillAuthenticates) {
  auto key = AeadKey::random().value();
  auto sealed = seal(key, "", "pull").value();
  EXPECT_EQ(sealed.size(), kAeadOverhead);
  EXPECT_TRUE(open(key, sealed.data(), sealed.size(), "pull").is_ok());
  EXPECT_FALSE(open(key, sealed.data(), sealed.size(), "push").is_ok());
}

// HKDF-SHA256 (RFC 5869) with no salt, the 32 bytes 00..1f as key and "rank 3" as info:
// the expected key was computed independently with Python's hmac module (Extract with a
// zero salt, one Expand block).
TEST(AeadTest, DerivesKeysByHkdfSha256) {
  auto base = AeadKey::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").value();
  auto derived = base.derive("rank 3");
  ASSERT_TRUE(derived.is_ok());
  EXPECT_EQ(derived->hex(), "ab30adb78f902ff0958a8a2b1b5f398b763a033ffb9d0350e952a866d9ab5563");
  EXPECT_NE(base.derive("rank 4")->hex(), derived->hex());
  EXPECT_EQ(base.fingerprint().size(), 16u);
  EXPECT_EQ(base.fingerprint().find(base.hex().substr(0, 16)), std::string::npos);
}

TEST(AeadTest, RefusesKeysOfTheWrongLength) {
  EXPECT_EQ(AeadKey::from_hex("00ff").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(AeadKey::from_bytes(std::string(31, 'k')).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(AeadKey::from_hex(std::string(64, 'g')).is_ok());
}

}  // namespace
}  // namespace custody
