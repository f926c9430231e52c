// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/sim_runner.h"

#include <stdio.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include <libxml/parser.h>

#include "common/base/logging.h"
#include "tests/xapi_sim/fixture.h"
#include "tests/xapi_sim/sim_server.h"

namespace vmb::sim {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " ", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

absl::Status RunSimulator(const SimOptions& options,
                          const sigset_t& stop_signals) {
  if (options.print_demo_fixture) {
    std::fputs(DemoFixtureJson().c_str(), stdout);
    return absl::OkStatus();
  }
  if (options.ready_file.empty())
    return absl::InvalidArgumentError("--ready-file is required");
  Fixture fixture;
  if (options.fixture_path.empty()) {
    fixture = DemoFixture();
  } else {
    absl::StatusOr<std::string> json =
        ReadFile(options.fixture_path, "fixture");
    if (!json.ok()) return json.status();
    absl::StatusOr<Fixture> parsed = ParseFixture(*json);
    if (!parsed.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(options.fixture_path, ": ", parsed.status().message()));
    fixture = *std::move(parsed);
  }
  xmlInitParser();  // once, before the server threads parse
  absl::StatusOr<std::unique_ptr<SimPool>> pool = SimPool::Create(fixture);
  if (!pool.ok()) return pool.status();
  SimServer::Options server_options;
  server_options.port = options.port;
  if (!options.tls_cert_dir.empty()) {
    if (!options.tls_cert_path.empty() || !options.tls_key_path.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert-dir cannot be combined with --tls-cert or --tls-key");
    }
    for (const HostInfo& h : (*pool)->hosts()) {
      if (h.name.find('/') != std::string::npos || h.name == "." ||
          h.name == "..") {
        return absl::InvalidArgumentError(absl::StrCat(
            "--tls-cert-dir: host name \"", h.name, "\" is not a file name"));
      }
      const std::string base = absl::StrCat(options.tls_cert_dir, "/", h.name);
      absl::StatusOr<std::string> cert =
          ReadFile(base + ".pem", "--tls-cert-dir certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key =
          ReadFile(base + ".key", "--tls-cert-dir key");
      if (!key.ok()) return key.status();
      server_options.host_tls[h.name] = {*cert, *key};
    }
  } else if (!options.tls_cert_path.empty() || !options.tls_key_path.empty()) {
    absl::StatusOr<std::string> cert =
        ReadFile(options.tls_cert_path, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key =
        ReadFile(options.tls_key_path, "--tls-key");
    if (!key.ok()) return key.status();
    server_options.tls_cert_pem = *cert;
    server_options.tls_key_pem = *key;
  }
  absl::StatusOr<std::unique_ptr<SimServer>> server =
      SimServer::Start(pool->get(), server_options);
  if (!server.ok()) return server.status();

  std::string master;
  std::string hosts;
  for (const HostInfo& h : (*pool)->hosts()) {
    if (h.master) master = (*server)->UrlOf(h);
    absl::StrAppend(&hosts, hosts.empty() ? "" : ", ", JsonString(h.name), ": ",
                    JsonString((*server)->UrlOf(h)));
  }
  const std::string ready = absl::StrCat(
      "{\"master\": ", JsonString(master), ", \"hosts\": {", hosts,
      "}, \"username\": ", JsonString((*pool)->credentials().username()),
      ", \"password\": ", JsonString((*pool)->credentials().password()),
      ", \"port\": ", (*server)->port(), "}\n");
  const std::string tmp = options.ready_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << ready;
    if (!out)
      return absl::InvalidArgumentError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), options.ready_file.c_str()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", options.ready_file));
  }
  VMB_LOG(INFO) << "xapi-sim: " << (*pool)->hosts().size() << " hosts on port "
                << (*server)->port() << ", master " << master;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  VMB_LOG(INFO) << "xapi-sim: stopping on signal " << sig;
  server->reset();
  return absl::OkStatus();
}

}  // namespace vmb::sim
