// SPDX-License-Identifier: Apache-2.0
#include "coordinator/cli.h"

#include <iterator>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/curl_xml_rpc_transport.h"
#include "common/password_file.h"
#include "common/xml_rpc_xen_api_client.h"
#include "coordinator/pool_inventory.h"

namespace vmb::coordinator {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 2;

struct GlobalFlags {
  std::string xapi_url = "http://localhost";
  std::string user = "root";
  TlsOptions tls;
};

int Fail(const CliStreams& io, const std::string& message) {
  *io.err << "vmbackup: error: " << message << "\n";
  return kExitError;
}

int Inventory(const GlobalFlags& flags, const std::vector<std::string>& args,
              const CliStreams& io) {
  if (args.size() != 1) {
    return Fail(io,
                "usage: vmbackup [FLAGS] inventory <password|password-file|->");
  }
  std::string stdin_text;
  if (args[0] == "-") {
    stdin_text.assign(std::istreambuf_iterator<char>(*io.in),
                      std::istreambuf_iterator<char>());
  }
  absl::StatusOr<PasswordSource> password =
      ResolvePasswordArgument(args[0], stdin_text);
  if (!password.ok()) return Fail(io, std::string(password.status().message()));
  if (password->from_command_line) {
    *io.err << "vmbackup: warning: a password on the command line is visible "
               "in the process "
               "list; use a password file (vmbackup <password> "
               "create-password-file=FILE) or "
               "'-' to read it from standard input\n";
  }
  XmlRpcXenApiClient::Options options;
  options.url = flags.xapi_url;
  options.username = flags.user;
  options.password = password->password;
  CurlXmlRpcTransport::Options transport;
  transport.tls = flags.tls;
  XmlRpcXenApiClient client(options,
                            std::make_unique<CurlXmlRpcTransport>(transport));
  if (absl::Status s = client.Login(); !s.ok()) {
    return Fail(io, absl::StrCat(s.message(), " (password from ",
                                 password->origin, ")"));
  }
  absl::StatusOr<PoolInventory> inventory = LoadPoolInventory(client);
  if (!inventory.ok())
    return Fail(io, std::string(inventory.status().message()));
  *io.out << FormatInventory(*inventory);
  return kExitOk;
}

}  // namespace

std::string CliUsage() {
  return R"(usage:
  vmbackup [FLAGS] inventory <password|password-file|->
      Log in to the pool and list its hosts, storage and VMs.
  vmbackup help
      This text.

<password|password-file|->:
  the path of an existing VmBackup password file (the password base64-encoded:
  obscured, not encrypted), or '-' to read the password from standard input,
  or the password itself (visible in the process list: avoid).

FLAGS (before the command):
  --xapi-url URL          pool master (or any member: vmbackup follows
                          HOST_IS_SLAVE to the master); default http://localhost
  --user NAME             XenAPI user name; default root
  --tls-ca FILE           for https: trust the certificate(s) in FILE
  --tls-fingerprint HEX   for https: accept exactly the certificate whose
                          SHA-256 fingerprint is HEX (colons allowed)
  --tls-insecure          for https: accept any certificate (tests only)

Exit codes: 0 success, 2 error or could not run.
)";
}

int RunCli(const std::vector<std::string>& args, const CliStreams& io) {
  GlobalFlags flags;
  size_t i = 0;
  for (; i < args.size() && absl::StartsWith(args[i], "--"); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    if (name == "--help") {
      *io.out << CliUsage();
      return kExitOk;
    }
    if (name == "--tls-insecure") {
      if (has_value) return Fail(io, "--tls-insecure takes no value");
      flags.tls.insecure = true;
      continue;
    }
    if (name != "--xapi-url" && name != "--user" && name != "--tls-ca" &&
        name != "--tls-fingerprint") {
      return Fail(io,
                  absl::StrCat("unknown flag ", name, " (see vmbackup help)"));
    }
    if (!take_value() || value.empty())
      return Fail(io, absl::StrCat(name, " needs a value"));
    if (name == "--xapi-url") {
      if (!absl::StartsWith(value, "http://") &&
          !absl::StartsWith(value, "https://")) {
        return Fail(io,
                    absl::StrCat(
                        "--xapi-url must start with http:// or https://, not '",
                        value, "'"));
      }
      flags.xapi_url = value;
    } else if (name == "--user") {
      flags.user = value;
    } else if (name == "--tls-ca") {
      flags.tls.ca_file = value;
    } else {
      std::string normalised;
      if (absl::Status s = NormaliseSha256Fingerprint(value, &normalised);
          !s.ok()) {
        return Fail(io, absl::StrCat("--tls-fingerprint: ", s.message()));
      }
      flags.tls.pinned_sha256 = value;
    }
  }
  if (i >= args.size()) {
    *io.err << CliUsage();
    return kExitError;
  }
  const std::string command = args[i];
  const std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1,
                                      args.end());
  if (command == "help") {
    *io.out << CliUsage();
    return kExitOk;
  }
  if (command == "inventory") return Inventory(flags, rest, io);
  return Fail(io, absl::StrCat("unknown command '", command,
                               "'; this version knows: inventory, help"));
}

}  // namespace vmb::coordinator
