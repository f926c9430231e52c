// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/test_pki.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace vmb::testing {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

absl::Status SslError(const std::string& what) {
  char buf[256] = "?";
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, ": ", buf));
}

absl::StatusOr<Key> NewKey() {
  Key key(EVP_EC_gen("P-256"));
  if (key == nullptr) return SslError("EC key");
  return key;
}

absl::Status WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat(path, ": fopen"));
  const int ok =
      cert != nullptr
          ? PEM_write_X509(f, cert)
          : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  if (ok != 1) return SslError(path);
  if (cert == nullptr) chmod(path.c_str(), 0600);
  return absl::OkStatus();
}

absl::Status AddExt(X509* cert, X509* issuer, int nid,
                    const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return SslError(absl::StrCat("extension ", value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

// An unsigned certificate for `name` with `key`, issued by `issuer` (or
// by itself when null).
absl::StatusOr<Cert> MakeCert(const std::string& name, EVP_PKEY* key,
                              X509* issuer, absl::Duration not_before,
                              absl::Duration not_after) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()),
                  absl::ToInt64Seconds(not_before));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                  absl::ToInt64Seconds(not_after));
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      subject, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(
      cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject);
  return cert;
}

}  // namespace

absl::StatusOr<TestPki> TestPki::Create(const std::string& dir,
                                        const std::string& name) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat(dir, ": mkdir"));
  }
  absl::StatusOr<Key> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Cert> cert =
      MakeCert(absl::StrCat(name, " CA"), key->get(), nullptr, -absl::Hours(1),
               absl::Hours(24 * 3650));
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  for (const auto& [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"}}) {
    absl::Status s = AddExt(c, c, nid, value);
    if (!s.ok()) return s;
  }
  if (X509_sign(c, key->get(), EVP_sha256()) == 0) return SslError("CA sign");
  TestPki pki;
  pki.dir_ = dir;
  pki.ca_cert_ = absl::StrCat(dir, "/", name, "-ca.crt");
  pki.ca_key_ = absl::StrCat(dir, "/", name, "-ca.key");
  absl::Status s = WritePem(pki.ca_cert_, c, nullptr);
  if (s.ok()) s = WritePem(pki.ca_key_, nullptr, key->get());
  if (!s.ok()) return s;
  return pki;
}

TestPki TestPki::Adopt(const std::string& dir, const std::string& ca_cert,
                       const std::string& ca_key) {
  TestPki pki;
  pki.dir_ = dir;
  pki.ca_cert_ = ca_cert;
  pki.ca_key_ = ca_key;
  return pki;
}

absl::StatusOr<TestPki::Issued> TestPki::Issue(const std::string& name,
                                               const Leaf& leaf) const {
  FILE* f = fopen(ca_cert_.c_str(), "r");
  if (f == nullptr) return absl::InternalError(ca_cert_);
  Cert ca(PEM_read_X509(f, nullptr, nullptr, nullptr));
  fclose(f);
  f = fopen(ca_key_.c_str(), "r");
  if (f == nullptr) return absl::InternalError(ca_key_);
  Key ca_key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  fclose(f);
  if (ca == nullptr || ca_key == nullptr) return SslError("reading the CA");
  absl::StatusOr<Key> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Cert> cert =
      MakeCert(name, key->get(), ca.get(), leaf.not_before, leaf.not_after);
  if (!cert.ok()) return cert.status();
  std::vector<std::string> sans;
  for (const std::string& u : leaf.uris) sans.push_back("URI:" + u);
  for (const std::string& d : leaf.dns) sans.push_back("DNS:" + d);
  for (const std::string& i : leaf.ips) sans.push_back("IP:" + i);
  X509* c = cert->get();
  absl::Status s = AddExt(c, ca.get(), NID_basic_constraints, "CA:FALSE");
  if (s.ok())
    s = AddExt(c, ca.get(), NID_key_usage,
               "critical,digitalSignature,keyAgreement");
  if (s.ok())
    s = AddExt(c, ca.get(), NID_ext_key_usage,
               leaf.server ? "serverAuth" : "clientAuth");
  if (s.ok() && !sans.empty())
    s = AddExt(c, ca.get(), NID_subject_alt_name, absl::StrJoin(sans, ","));
  if (!s.ok()) return s;
  if (X509_sign(c, ca_key.get(), EVP_sha256()) == 0) return SslError("sign");
  Issued out;
  out.cert = absl::StrCat(dir_, "/", name, ".crt");
  out.key = absl::StrCat(dir_, "/", name, ".key");
  s = WritePem(out.cert, c, nullptr);
  if (s.ok()) s = WritePem(out.key, nullptr, key->get());
  if (!s.ok()) return s;
  return out;
}

TestPki::Leaf ServerLeaf(std::vector<std::string> dns,
                         std::vector<std::string> ips,
                         std::vector<std::string> uris) {
  TestPki::Leaf leaf;
  leaf.dns = std::move(dns);
  leaf.ips = std::move(ips);
  leaf.uris = std::move(uris);
  leaf.server = true;
  return leaf;
}

TestPki::Leaf ClientLeaf(std::vector<std::string> uris,
                         std::vector<std::string> dns) {
  TestPki::Leaf leaf;
  leaf.uris = std::move(uris);
  leaf.dns = std::move(dns);
  return leaf;
}

TestPki::Leaf WithValidity(TestPki::Leaf leaf, absl::Duration not_before,
                           absl::Duration not_after) {
  leaf.not_before = not_before;
  leaf.not_after = not_after;
  return leaf;
}

}  // namespace vmb::testing
