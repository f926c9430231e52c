// SPDX-License-Identifier: Apache-2.0
// xapi-sim behaviour through its real HTTP front end: imports, chunked
// uploads, hosts going down, sessions, command-line spellings.
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/xapi_http_stream.h"
#include "common/xapi/xenapi_error.h"
#include "common/xapi/xmlrpc_codec.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/fixture.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::CommandResult;
using ::vmb::testing::RunCommand;
using ::vmb::testing::SimProcess;

class SimBehaviourTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = SimProcess::Start();
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK_AND_ASSIGN(session_, client_->SessionRef());
    dir_ = vmb::testing::MakeTempDir("simb");
    cookie_ = absl::StrCat("session_id=", session_);
  }

  std::string VmRef(const std::string& name) {
    auto ref = vmb::testing::VmRefByName(*client_, name);
    EXPECT_OK(ref.status());
    return ref.ok() ? *ref : "";
  }

  // Downloads `path?query` from the master into a file; returns its path.
  std::string Download(const std::string& path,
                       std::vector<std::pair<std::string, std::string>> query) {
    const std::string file = absl::StrCat(dir_, "/dl-", ++files_);
    std::ofstream out(file, std::ios::binary);
    XapiStreamRequest r;
    r.base_url = sim_->master_url();
    r.path = path;
    r.query = std::move(query);
    r.session_id = session_;
    auto result = XapiStreamGet(r, [&](absl::string_view d) {
      out.write(d.data(), static_cast<std::streamsize>(d.size()));
      return absl::OkStatus();
    });
    EXPECT_OK(result.status());
    return file;
  }

  // PUT with curl; returns "<http code>\n<body>".
  CommandResult Put(const std::string& url, const std::string& file,
                    bool chunked) {
    std::vector<std::string> argv = {"curl", "-sS",   "-X", "PUT",
                                     "-b",   cookie_, "-w", "\n%{http_code}"};
    if (chunked) {
      argv.insert(argv.end(), {"-H", "Transfer-Encoding: chunked",
                               "--data-binary", "@" + file});
    } else {
      argv.insert(argv.end(), {"--upload-file", file});
    }
    argv.push_back(url);
    return RunCommand(argv);
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string session_;
  std::string cookie_;
  std::string dir_;
  int files_ = 0;
};

TEST_F(SimBehaviourTest, ImportRestoresWhatExportProduced) {
  const std::string vm = VmRef("PROD-ubuntu14");
  ASSERT_OK_AND_ASSIGN(std::string snap,
                       client_->SnapshotVm(vm, "for-import", {}));
  const std::string xva =
      Download("/export", {{"ref", snap}, {"use_compression", "zstd"}});
  ASSERT_OK_AND_ASSIGN(std::string task, client_->CreateTask("import", ""));
  CommandResult put = Put(
      absl::StrCat(sim_->master_url(), "/import?task_id=", task), xva, false);
  ASSERT_EQ(put.exit_code, 0) << put.output;
  EXPECT_THAT(put.output, ::testing::EndsWith("200"));
  ASSERT_OK_AND_ASSIGN(TaskRecord t, client_->GetTask(task));
  ASSERT_EQ(t.status, TaskStatus::kSuccess)
      << ::testing::PrintToString(t.error_info);
  ASSERT_OK_AND_ASSIGN(XmlRpcValue result, DecodeXmlRpcValue(t.result));
  ASSERT_TRUE(result.is_array());
  ASSERT_EQ(result.size(), 1u);
  const std::string imported = result.items()[0].text();
  ASSERT_OK_AND_ASSIGN(VmRecord rec, client_->GetVm(imported));
  EXPECT_EQ(rec.name_label, "for-import");
  EXPECT_TRUE(rec.is_a_template)
      << "an exported snapshot re-imports as a template, as in XAPI";
  // Each imported disk holds the bytes of the original disk.
  ASSERT_OK_AND_ASSIGN(VmRecord original, client_->GetVm(vm));
  std::map<std::string, std::string> expected;  // userdevice -> sha256
  for (const std::string& vbd_ref : original.vbds) {
    ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(vbd_ref));
    if (vbd.type != "Disk") continue;
    ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi(vbd.vdi));
    ASSERT_OK_AND_ASSIGN(sim::VdiInfo info, sim_->Vdi(vdi.uuid));
    expected[vbd.userdevice] = info.sha256();
  }
  int disks = 0;
  for (const std::string& vbd_ref : rec.vbds) {
    ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(vbd_ref));
    if (vbd.type != "Disk") continue;
    ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi(vbd.vdi));
    ASSERT_OK_AND_ASSIGN(sim::VdiInfo info, sim_->Vdi(vdi.uuid));
    EXPECT_EQ(info.sha256(), expected[vbd.userdevice]) << vbd.userdevice;
    ++disks;
  }
  EXPECT_EQ(disks, 2);
}

TEST_F(SimBehaviourTest, ImportRefusesACorruptedXva) {
  ASSERT_OK_AND_ASSIGN(std::string snap,
                       client_->SnapshotVm(VmRef("DEV-RH6"), "x", {}));
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CORRUPT", "after_bytes": "40000", "times": 1})"));
  const std::string xva = Download("/export", {{"ref", snap}});
  ASSERT_OK_AND_ASSIGN(std::string task, client_->CreateTask("import", ""));
  CommandResult put = Put(
      absl::StrCat(sim_->master_url(), "/import?task_id=", task), xva, false);
  EXPECT_THAT(put.output, HasSubstr("IMPORT_ERROR: [ checksum mismatch"));
  ASSERT_OK_AND_ASSIGN(TaskRecord t, client_->GetTask(task));
  EXPECT_EQ(t.status, TaskStatus::kFailure);
}

// The pieces a vdi-export restore is made of, checked with curl as the
// uploading client: VDI.create, PUT /import_metadata, VM.start.
TEST_F(SimBehaviourTest, MetadataImportFindsDisksByMapThenByLocation) {
  const std::string original = VmRef("DEV-RH6");
  ASSERT_OK_AND_ASSIGN(VmRecord orig, client_->GetVm(original));
  std::map<std::string, std::string> orig_disks;  // userdevice -> VDI ref
  for (const std::string& ref : orig.vbds) {
    ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(ref));
    if (vbd.type == "Disk") orig_disks[vbd.userdevice] = vbd.vdi;
  }
  ASSERT_FALSE(orig_disks.empty());
  const std::string tar = Download("/export_metadata", {{"uuid", orig.uuid}});
  // The disks of the VM a task's result names, by userdevice.
  auto import = [&](const std::string& query) -> std::pair<int, std::string> {
    auto task = client_->CreateTask("import_metadata", "");
    EXPECT_OK(task.status());
    CommandResult put =
        Put(absl::StrCat(sim_->master_url(), "/import_metadata?task_id=", *task,
                         query),
            tar, false);
    auto t = client_->GetTask(*task);
    EXPECT_OK(t.status());
    if (t->status != TaskStatus::kSuccess)
      return {0, absl::StrJoin(t->error_info, " ")};
    auto refs = DecodeXmlRpcValue(t->result);
    EXPECT_OK(refs.status());
    EXPECT_EQ(refs->items().size(), 1u);
    return {1, refs->items()[0].text()};
  };
  auto disks_of = [&](const std::string& vm) {
    std::map<std::string, std::string> out;
    auto rec = client_->GetVm(vm);
    EXPECT_OK(rec.status());
    for (const std::string& ref : rec->vbds) {
      auto vbd = client_->GetVbd(ref);
      EXPECT_OK(vbd.status());
      if (vbd->type == "Disk") out[vbd->userdevice] = vbd->vdi;
    }
    return out;
  };

  // Without a map, XAPI finds the disks by SR and location: the original's.
  auto [ok, shell] = import("");
  ASSERT_EQ(ok, 1) << shell;
  EXPECT_EQ(disks_of(shell), orig_disks);
  ASSERT_OK_AND_ASSIGN(VmRecord made, client_->GetVm(shell));
  EXPECT_NE(made.uuid, orig.uuid);
  EXPECT_EQ(made.power_state, "Halted");

  // VDI.create: the fields it needs, then a disk of zeros.
  auto create = [&](XmlRpcValue args) {
    return client_->Call("VDI.create", {std::move(args)},
                         CallKind::kNotIdempotent);
  };
  XmlRpcValue partial = XmlRpcValue::MakeStruct();
  partial.AddMember("name_label", XmlRpcValue::String("x"));
  EXPECT_TRUE(IsXenApiError(create(partial).status(), "FIELD_TYPE_ERROR"));
  ASSERT_OK_AND_ASSIGN(VdiRecord first,
                       client_->GetVdi(orig_disks.begin()->second));
  XmlRpcValue args = XmlRpcValue::MakeStruct();
  args.AddMember("name_label", XmlRpcValue::String("restored disk"));
  args.AddMember("name_description", XmlRpcValue::String(""));
  args.AddMember("SR", XmlRpcValue::String(first.sr));
  args.AddMember("virtual_size",
                 XmlRpcValue::String(absl::StrCat(first.virtual_size)));
  args.AddMember("type", XmlRpcValue::String("user"));
  args.AddMember("sharable", XmlRpcValue::Bool(false));
  args.AddMember("read_only", XmlRpcValue::Bool(false));
  args.AddMember("other_config", XmlRpcValue::MakeStruct());
  ASSERT_OK_AND_ASSIGN(XmlRpcValue new_ref, create(args));
  ASSERT_OK_AND_ASSIGN(VdiRecord fresh, client_->GetVdi(new_ref.text()));
  EXPECT_EQ(fresh.virtual_size, first.virtual_size);
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo zeros, sim_->Vdi(fresh.uuid));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo source, sim_->Vdi(first.uuid));
  EXPECT_NE(zeros.sha256(), source.sha256());

  // With vdi:<uuid>=<uuid>, the new disk.
  auto [ok2, mapped] =
      import(absl::StrCat("&vdi:", first.uuid, "=", fresh.uuid));
  ASSERT_EQ(ok2, 1) << mapped;
  EXPECT_EQ(disks_of(mapped).at(orig_disks.begin()->first), new_ref.text());

  // restore=true keeps the uuid: refused while the original runs.
  auto [ok3, refused] = import("&restore=true");
  EXPECT_EQ(ok3, 0);
  EXPECT_THAT(refused, HasSubstr("VM_BAD_POWER_STATE"));

  // VM.start: once.
  ASSERT_OK(client_
                ->Call("VM.start",
                       {XmlRpcValue::String(mapped), XmlRpcValue::Bool(false),
                        XmlRpcValue::Bool(false)},
                       CallKind::kNotIdempotent)
                .status());
  ASSERT_OK_AND_ASSIGN(VmRecord running, client_->GetVm(mapped));
  EXPECT_EQ(running.power_state, "Running");
  EXPECT_TRUE(IsXenApiError(
      client_
          ->Call("VM.start",
                 {XmlRpcValue::String(mapped), XmlRpcValue::Bool(false),
                  XmlRpcValue::Bool(false)},
                 CallKind::kNotIdempotent)
          .status(),
      "VM_BAD_POWER_STATE"));
}

TEST_F(SimBehaviourTest, ChunkedImportGets403AndTheErrorPage) {
  const std::string file = dir_ + "/body";
  std::ofstream(file) << std::string(100000, 'x');
  CommandResult put = Put(sim_->master_url() + "/import", file, true);
  EXPECT_THAT(put.output,
              HasSubstr("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED: [  ]"));
  EXPECT_THAT(put.output, ::testing::EndsWith("403"));
}

TEST_F(SimBehaviourTest, ChunkedXmlRpcRequestsWork) {
  const std::string file = dir_ + "/call.xml";
  std::ofstream(file) << EncodeMethodCall("host.get_all",
                                          {XmlRpcValue::String(session_)});
  CommandResult post =
      RunCommand({"curl", "-sS", "-H", "Transfer-Encoding: chunked", "-H",
                  "Content-Type: text/xml", "--data-binary", "@" + file,
                  sim_->master_url()});
  EXPECT_THAT(post.output, HasSubstr("<value>Success</value>"));
}

TEST_F(SimBehaviourTest, AHostThatIsDownAnswersNothingAndIsNotLive) {
  ASSERT_OK(sim_->AddFault(R"({"kind": "HOST_DOWN", "host": "xcp-host2"})"));
  ASSERT_OK_AND_ASSIGN(auto hosts, client_->GetAllHosts());
  ASSERT_OK_AND_ASSIGN(auto metrics, client_->GetAllHostMetrics());
  for (const auto& [ref, h] : hosts) {
    EXPECT_EQ(metrics.at(h.metrics).live, h.name_label != "xcp-host2")
        << h.name_label;
  }
  CurlXmlRpcTransport transport({});
  EXPECT_THAT(transport
                  .Post(sim_->host_url("xcp-host2"),
                        EncodeMethodCall("host.get_all",
                                         {XmlRpcValue::String(session_)}))
                  .status(),
              vmb::testing::StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(sim_->ClearFaults());
  ASSERT_OK_AND_ASSIGN(metrics, client_->GetAllHostMetrics());
  for (const auto& [ref, m] : metrics) EXPECT_TRUE(m.live);
}

TEST_F(SimBehaviourTest, VdiDestroyDuringAnExportIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::string snap,
                       client_->SnapshotVm(VmRef("DEV-RH6"), "x", {}));
  ASSERT_OK_AND_ASSIGN(VmRecord s, client_->GetVm(snap));
  ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(s.vbds[0]));
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "STALL", "after_bytes": "1048576", "delay_ms": 60000})"));
  XapiStreamRequest r;
  r.base_url = sim_->master_url();
  r.path = "/export_raw_vdi";
  r.query = {{"vdi", vbd.vdi}};
  r.session_id = session_;
  absl::Notification started, cancel;
  r.cancel = &cancel;
  std::thread download([&] {
    (void)XapiStreamGet(r, [&](absl::string_view) {
      if (!started.HasBeenNotified()) started.Notify();
      return absl::OkStatus();
    });
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(60)));
  absl::Status destroy = client_->DestroyVdi(vbd.vdi);
  cancel.Notify();
  download.join();
  EXPECT_TRUE(IsXenApiError(destroy, "VDI_IN_USE")) << destroy;
}

TEST_F(SimBehaviourTest, SessionRefsDifferBetweenRuns) {
  auto other = SimProcess::Start();
  ASSERT_OK(other.status());
  auto client = (*other)->NewClient();
  ASSERT_OK_AND_ASSIGN(std::string session, client->SessionRef());
  EXPECT_NE(session, session_);
  // Objects, though, are the same in every run of one fixture.
  auto a = client_->GetVmsByNameLabel("DEV-RH6");
  auto b = client->GetVmsByNameLabel("DEV-RH6");
  ASSERT_OK(a.status());
  ASSERT_OK(b.status());
  EXPECT_EQ(*a, *b);
}

TEST(SimCommandLineTest, AcceptsDashedAndUnderscoredFlags) {
  for (const char* flag : {"--print-demo-fixture", "--print_demo_fixture"}) {
    CommandResult r = RunCommand({vmb::testing::BinDir() + "/xapi-sim", flag});
    EXPECT_EQ(r.exit_code, 0) << flag << r.output;
    EXPECT_THAT(r.output, HasSubstr("\"PROD-ubuntu14\"")) << flag;
  }
  CommandResult r =
      RunCommand({vmb::testing::BinDir() + "/xapi-sim", "--port=0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--ready-file is required"));
}

TEST(SimFixtureTest, BadFixturesAreNamedErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"hosts": [{"name_label": "a"}]})",
       "credentials.password is required"},
      {R"({"credentials": {"password": "p"}})", "at least one host"},
      {R"({"credentials": {"password": "p"}, "hosts": [{"name_label": "a", "master": true},
          {"name_label": "b", "master": true}]})",
       "only one host can be the master"},
      {R"({"credentials": {"password": "p"}, "hosts": [{"name_label": "a"}],
          "vms": [{"name_label": "v", "disks": [{"size": "1048576", "sr": "nope"}]}]})",
       "vms[0] \"v\": disks[0]: unknown SR \"nope\""},
      {R"({"credentials": {"password": "p"}, "hosts": [{"name_label": "a"}],
          "srs": [{"name_label": "s", "shared": true}],
          "vms": [{"name_label": "v", "disks": [{"size": "1000", "sr": "s"}]}]})",
       "multiple of 512"},
      {R"({"credentials": {"password": "p"}, "hosts": [{"name_label": "a"}],
          "srs": [{"name_label": "s"}]})",
       "a local SR needs \"host\""},
      {R"({"credentials": {"password": "p"}, "hosts": [{"name_label": "a"}],
          "vms": [{"name_label": "v", "power_state": "Sleeping"}]})",
       "power_state must be"},
  };
  for (const auto& [json, message] : cases) {
    absl::StatusOr<sim::Fixture> f = sim::ParseFixture(json);
    ASSERT_OK(f.status()) << json;
    EXPECT_THAT(sim::SimPool::Create(*f).status(),
                vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr(message)));
  }
  EXPECT_THAT(sim::ParseFixture(R"({"hostz": []})").status(),
              vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("hostz")));
}

TEST(SimFixtureTest, VifsWithoutANetworkGoOnTheFirstListed) {
  auto pool = sim::SimPool::Create(sim::DemoFixture());
  ASSERT_OK(pool.status());
  InitXmlRpcCodec();
  int status = 0;
  std::string body = (*pool)->HandleXmlRpc(
      "xcp-host1",
      EncodeMethodCall(
          "session.login_with_password",
          {XmlRpcValue::String("root"), XmlRpcValue::String("demo-password")}),
      &status);
  ASSERT_OK_AND_ASSIGN(XmlRpcValue login, DecodeMethodResponse(body));
  const std::string session = login.Find("Value")->text();
  body = (*pool)->HandleXmlRpc("xcp-host1",
                               EncodeMethodCall("network.get_all_records",
                                                {XmlRpcValue::String(session)}),
                               &status);
  ASSERT_OK_AND_ASSIGN(XmlRpcValue networks, DecodeMethodResponse(body));
  for (const XmlRpcValue& n : networks.Find("Value")->items()) {
    const std::string name = n.Find("name_label")->text();
    const size_t vifs = n.Find("VIFs")->size();
    if (name == "Backup network") {
      EXPECT_EQ(vifs, 1u);  // only PROD-CentOS7's second VIF asks for it
    } else {
      EXPECT_GT(vifs, 5u);
    }
  }
}

}  // namespace
}  // namespace vmb
