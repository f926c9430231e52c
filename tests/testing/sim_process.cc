// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/sim_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include <curl/curl.h>
#include <google/protobuf/util/json_util.h>

#include "common/xapi/curl_util.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "tests/testing/test_paths.h"

extern char** environ;

namespace vmb::testing {
namespace {

size_t AppendBody(char* data, size_t size, size_t n, void* userp) {
  static_cast<std::string*>(userp)->append(data, size * n);
  return size * n;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv) {
  CommandResult result;
  int pipefd[2];
  if (pipe(pipefd) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_addclose(&actions, pipefd[0]);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    result.output = absl::StrCat("cannot run ", argv[0]);
    return result;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
    result.output.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

pid_t StartCommand(const std::vector<std::string>& argv,
                   const std::string& log_path) {
  return Spawn(argv, log_path);
}

absl::StatusOr<std::unique_ptr<SimProcess>> SimProcess::Start(
    const Options& options) {
  std::unique_ptr<SimProcess> sim(new SimProcess());
  sim->dir_ = MakeTempDir("xapi-sim");
  sim->tls_ = !options.tls_cert_path.empty();
  const std::string ready = sim->dir_ + "/ready.json";
  std::vector<std::string> argv = {BinDir() + "/xapi-sim",
                                   "--ready_file=" + ready, "--port=0"};
  if (!options.fixture_json.empty()) {
    const std::string fixture = sim->dir_ + "/fixture.json";
    std::ofstream(fixture) << options.fixture_json;
    argv.push_back("--fixture=" + fixture);
  }
  if (sim->tls_) {
    argv.push_back("--tls_cert=" + options.tls_cert_path);
    argv.push_back("--tls_key=" + options.tls_key_path);
  }
  if (options.per_host_tls) {
    absl::StatusOr<std::string> certs =
        sim->MakeHostCerts(options.fixture_json);
    if (!certs.ok()) return certs.status();
    argv.push_back("--tls_cert_dir=" + *certs);
    sim->tls_ = true;
  }
  sim->pid_ = Spawn(argv, sim->dir_ + "/sim.log");
  if (sim->pid_ < 0) return absl::InternalError("cannot spawn xapi-sim");
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    std::ifstream in(ready);
    if (in) {
      std::stringstream s;
      s << in.rdbuf();
      google::protobuf::util::JsonParseOptions o;
      o.ignore_unknown_fields = true;
      if (google::protobuf::util::JsonStringToMessage(s.str(), &sim->ready_, o)
              .ok())
        break;
    }
    int status = 0;
    if (waitpid(sim->pid_, &status, WNOHANG) == sim->pid_) {
      sim->pid_ = -1;
      return absl::InternalError(absl::StrCat("xapi-sim exited: ", sim->log()));
    }
    if (absl::Now() > deadline) {
      return absl::InternalError(
          absl::StrCat("xapi-sim not ready after 30 s: ", sim->log()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return sim;
}

absl::StatusOr<std::string> SimProcess::MakeHostCerts(
    const std::string& fixture_json) {
  std::string json = fixture_json;
  if (json.empty()) {
    CommandResult demo =
        RunCommand({BinDir() + "/xapi-sim", "--print-demo-fixture"});
    if (demo.exit_code != 0)
      return absl::InternalError("xapi-sim --print-demo-fixture: " +
                                 demo.output);
    json = demo.output;
  }
  sim::Fixture fixture;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &fixture);
  if (!parsed.ok()) return absl::InternalError(parsed.ToString());
  const std::string certs = dir_ + "/certs";
  if (mkdir(certs.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::InternalError("cannot create " + certs);
  for (int i = 0; i < fixture.hosts_size(); ++i) {
    const sim::Host& h = fixture.hosts(i);
    // The simulator's default address (docs/xapi-sim.md section 3).
    const std::string ip =
        h.address().empty() ? absl::StrCat("127.0.0.", 2 + i) : h.address();
    absl::StatusOr<TestCert> cert =
        MakeSelfSignedCert(certs, h.name_label(), {ip});
    if (!cert.ok()) return cert.status();
    host_certs_[h.name_label()] = *std::move(cert);
  }
  return certs;
}

SimProcess::~SimProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string SimProcess::log() const {
  auto text = ReadFileToString(dir_ + "/sim.log");
  return text.ok() ? *text : "(no log)";
}

std::string SimProcess::host_url(const std::string& host_name) const {
  auto it = ready_.hosts().find(host_name);
  return it == ready_.hosts().end() ? "" : it->second;
}

std::vector<std::string> SimProcess::host_addresses() const {
  std::vector<std::string> out;
  for (const auto& [name, url] : ready_.hosts()) {
    absl::string_view rest = url;
    absl::ConsumePrefix(&rest, "http://");
    absl::ConsumePrefix(&rest, "https://");
    out.emplace_back(rest.substr(0, rest.find(':')));
  }
  return out;
}

absl::StatusOr<HttpReply> HttpRequestForTest(const std::string& method,
                                             const std::string& url,
                                             const std::string& body,
                                             const std::string& cookie,
                                             bool insecure) {
  InitCurlGlobal();
  CurlEasyPtr c(curl_easy_init());
  HttpReply reply;
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty() || method == "POST" || method == "PUT") {
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(body.size()));
  }
  if (!cookie.empty())
    curl_easy_setopt(c.get(), CURLOPT_COOKIE, cookie.c_str());
  if (insecure) {
    curl_easy_setopt(c.get(), CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c.get(), CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT, 120L);
  CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK)
    return CurlCodeToStatus(rc, absl::StrCat(method, " ", url));
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

absl::StatusOr<std::string> SimProcess::Control(const std::string& method,
                                                const std::string& path,
                                                const std::string& body) {
  absl::StatusOr<HttpReply> r =
      HttpRequestForTest(method, master_url() + path, body, "", tls_);
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return absl::InternalError(
        absl::StrCat(method, " ", path, ": HTTP ", r->status, ": ", r->body));
  }
  return r->body;
}

absl::Status SimProcess::AddFault(const std::string& fault_json) {
  return Control("POST", "/sim/faults", fault_json).status();
}

absl::Status SimProcess::ClearFaults() {
  return Control("DELETE", "/sim/faults", "").status();
}

template <typename Message>
static absl::StatusOr<Message> ParseJson(
    const absl::StatusOr<std::string>& json) {
  if (!json.ok()) return json.status();
  Message m;
  auto s = google::protobuf::util::JsonStringToMessage(*json, &m);
  if (!s.ok()) return absl::InternalError(s.ToString());
  return m;
}

absl::StatusOr<sim::SimState> SimProcess::State() {
  return ParseJson<sim::SimState>(Control("GET", "/sim/state", ""));
}

absl::StatusOr<sim::RequestLog> SimProcess::Requests(const std::string& host) {
  return ParseJson<sim::RequestLog>(Control(
      "GET", host.empty() ? "/sim/requests" : "/sim/requests?host=" + host,
      ""));
}

absl::StatusOr<sim::VdiInfo> SimProcess::Vdi(const std::string& uuid) {
  return ParseJson<sim::VdiInfo>(Control("GET", "/sim/vdi?uuid=" + uuid, ""));
}

absl::StatusOr<std::map<std::string, std::string>> SimProcess::VmDiskSha256s(
    XenApiClient& client, const std::string& vm_name) {
  absl::StatusOr<std::string> ref = VmRefByName(client, vm_name);
  if (!ref.ok()) return ref.status();
  absl::StatusOr<VmRecord> vm = client.GetVm(*ref);
  if (!vm.ok()) return vm.status();
  std::map<std::string, std::string> out;
  for (const std::string& vbd_ref : vm->vbds) {
    absl::StatusOr<VbdRecord> vbd = client.GetVbd(vbd_ref);
    if (!vbd.ok()) return vbd.status();
    if (vbd->type != "Disk") continue;
    absl::StatusOr<VdiRecord> vdi = client.GetVdi(vbd->vdi);
    if (!vdi.ok()) return vdi.status();
    absl::StatusOr<sim::VdiInfo> info = Vdi(vdi->uuid);
    if (!info.ok()) return info.status();
    out[vbd->userdevice] = info->sha256();
  }
  return out;
}

std::unique_ptr<XmlRpcXenApiClient> SimProcess::NewClient(
    const std::string& url, const std::string& password) const {
  XmlRpcXenApiClient::Options o;
  o.url = url.empty() ? master_url() : url;
  o.username = username();
  o.password = password.empty() ? this->password() : password;
  o.originator = "vmbackup-test";
  CurlXmlRpcTransport::Options t;
  t.tls.insecure = tls_;
  return std::make_unique<XmlRpcXenApiClient>(
      o, std::make_unique<CurlXmlRpcTransport>(t));
}

absl::StatusOr<std::string> VmRefByName(XenApiClient& client,
                                        const std::string& name) {
  absl::StatusOr<std::vector<std::string>> refs =
      client.GetVmsByNameLabel(name);
  if (!refs.ok()) return refs.status();
  for (const std::string& ref : *refs) {
    absl::StatusOr<VmRecord> vm = client.GetVm(ref);
    if (vm.ok() && !vm->is_a_template) return ref;
  }
  return absl::NotFoundError(absl::StrCat("no VM called ", name));
}

absl::StatusOr<TaskRecord> WaitForTask(XenApiClient& client,
                                       const std::string& task) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    absl::StatusOr<TaskRecord> t = client.GetTask(task);
    if (!t.ok() || t->status != TaskStatus::kPending || absl::Now() > deadline)
      return t;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<TestCert> MakeSelfSignedCert(
    const std::string& dir, const std::string& name,
    const std::vector<std::string>& ips) {
  TestCert cert;
  cert.cert_path = absl::StrCat(dir, "/", name, ".pem");
  cert.key_path = absl::StrCat(dir, "/", name, ".key");
  std::string san = "subjectAltName=";
  if (ips.empty()) {
    for (int i = 1; i <= 9; ++i)
      absl::StrAppend(&san, i > 1 ? "," : "", "IP:127.0.0.", i);
  }
  for (size_t i = 0; i < ips.size(); ++i)
    absl::StrAppend(&san, i > 0 ? "," : "", "IP:", ips[i]);
  CommandResult r =
      RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                  "-days", "2", "-subj", "/CN=" + name, "-addext", san,
                  "-keyout", cert.key_path, "-out", cert.cert_path});
  if (r.exit_code != 0)
    return absl::InternalError("openssl req failed: " + r.output);
  r = RunCommand({"openssl", "x509", "-in", cert.cert_path, "-noout",
                  "-fingerprint", "-sha256"});
  if (r.exit_code != 0)
    return absl::InternalError("openssl x509 failed: " + r.output);
  size_t eq = r.output.find('=');
  if (eq == std::string::npos)
    return absl::InternalError("no fingerprint: " + r.output);
  cert.sha256 =
      std::string(absl::StripAsciiWhitespace(r.output.substr(eq + 1)));
  return cert;
}

}  // namespace vmb::testing
