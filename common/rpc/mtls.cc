// SPDX-License-Identifier: Apache-2.0
#include "common/rpc/mtls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <grpc/support/log.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "common/base/logging.h"
#include "common/base/status_macros.h"

namespace vmb {
namespace {

// Certificates and keys are small; anything larger is not one.
constexpr size_t kMaxPemBytes = 1 << 20;
// How often gRPC looks at the checked copies (a whole good set is swapped in
// by rename, so a look never finds a half-written one).
constexpr unsigned kCopyRefreshSeconds = 1;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using UniqueBio = std::unique_ptr<BIO, BioFree>;
using UniqueX509 = std::unique_ptr<X509, X509Free>;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "malformed";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

UniqueBio MemBio(absl::string_view text) {
  return UniqueBio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

absl::Time FromAsn1(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

CertificateInfo Describe(X509* cert) {
  CertificateInfo info;
  {
    UniqueBio out(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(out.get(), X509_get_subject_name(cert), 0,
                       XN_FLAG_RFC2253);
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    if (n > 0) info.subject.assign(data, static_cast<size_t>(n));
  }
  info.not_before = FromAsn1(X509_get0_notBefore(cert));
  info.not_after = FromAsn1(X509_get0_notAfter(cert));
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type != GEN_URI && name->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = name->d.ia5;
      std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
      (name->type == GEN_URI ? info.uris : info.dns_names)
          .push_back(std::move(value));
    }
    GENERAL_NAMES_free(names);
  }
  for (const std::string& uri : info.uris) {
    if (absl::StartsWith(uri, kHostUriPrefix) && info.host_uuid.empty()) {
      info.host_uuid = absl::AsciiStrToLower(uri.substr(kHostUriPrefix.size()));
    }
    if (absl::StartsWith(uri, kOperatorUriPrefix)) info.is_operator = true;
  }
  return info;
}

absl::StatusOr<std::string> ReadPemFile(const std::string& flag,
                                        const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " ", path, ": ", std::strerror(e)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxPemBytes) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", path, ": larger than a PEM file can be (1 MiB)"));
    }
  }
  close(fd);
  return text;
}

// Every certificate of a PEM text, in order.
std::vector<UniqueX509> ReadCertificates(absl::string_view pem) {
  std::vector<UniqueX509> out;
  UniqueBio bio = MemBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(x);
  }
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

// Writes `content` to DIR/NAME (mode 0600) through a temporary name.
absl::Status WritePrivateFile(const std::string& dir, const std::string& name,
                              absl::string_view content) {
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp");
  const std::string path = absl::StrCat(dir, "/", name);
  unlink(tmp.c_str());
  const int fd = open(
      tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat(tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat(tmp, ": ", std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(path, ": ", std::strerror(e)));
  }
  return absl::OkStatus();
}

// The client's check of the server: gRPC's hostname check, then that the
// certificate is not one the CA issued to an agent or an operator (those
// would otherwise do for a server too).
class CoordinatorVerifier final
    : public grpc::experimental::ExternalCertificateVerifier {
 public:
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    grpc::Status host;
    if (!hostname_.Verify(
            request, [](grpc::Status) {}, &host)) {
      host = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "hostname check did not complete");
    }
    if (!host.ok()) {
      *sync_status = grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          absl::StrCat("the coordinator's certificate does not name ",
                       std::string(request->target_name().data(),
                                   request->target_name().size()),
                       ": ", host.error_message()));
      return true;
    }
    for (const grpc::string_ref& uri : request->uri_names()) {
      const absl::string_view u(uri.data(), uri.size());
      if (absl::StartsWith(u, kHostUriPrefix) ||
          absl::StartsWith(u, kOperatorUriPrefix)) {
        *sync_status = grpc::Status(
            grpc::StatusCode::UNAUTHENTICATED,
            absl::StrCat("the server at ",
                         std::string(request->target_name().data(),
                                     request->target_name().size()),
                         " shows a certificate made for an agent or an "
                         "operator (",
                         u, "), not the coordinator's"));
        return true;
      }
    }
    *sync_status = grpc::Status::OK;
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {
  }

 private:
  grpc::experimental::HostNameCertificateVerifier hostname_;
};

void GrpcLogToVmbLog(gpr_log_func_args* args) {
  if (args == nullptr || args->message == nullptr) return;
  const absl::string_view message = args->message;
  if (absl::StrContains(message, "Handshake failed")) {
    // A server's side of a refused connection; gRPC does not say whose.
    VMB_LOG(WARNING) << "refused a TLS connection: " << message
                     << " (the peer showed no certificate, an expired one or "
                        "one not from --mtls-ca, or spoke plaintext)";
  } else if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    VMB_LOG(WARNING) << "grpc: " << message;
  } else {
    VMB_LOG(INFO) << "grpc: " << args->message;
  }
}

}  // namespace

bool IsLoopbackHost(absl::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  const std::string text(host);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  if (absl::StartsWith(address, "ipv4:")) address.remove_prefix(5);
  if (absl::StartsWith(address, "ipv6:")) address.remove_prefix(5);
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  return IsLoopbackHost(address.substr(0, colon));
}

absl::Status CheckTransportFlags(const MtlsFiles& files, bool plaintext,
                                 const std::vector<AddressFlag>& addresses) {
  if (plaintext) {
    if (!files.empty()) {
      return absl::InvalidArgumentError(
          "--plaintext and --mtls-* exclude each other: give the three "
          "--mtls-* files, or --plaintext on loopback");
    }
    for (const AddressFlag& a : addresses) {
      if (!IsLoopbackAddress(a.address)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--plaintext refuses ", a.flag, " ", a.address,
            ": without TLS only loopback addresses (127.0.0.0/8, ::1, "
            "localhost) are allowed, since anyone on the network path could "
            "read the XAPI session the coordinator hands out and pose as "
            "either side; use --mtls-ca, --mtls-cert and --mtls-key "
            "(deploy/gen-certs.sh makes them)"));
      }
    }
    return absl::OkStatus();
  }
  std::vector<std::string> missing;
  if (files.ca.empty()) missing.push_back("--mtls-ca");
  if (files.cert.empty()) missing.push_back("--mtls-cert");
  if (files.key.empty()) missing.push_back("--mtls-key");
  if (missing.size() == 3) {
    return absl::InvalidArgumentError(
        "mutual TLS needs --mtls-ca, --mtls-cert and --mtls-key (the site's "
        "CA and this party's certificate and key, from deploy/gen-certs.sh); "
        "--plaintext instead is allowed on loopback only");
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mutual TLS needs ", absl::StrJoin(missing, " and "),
        " too: --mtls-ca, --mtls-cert and --mtls-key go together"));
  }
  return absl::OkStatus();
}

std::string CertificateInfo::Describe() const {
  std::string out = subject.empty() ? "(no subject)" : subject;
  if (!uris.empty())
    absl::StrAppend(&out, " (", absl::StrJoin(uris, ", "), ")");
  return out;
}

absl::StatusOr<CertificateInfo> ParseCertificatePem(absl::string_view pem) {
  UniqueBio bio = MemBio(pem);
  UniqueX509 cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM certificate: ", OpenSslError()));
  }
  return Describe(cert.get());
}

absl::StatusOr<MtlsMaterial> LoadMtlsMaterial(const MtlsFiles& files,
                                              absl::Time now) {
  MtlsMaterial m;
  VMB_ASSIGN_OR_RETURN(m.ca_pem, ReadPemFile("--mtls-ca", files.ca));
  VMB_ASSIGN_OR_RETURN(m.cert_pem, ReadPemFile("--mtls-cert", files.cert));
  VMB_ASSIGN_OR_RETURN(m.key_pem, ReadPemFile("--mtls-key", files.key));
  std::vector<UniqueX509> cas = ReadCertificates(m.ca_pem);
  if (cas.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mtls-ca ", files.ca, ": holds no PEM certificate (want ca.crt)"));
  }
  std::vector<UniqueX509> chain = ReadCertificates(m.cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mtls-cert ", files.cert, ": holds no PEM certificate"));
  }
  {
    UniqueBio bio = MemBio(m.key_pem);
    std::unique_ptr<EVP_PKEY, KeyFree> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (key == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mtls-key ", files.key, ": not an unencrypted PEM private key (",
          OpenSslError(), ")"));
    }
    if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("--mtls-key ", files.key,
                       " is not the key of --mtls-cert ", files.cert));
    }
  }
  m.cert = Describe(chain.front().get());
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const UniqueX509& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].get());
    sk_X509_push(untrusted.get(), chain[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), chain.front().get(),
                          untrusted.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("certificate check: ", OpenSslError()));
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--mtls-cert ", files.cert, " (", m.cert.Describe(),
        ") does not pass against --mtls-ca ", files.ca, ": ",
        X509_verify_cert_error_string(err),
        err == X509_V_ERR_CERT_HAS_EXPIRED
            ? absl::StrCat(
                  " (not after ",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", m.cert.not_after,
                                   absl::UTCTimeZone()),
                  ")")
            : ""));
  }
  return m;
}

absl::StatusOr<CertificateInfo> PeerOf(const grpc::AuthContext& context) {
  const std::vector<grpc::string_ref> pems =
      context.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty()) {
    return absl::UnauthenticatedError("the call carries no client certificate");
  }
  const std::string pem(pems.front().data(), pems.front().size());
  // A connection's calls all carry its certificate: parse it once.
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new absl::flat_hash_map<std::string, CertificateInfo>();
  {
    absl::MutexLock lock(&mu);
    auto it = cache->find(pem);
    if (it != cache->end()) return it->second;
  }
  VMB_ASSIGN_OR_RETURN(CertificateInfo info, ParseCertificatePem(pem));
  absl::MutexLock lock(&mu);
  if (cache->size() >= 1024) cache->clear();
  cache->emplace(pem, info);
  return info;
}

MtlsCredentials::MtlsCredentials(MtlsFiles files, std::string work_dir)
    : files_(std::move(files)), work_dir_(std::move(work_dir)) {}

MtlsCredentials::~MtlsCredentials() = default;

absl::StatusOr<std::unique_ptr<MtlsCredentials>> MtlsCredentials::Create(
    const MtlsFiles& files, const std::string& work_dir) {
  VMB_ASSIGN_OR_RETURN(MtlsMaterial material,
                       LoadMtlsMaterial(files, absl::Now()));
  std::unique_ptr<MtlsCredentials> c(new MtlsCredentials(files, work_dir));
  if (!work_dir.empty()) {
    if (mkdir(work_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::UnavailableError(
          absl::StrCat(work_dir, ": ", std::strerror(errno)));
    }
    chmod(work_dir.c_str(), 0700);
  }
  absl::MutexLock lock(&c->mu_);
  VMB_RETURN_IF_ERROR(c->Install(material));
  c->stamp_ = c->Stamp();
  return c;
}

absl::Status MtlsCredentials::Install(const MtlsMaterial& material) {
  if (!work_dir_.empty()) {
    // The key before the certificate: a look between the two renames finds
    // a pair that does not match, which gRPC skips until the next look.
    VMB_RETURN_IF_ERROR(WritePrivateFile(work_dir_, "ca.pem", material.ca_pem));
    VMB_RETURN_IF_ERROR(
        WritePrivateFile(work_dir_, "key.pem", material.key_pem));
    VMB_RETURN_IF_ERROR(
        WritePrivateFile(work_dir_, "cert.pem", material.cert_pem));
  }
  material_ = material;
  return absl::OkStatus();
}

std::string MtlsCredentials::Stamp() const {
  std::string out;
  for (const std::string* path : {&files_.ca, &files_.cert, &files_.key}) {
    struct stat st;
    if (stat(path->c_str(), &st) != 0) {
      absl::StrAppend(&out, "missing;");
      continue;
    }
    absl::StrAppend(&out, st.st_size, ":", st.st_mtim.tv_sec, ".",
                    st.st_mtim.tv_nsec, ":", st.st_ino, ";");
  }
  return out;
}

static std::shared_ptr<grpc::experimental::CertificateProviderInterface>
Provider(const std::string& work_dir, const MtlsMaterial& material) {
  if (work_dir.empty()) {
    return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        material.ca_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{
                             {material.key_pem, material.cert_pem}});
  }
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      work_dir + "/key.pem", work_dir + "/cert.pem", work_dir + "/ca.pem",
      kCopyRefreshSeconds);
}

std::shared_ptr<grpc::ServerCredentials> MtlsCredentials::ServerCredentials() {
  absl::MutexLock lock(&mu_);
  grpc::experimental::TlsServerCredentialsOptions options(
      Provider(work_dir_, material_));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials>
MtlsCredentials::ChannelCredentials() {
  absl::MutexLock lock(&mu_);
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(work_dir_, material_));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<
          CoordinatorVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

absl::Status MtlsCredentials::Reload() {
  absl::StatusOr<MtlsMaterial> material = LoadMtlsMaterial(files_, absl::Now());
  absl::MutexLock lock(&mu_);
  stamp_ = Stamp();
  if (!material.ok()) {
    VMB_LOG(ERROR) << "certificates not reloaded, the ones in use stay ("
                   << material_.cert.Describe()
                   << "): " << material.status().message();
    return material.status();
  }
  if (material->ca_pem == material_.ca_pem &&
      material->cert_pem == material_.cert_pem &&
      material->key_pem == material_.key_pem) {
    VMB_LOG(INFO) << "certificates unchanged: " << material_.cert.Describe();
    return absl::OkStatus();
  }
  if (work_dir_.empty()) {
    return absl::FailedPreconditionError(
        "these credentials were made without a folder to reload through");
  }
  VMB_RETURN_IF_ERROR(Install(*material));
  VMB_LOG(INFO) << "certificates reloaded: " << material_.cert.Describe()
                << ", valid until "
                << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                    material_.cert.not_after,
                                    absl::UTCTimeZone())
                << "; new connections use them";
  return absl::OkStatus();
}

absl::Status MtlsCredentials::ReloadIfChanged() {
  {
    absl::MutexLock lock(&mu_);
    if (Stamp() == stamp_) return absl::OkStatus();
  }
  return Reload();
}

CertificateInfo MtlsCredentials::current() const {
  absl::MutexLock lock(&mu_);
  return material_.cert;
}

std::string ExpiryWarning(absl::string_view whose, absl::string_view cert,
                          absl::Time not_after, absl::Time now) {
  if (not_after - now >= kCertificateExpiryWarning) return "";
  const int64_t days = absl::ToInt64Hours(not_after - now) / 24;
  return absl::StrCat(
      "the certificate of ", whose,
      not_after < now ? " has expired"
                      : absl::StrCat(" expires in ", days, " days"),
      " (", cert, ", ",
      absl::FormatTime("%Y-%m-%d", not_after, absl::UTCTimeZone()),
      "): renew it with deploy/gen-certs.sh (docs/security.md)");
}

void LogCertificateValidity(absl::string_view whose,
                            const CertificateInfo& cert) {
  const absl::Duration left = cert.not_after - absl::Now();
  const std::string line = absl::StrCat(
      whose, " certificate: ", cert.Describe(), ", valid until ",
      absl::FormatTime("%Y-%m-%d", cert.not_after, absl::UTCTimeZone()),
      " (in ", absl::ToInt64Hours(left) / 24, " days)");
  if (left < kCertificateExpiryWarning) {
    VMB_LOG(WARNING) << line << ": renew it (docs/security.md)";
  } else {
    VMB_LOG(INFO) << line;
  }
}

void ServeUntilStopped(const absl::Notification& stop,
                       const std::atomic<int>* reloads, MtlsCredentials* mtls,
                       absl::string_view whose) {
  int reloads_seen = reloads != nullptr ? reloads->load() : 0;
  absl::Time next_look = absl::Now() + absl::Minutes(1);
  while (!stop.WaitForNotificationWithTimeout(absl::Seconds(1))) {
    if (mtls == nullptr) continue;
    const std::string before = mtls->current().Describe();
    const int requested = reloads != nullptr ? reloads->load() : 0;
    if (requested != reloads_seen) {
      reloads_seen = requested;
      VMB_LOG(INFO) << "SIGHUP: reading the --mtls-* files again";
      (void)mtls->Reload();  // logs either way
    } else if (absl::Now() >= next_look) {
      next_look = absl::Now() + absl::Minutes(1);
      (void)mtls->ReloadIfChanged();
    }
    if (mtls->current().Describe() != before) {
      LogCertificateValidity(whose, mtls->current());
    }
  }
}

void RouteGrpcLogsToVmbLog() { gpr_set_log_function(GrpcLogToVmbLog); }

}  // namespace vmb
