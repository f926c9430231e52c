// SPDX-License-Identifier: Apache-2.0
#pragma once

// A certificate authority for tests, made with OpenSSL in a folder: what
// deploy/gen-certs.sh makes, plus what it never makes (expired
// certificates, certificates of another CA, odd SANs), so the refusals can
// be tested.
//
//   ASSIGN_OR_RETURN(TestPki pki, TestPki::Create(dir + "/pki", "site"));
//   ASSIGN_OR_RETURN(TestPki::Issued coordinator,
//                    pki.Issue("coordinator",
//                              ServerLeaf({"localhost"}, {"127.0.0.1"})));

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vmb::testing {

class TestPki {
 public:
  struct Leaf {
    std::vector<std::string> uris;  // URI SANs
    std::vector<std::string> dns;   // DNS SANs
    std::vector<std::string> ips;   // IP SANs
    bool server = false;            // serverAuth (else clientAuth)
    // Validity: from now + not_before to now + not_after.
    absl::Duration not_before = -absl::Hours(1);
    absl::Duration not_after = absl::Hours(24 * 365);
  };
  struct Issued {
    std::string cert;  // DIR/NAME.crt
    std::string key;   // DIR/NAME.key (0600)
  };

  // A new CA (EC P-256) in DIR (made when missing): DIR/NAME-ca.crt and
  // its key. Errors: INTERNAL with OpenSSL's reason.
  static absl::StatusOr<TestPki> Create(const std::string& dir,
                                        const std::string& name);

  // The CA of existing files (deploy/gen-certs.sh's ca.crt and ca.key);
  // certificates are written to `dir`.
  static TestPki Adopt(const std::string& dir, const std::string& ca_cert,
                       const std::string& ca_key);

  // A certificate for CN=`name` signed by this CA.
  absl::StatusOr<Issued> Issue(const std::string& name, const Leaf& leaf) const;

  const std::string& ca_cert() const { return ca_cert_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string ca_cert_;
  std::string ca_key_;
};

// A server's certificate (serverAuth) naming `dns` and `ips`.
TestPki::Leaf ServerLeaf(std::vector<std::string> dns,
                         std::vector<std::string> ips,
                         std::vector<std::string> uris = {});
// A client's certificate (clientAuth) with these URI and DNS SANs.
TestPki::Leaf ClientLeaf(std::vector<std::string> uris,
                         std::vector<std::string> dns = {});
// `leaf`, valid from now + not_before to now + not_after.
TestPki::Leaf WithValidity(TestPki::Leaf leaf, absl::Duration not_before,
                           absl::Duration not_after);

}  // namespace vmb::testing
