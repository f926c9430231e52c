// SPDX-License-Identifier: Apache-2.0
#include "common/backup/restore.h"

#include <string.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"

#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "common/backup/backup_verify.h"
#include "common/backup/checked_reader.h"
#include "common/backup/export_verifier.h"
#include "common/backup/sha256.h"
#include "common/backup/snapshot_janitor.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/redact.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xapi_task.h"
#include "common/xapi/xenapi_error.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "common/xapi/xmlrpc_codec.h"

namespace vmb {
namespace {

constexpr absl::string_view kNullRef = "OpaqueRef:NULL";
constexpr uint64_t kMaxMetadataBytes = 64 << 20;

// One disk of a vdi-export backup.
struct BackupDisk {
  std::string file;        // relative to the folder
  std::string device;      // "xvda"
  std::string userdevice;  // "0"
  std::string name_label;
  uint64_t virtual_size = 0;
  std::optional<uint64_t> size;  // the file's, from the manifest
  std::string sha256;
  bool vhd = false;
};

// What a backup folder holds, as far as a restore needs it.
struct Backup {
  std::string folder;
  bool committed = false;
  std::optional<v1::BackupManifest> manifest;
  std::string kind;  // "vm-export" or "vdi-export"
  std::string xva;   // vm-export: the data file
  v1::Compression compression = v1::COMPRESSION_NONE;
  std::optional<uint64_t> xva_size;
  std::string xva_sha256;
  std::vector<BackupDisk> disks;  // vdi-export
  std::string original_name;
};

std::string Quote(absl::string_view s) { return EscapeForLog(s); }

// key=value lines of the seed's DISK-*/vbd.cfg and vdi.cfg.
std::map<std::string, std::string> ReadCfg(Filesystem& fs,
                                           const std::string& path) {
  std::map<std::string, std::string> out;
  absl::StatusOr<std::string> text = fs.ReadFile(path, 1 << 20);
  if (!text.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    out[std::string(absl::StripAsciiWhitespace(line.substr(0, eq)))] =
        std::string(absl::StripAsciiWhitespace(line.substr(eq + 1)));
  }
  return out;
}

absl::StatusOr<Backup> ReadBackup(Filesystem& fs, const std::string& folder) {
  Backup b;
  b.folder = folder;
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, fs.ListDir(folder));
  std::set<std::string> names;
  for (const DirEntry& e : entries) names.insert(e.name);
  for (const std::string& m : SuccessMarkers()) {
    if (names.count(m) != 0) b.committed = true;
  }
  if (names.count(std::string(kManifestFileName)) != 0) {
    VMB_ASSIGN_OR_RETURN(
        std::string text,
        fs.ReadFile(JoinPath(folder, kManifestFileName), 16 << 20));
    absl::StatusOr<v1::BackupManifest> m = ParseManifest(text);
    if (!m.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          JoinPath(folder, kManifestFileName), ": ", m.status().message()));
    }
    b.manifest = *std::move(m);
  }
  auto file_entry = [&](const std::string& name) -> const v1::ManifestFile* {
    if (!b.manifest.has_value()) return nullptr;
    for (const v1::ManifestFile& f : b.manifest->files()) {
      if (f.name() == name) return &f;
    }
    return nullptr;
  };
  for (const std::string& n : names) {
    for (auto [ext, c] : {std::pair<absl::string_view, v1::Compression>{
                              ".xva", v1::COMPRESSION_NONE},
                          {".xva.gz", v1::COMPRESSION_GZIP},
                          {".xva.zst", v1::COMPRESSION_ZSTD}}) {
      if (absl::EndsWith(n, ext) && n.size() > ext.size()) {
        b.xva = n;
        b.compression = c;
      }
    }
  }
  if (!b.xva.empty()) {
    b.kind = "vm-export";
    if (const v1::ManifestFile* f = file_entry(b.xva)) {
      b.xva_size = f->size();
      b.xva_sha256 = f->sha256();
    }
  } else if (b.manifest.has_value() && !b.manifest->disks().empty()) {
    b.kind = "vdi-export";
    for (const v1::ManifestDisk& d : b.manifest->disks()) {
      BackupDisk disk;
      disk.file = d.file();
      disk.device = d.device();
      disk.userdevice = d.userdevice();
      disk.name_label = d.name_label();
      disk.virtual_size = d.virtual_size();
      disk.vhd = absl::EndsWith(d.file(), ".vhd");
      if (const v1::ManifestFile* f = file_entry(d.file())) {
        disk.size = f->size();
        disk.sha256 = f->sha256();
      }
      if (disk.file.empty() || names.count(disk.file) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat(folder, ": the file of disk ", Quote(d.device()), " (",
                         Quote(d.file()), ") is missing"));
      }
      b.disks.push_back(std::move(disk));
    }
  } else {
    // A seed-era vdi-export: one <vm>.raw or <vm>.vhd, the boot disk, with
    // its DISK-<device>/ metadata.
    for (const std::string& n : names) {
      if ((absl::EndsWith(n, ".raw") || absl::EndsWith(n, ".vhd")) &&
          n.size() > 4) {
        BackupDisk disk;
        disk.file = n;
        disk.vhd = absl::EndsWith(n, ".vhd");
        b.disks.push_back(std::move(disk));
      }
    }
    if (b.disks.size() != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          folder,
          ": not a backup folder vmbackup can restore (no .xva, .xva.gz, "
          ".xva.zst, and not exactly one .raw or .vhd without a manifest)"));
    }
    b.kind = "vdi-export";
    for (const char* dev : {"xvda", "hda", "sda"}) {
      const std::string dir = JoinPath(folder, absl::StrCat("DISK-", dev));
      if (names.count(absl::StrCat("DISK-", dev)) == 0) continue;
      auto vbd = ReadCfg(fs, JoinPath(dir, "vbd.cfg"));
      auto vdi = ReadCfg(fs, JoinPath(dir, "vdi.cfg"));
      BackupDisk& d = b.disks[0];
      d.device = dev;
      d.userdevice = vbd["userdevice"];
      d.name_label = vdi["name_label"];
      (void)absl::SimpleAtoi(vdi["virtual_size"], &d.virtual_size);
      break;
    }
    if (b.disks[0].virtual_size == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          folder,
          ": no DISK-xvda/vdi.cfg (or hda, sda) with a virtual_size: "
          "the disk's size is unknown"));
    }
  }
  if (b.manifest.has_value() && !b.manifest->vm_name().empty()) {
    b.original_name = b.manifest->vm_name();
  }
  return b;
}

// Sets (or adds) a struct member.
void SetMember(XmlRpcValue* s, absl::string_view name, XmlRpcValue value) {
  for (size_t i = 0; i < s->names().size(); ++i) {
    if (s->names()[i] == name) {
      s->mutable_items()[i] = std::move(value);
      return;
    }
  }
  s->AddMember(std::string(name), std::move(value));
}

std::string Str(const XmlRpcValue& s, absl::string_view name) {
  const XmlRpcValue* v = s.Find(name);
  return v != nullptr && v->is_string() ? v->text() : "";
}

bool Bool(const XmlRpcValue& s, absl::string_view name) {
  const XmlRpcValue* v = s.Find(name);
  if (v == nullptr) return false;
  if (v->is_bool()) return v->bool_value();
  return v->is_string() && v->text() == "true";
}

// A one-member ustar archive, as XAPI's /import_metadata reads it.
std::string TarOf(absl::string_view name, absl::string_view body) {
  std::string header(512, '\0');
  memcpy(header.data(), name.data(), std::min<size_t>(name.size(), 99));
  auto octal = [&](size_t at, size_t width, uint64_t v) {
    const std::string s =
        absl::StrFormat("%0*o", static_cast<int>(width - 1), v);
    memcpy(header.data() + at, s.data(), width - 1);
  };
  octal(100, 8, 0644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, body.size());
  octal(136, 12, 0);
  header[156] = '0';
  memcpy(header.data() + 257,
         "ustar\0"
         "00",
         8);
  memset(header.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : header) sum += static_cast<unsigned char>(c);
  const std::string chk = absl::StrFormat("%06o", sum);
  memcpy(header.data() + 148, chk.data(), 6);
  header[154] = '\0';
  header[155] = ' ';
  std::string out = header;
  out.append(body.data(), body.size());
  out.append((512 - body.size() % 512) % 512, '\0');
  out.append(1024, '\0');
  return out;
}

class Restore {
 public:
  Restore(const RestoreContext& c, const RestoreRequest& r) : c_(c), r_(r) {}

  absl::StatusOr<RestoreResult> Run() {
    VMB_ASSIGN_OR_RETURN(backup_, ReadBackup(*c_.fs, r_.backup_folder));
    result_.kind = backup_.kind;
    for (const std::string& file : DataFiles()) {
      absl::StatusOr<FileInfo> info =
          c_.fs->Stat(JoinPath(backup_.folder, file));
      if (info.ok()) total_bytes_ += info->size;
    }
    if (!backup_.committed) {
      if (!r_.force) {
        return absl::FailedPreconditionError(absl::StrCat(
            r_.backup_folder,
            ": not committed (no success marker): a failed, cancelled or "
            "still running backup; --force restores it anyway"));
      }
      Warn(
          "the backup is not committed (no success marker); restored "
          "because of --force");
    }
    if (!backup_.manifest.has_value()) {
      Warn(
          "no manifest.json (a seed-era backup): there are no digests to "
          "check the files against; only their structure is checked");
    }
    VMB_RETURN_IF_ERROR(ResolveTarget());
    VMB_RETURN_IF_ERROR(ReadMetadata());
    result_.original_name = backup_.original_name;
    const std::string date =
        absl::FormatTime("%Y-%m-%d", c_.clock->Now(), c_.time_zone);
    result_.vm_name = !r_.name.empty() ? r_.name
                      : r_.test ? absl::StrCat("vmbackup restore test of ",
                                               backup_.original_name, " ", date)
                                : absl::StrCat(backup_.original_name,
                                               " (restored ", date, ")");
    if (r_.preserve) VMB_RETURN_IF_ERROR(CheckPreserve());
    absl::Status s =
        backup_.kind == "vm-export" ? RestoreXva() : RestoreDisks();
    if (s.ok() && r_.test && !r_.dry_run) s = CompareRestoredDisks();
    if (s.ok() && r_.start && !r_.test && !r_.dry_run) {
      // A VM that does not start is still restored: say why, keep it.
      absl::Status started =
          c_.xapi
              ->Call("VM.start",
                     {XmlRpcValue::String(result_.vm_ref),
                      XmlRpcValue::Bool(false), XmlRpcValue::Bool(false)},
                     CallKind::kNotIdempotent)
              .status();
      if (started.ok()) {
        Log(absl::StrCat("started VM ", Quote(result_.vm_name)));
      } else {
        Warn(
            absl::StrCat("the restored VM did not start: ", started.message()));
      }
    }
    if (!s.ok()) return CleanUp(s);
    if (r_.test && !r_.dry_run) {
      // What the test made goes, now that it passed.
      absl::Status removed = CleanUp(absl::OkStatus());
      if (!removed.ok() && removed.code() != absl::StatusCode::kUnknown)
        return removed;
      result_.test.push_back(std::string(removed.message()));
    }
    return result_;
  }

 private:
  void Log(const std::string& line) {
    if (c_.log) c_.log(line);
  }
  void Warn(std::string what) {
    Log(absl::StrCat("warning: ", what));
    result_.warnings.push_back(std::move(what));
  }

  absl::Status ResolveTarget() {
    VMB_ASSIGN_OR_RETURN(RecordMap<SrRecord> srs, c_.xapi->GetAllSrs());
    VMB_ASSIGN_OR_RETURN(RecordMap<PoolRecord> pools, c_.xapi->GetAllPools());
    VMB_ASSIGN_OR_RETURN(hosts_, c_.xapi->GetAllHosts());
    VMB_ASSIGN_OR_RETURN(RecordMap<PbdRecord> pbds, c_.xapi->GetAllPbds());
    std::vector<std::string> matches;
    if (r_.sr.empty()) {
      if (pools.empty() || pools.begin()->second.default_sr.empty() ||
          pools.begin()->second.default_sr == kNullRef ||
          srs.count(pools.begin()->second.default_sr) == 0) {
        return absl::FailedPreconditionError(
            "the pool has no default SR: name one with --sr");
      }
      matches.push_back(pools.begin()->second.default_sr);
    } else {
      for (const auto& [ref, sr] : srs) {
        if (sr.uuid == r_.sr || sr.name_label == r_.sr) matches.push_back(ref);
      }
    }
    if (matches.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--sr ", Quote(r_.sr), ": no SR of that name or uuid"));
    }
    if (matches.size() > 1) {
      std::vector<std::string> uuids;
      for (const std::string& m : matches) uuids.push_back(srs.at(m).uuid);
      return absl::FailedPreconditionError(
          absl::StrCat("--sr ", Quote(r_.sr), ": ", matches.size(),
                       " SRs have that name; name one by uuid: ",
                       absl::StrJoin(uuids, ", ")));
    }
    sr_ref_ = matches[0];
    const SrRecord& sr = srs.at(sr_ref_);
    sr_uuid_ = sr.uuid;
    result_.sr_name = sr.name_label;
    if (sr.content_type == "iso") {
      return absl::FailedPreconditionError(absl::StrCat(
          "SR ", Quote(sr.name_label), " is an ISO library, not for disks"));
    }
    std::set<std::string> seeing;  // hosts with the SR attached
    for (const auto& [ref, pbd] : pbds) {
      if (pbd.sr == sr_ref_ && pbd.currently_attached) seeing.insert(pbd.host);
    }
    auto usable = [&](const std::string& ref) {
      return !r_.usable_host || r_.usable_host(hosts_.at(ref));
    };
    std::string host;
    if (!r_.host.empty()) {
      for (const auto& [ref, h] : hosts_) {
        if (h.uuid == r_.host || h.name_label == r_.host) host = ref;
      }
      if (host.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("--host ", Quote(r_.host), ": no such host"));
      }
      if (seeing.count(host) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("--host ", Quote(r_.host), " does not see SR ",
                         Quote(sr.name_label)));
      }
      if (!usable(host)) {
        return absl::FailedPreconditionError(
            absl::StrCat("--host ", Quote(r_.host), ": ", r_.why_not));
      }
    } else {
      const std::string master =
          pools.empty() ? "" : pools.begin()->second.master;
      if (seeing.count(master) != 0 && usable(master)) {
        host = master;
      } else {
        for (const std::string& ref : seeing) {
          if (host.empty() && usable(ref)) host = ref;
        }
      }
      if (host.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "SR ", Quote(sr.name_label),
            seeing.empty()
                ? " is not attached to any host"
                : absl::StrCat(": every host that sees it: ", r_.why_not)));
      }
    }
    const HostRecord& h = hosts_.at(host);
    result_.host_name = h.name_label;
    result_.host_uuid = h.uuid;
    result_.sr_uuid = sr_uuid_;
    data_url_ = ReplaceUrlHost(c_.xapi->master_url(), h.address);
    for (const auto& [ref, each] : hosts_)
      redirect_hosts_.push_back(IdentityOfHost(each));
    return absl::OkStatus();
  }

  // vm-metadata.xml: the original's name, and for a vdi-export its shell.
  absl::Status ReadMetadata() {
    const std::string path = JoinPath(backup_.folder, "vm-metadata.xml");
    absl::StatusOr<std::string> text = c_.fs->ReadFile(path, kMaxMetadataBytes);
    if (!text.ok()) {
      if (backup_.kind == "vdi-export") {
        return absl::FailedPreconditionError(
            absl::StrCat(path, ": ", text.status().message(),
                         " (a vdi-export's VM is made from it)"));
      }
      if (backup_.original_name.empty()) {
        // The file is named after the VM: "<name>.xva[.gz|.zst]".
        backup_.original_name =
            backup_.xva.substr(0, backup_.xva.rfind(".xva"));
      }
      return absl::OkStatus();
    }
    absl::StatusOr<XmlRpcValue> ova = DecodeXmlRpcValue(*text);
    const XmlRpcValue* objects = ova.ok() ? ova->Find("objects") : nullptr;
    if (objects == nullptr || !objects->is_array()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": not XAPI's ova.xml (no objects)"));
    }
    ova_ = *std::move(ova);
    // The VM: not a snapshot or template; the backed-up one if several.
    const std::string want =
        backup_.manifest.has_value() ? backup_.manifest->vm_uuid() : "";
    for (const XmlRpcValue& o : objects->items()) {
      const XmlRpcValue* snap = o.Find("snapshot");
      if (Str(o, "class") != "VM" || snap == nullptr) continue;
      if (Bool(*snap, "is_a_snapshot") || Bool(*snap, "is_a_template") ||
          Bool(*snap, "is_control_domain")) {
        continue;
      }
      if (vm_id_.empty() || Str(*snap, "uuid") == want) {
        vm_id_ = Str(o, "id");
        vm_uuid_ = Str(*snap, "uuid");
        if (backup_.original_name.empty() || Str(*snap, "uuid") == want)
          backup_.original_name = Str(*snap, "name_label");
      }
    }
    if (vm_id_.empty() && backup_.kind == "vdi-export") {
      return absl::FailedPreconditionError(absl::StrCat(path, ": holds no VM"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckPreserve() {
    if (vm_uuid_.empty() || backup_.kind != "vdi-export")
      return absl::OkStatus();
    absl::StatusOr<std::string> existing = c_.xapi->GetVmByUuid(vm_uuid_);
    if (existing.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--preserve keeps the VM's uuid ", vm_uuid_,
          ", and that VM still exists in this pool (XAPI would replace or "
          "refuse it); restore without --preserve, or remove the VM first"));
    }
    return absl::OkStatus();
  }

  // ---- uploads

  // A request of `path` on the host the data goes through, with a new task
  // (`label`) for it.
  absl::StatusOr<XapiStreamRequest> TaskRequest(
      const std::string& label, const std::string& path,
      std::vector<std::pair<std::string, std::string>> query) {
    VMB_ASSIGN_OR_RETURN(std::string session, c_.xapi->SessionRef());
    VMB_ASSIGN_OR_RETURN(std::string task,
                         c_.xapi->CreateTask(label, r_.backup_folder));
    XapiStreamRequest req;
    req.base_url = data_url_;
    req.path = path;
    req.query = std::move(query);
    req.session_id = session;
    req.task_id = task;
    req.allowed_redirect_hosts = redirect_hosts_;
    req.timeouts = c_.timeouts;
    req.cancel = c_.cancel;
    req.tls = c_.tls;
    return req;
  }

  // Waits for a transfer's task to end and destroys it. Errors: the task's
  // own (its XenAPI error) when it did not succeed, or waiting's.
  absl::StatusOr<TaskRecord> EndTask(const std::string& task) {
    absl::StatusOr<TaskRecord> done =
        WaitForTask(*c_.xapi, *c_.clock, task, absl::Minutes(10));
    (void)c_.xapi->DestroyTask(task);
    if (!done.ok()) return Annotate(done.status(), "the task");
    if (done->status != TaskStatus::kSuccess) {
      return done->error_info.empty() ? absl::UnknownError("the task failed")
                                      : XenApiFailureToStatus(done->error_info);
    }
    return done;
  }

  // PUTs `reader`'s file (or `memory`) to `path` through a task; returns
  // the task's result.
  absl::StatusOr<std::string> Upload(
      const std::string& label, const std::string& path,
      std::vector<std::pair<std::string, std::string>> query,
      CheckedFileReader* reader, const std::string* memory) {
    VMB_ASSIGN_OR_RETURN(XapiStreamRequest req,
                         TaskRequest(absl::StrCat("vmbackup restore ", label),
                                     path, std::move(query)));
    const std::string task = req.task_id;
    XapiUploadBody body;
    size_t memory_pos = 0;
    uint64_t next_report = 0;
    if (reader != nullptr) {
      body.size = reader->size();
      body.read = [&](char* buffer, size_t max) -> absl::StatusOr<size_t> {
        absl::StatusOr<size_t> n = reader->Read(buffer, max);
        if (n.ok() && c_.progress)
          c_.progress(result_.bytes + reader->done(), total_bytes_);
        if (n.ok() && reader->done() >= next_report && reader->size() > 0) {
          Log(absl::StrCat(label, ": ", reader->done() * 100 / reader->size(),
                           "% of ", FormatBytes(reader->size())));
          next_report += std::max<uint64_t>(reader->size() / 10, 1);
        }
        return n;
      };
      body.rewind = [&] { return reader->Rewind(); };
    } else {
      body.size = memory->size();
      body.read = [&](char* buffer, size_t max) -> absl::StatusOr<size_t> {
        const size_t n = std::min(max, memory->size() - memory_pos);
        memcpy(buffer, memory->data() + memory_pos, n);
        memory_pos += n;
        return n;
      };
      body.rewind = [&] {
        memory_pos = 0;
        return absl::OkStatus();
      };
    }
    absl::StatusOr<XapiStreamResult> put = XapiStreamPut(req, body);
    if (!put.ok() && !IsXenApiErrorStatus(put.status())) {
      // The host may still be working on what it got: ask it to stop, and
      // wait until it has cleaned up before cleaning up here.
      (void)c_.xapi->CancelTask(task);
    }
    absl::StatusOr<TaskRecord> done = EndTask(task);
    if (!put.ok()) {
      absl::Status s = Annotate(put.status(), label);
      // What the host made of it says more than a broken connection.
      if (!done.ok() && !GetXenApiError(put.status()).has_value() &&
          GetXenApiError(done.status()).has_value()) {
        s = absl::Status(s.code(), absl::StrCat(s.message(), " (the task: ",
                                                done.status().message(), ")"));
      }
      return s;
    }
    if (!done.ok()) return Annotate(done.status(), label);
    if (reader != nullptr) result_.bytes += reader->size();
    if (reader != nullptr && !reader->mismatch().empty()) {
      Warn(absl::StrCat(label, ": restored with --force although ",
                        reader->mismatch()));
    }
    return done->result;
  }

  static bool IsXenApiErrorStatus(const absl::Status& s) {
    return GetXenApiError(s).has_value();
  }

  absl::StatusOr<std::unique_ptr<CheckedFileReader>> OpenChecked(
      const std::string& file, std::optional<uint64_t> size,
      const std::string& sha256,
      std::function<std::unique_ptr<ExportVerifier>()> verifier) {
    CheckedReadExpectations e;
    e.size = size;
    e.sha256 = sha256;
    e.make_verifier = std::move(verifier);
    e.force = r_.force;
    return CheckedFileReader::Open(*c_.fs, JoinPath(backup_.folder, file),
                                   std::move(e));
  }

  // The first VM ref of a task result (an XML-RPC array of refs).
  static absl::StatusOr<std::string> FirstRef(const std::string& result) {
    absl::StatusOr<XmlRpcValue> v = DecodeXmlRpcValue(result);
    if (!v.ok() || !v->is_array() || v->items().empty() ||
        !v->items()[0].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the import's result is not a VM: ", Quote(result.substr(0, 200))));
    }
    return v->items()[0].text();
  }

  // ---- vm-export

  absl::Status RestoreXva() {
    const v1::Compression compression = backup_.compression;
    if (r_.dry_run) {
      result_.plan.push_back(absl::StrCat(
          "PUT /import of ", backup_.xva, " (", CompressionName(compression),
          ") to SR ", Quote(result_.sr_name), " through ", result_.host_name));
      result_.plan.push_back(
          absl::StrCat("name the new VM ", Quote(result_.vm_name)));
      if (r_.start) result_.plan.push_back("start it");
      return absl::OkStatus();
    }
    VMB_ASSIGN_OR_RETURN(
        std::unique_ptr<CheckedFileReader> reader,
        OpenChecked(backup_.xva, backup_.xva_size, backup_.xva_sha256,
                    [compression, test = r_.test] {
                      return NewXvaVerifier(compression, {}, test);
                    }));
    std::vector<std::pair<std::string, std::string>> query = {
        {"sr_id", sr_ref_}};
    if (r_.preserve) query.emplace_back("restore", "true");
    Log(absl::StrCat("importing ", backup_.xva, " (",
                     FormatBytes(reader->size()), ") into SR ",
                     Quote(result_.sr_name), " through ", result_.host_name));
    VMB_ASSIGN_OR_RETURN(std::string task_result,
                         Upload(backup_.xva, "/import", std::move(query),
                                reader.get(), nullptr));
    xva_digests_ = reader->ContentSha256();
    VMB_ASSIGN_OR_RETURN(result_.vm_ref, FirstRef(task_result));
    made_vm_ = result_.vm_ref;
    return FinishVm();
  }

  // Renames the new VM, drops the backup's own keys, records its disks.
  absl::Status FinishVm() {
    VMB_ASSIGN_OR_RETURN(VmRecord vm, c_.xapi->GetVm(result_.vm_ref));
    result_.vm_uuid = vm.uuid;
    VMB_RETURN_IF_ERROR(
        Annotate(c_.xapi
                     ->Call("VM.set_name_label",
                            {XmlRpcValue::String(result_.vm_ref),
                             XmlRpcValue::String(result_.vm_name)},
                            CallKind::kIdempotent)
                     .status(),
                 "naming the new VM"));
    for (const auto& [key, value] : vm.other_config) {
      if (absl::StartsWith(key, "vmbackup:")) {
        VMB_RETURN_IF_ERROR(
            c_.xapi->RemoveFromOtherConfig("VM", result_.vm_ref, key));
      }
    }
    for (const std::string& vbd_ref : vm.vbds) {
      VMB_ASSIGN_OR_RETURN(VbdRecord vbd, c_.xapi->GetVbd(vbd_ref));
      if (vbd.vdi.empty() || vbd.vdi == kNullRef) continue;
      VMB_ASSIGN_OR_RETURN(VdiRecord vdi, c_.xapi->GetVdi(vbd.vdi));
      made_vdis_.insert(vbd.vdi);
      for (const auto& [key, value] : vdi.other_config) {
        if (absl::StartsWith(key, "vmbackup:")) {
          VMB_RETURN_IF_ERROR(
              c_.xapi->RemoveFromOtherConfig("VDI", vbd.vdi, key));
        }
      }
      result_.disks.push_back(
          absl::StrCat(vbd.userdevice, ": VDI ", vdi.uuid, ", ",
                       FormatBytes(static_cast<uint64_t>(vdi.virtual_size))));
    }
    Log(absl::StrCat("restored VM ", Quote(result_.vm_name), " (", vm.uuid,
                     ") on SR ", Quote(result_.sr_name)));
    return absl::OkStatus();
  }

  // ---- vdi-export

  absl::Status RestoreDisks() {
    // The exported VDI of each restored disk: the VBD of that userdevice.
    std::map<std::string, const XmlRpcValue*> by_id;
    for (const XmlRpcValue& o : ova_.Find("objects")->items()) {
      by_id[Str(o, "id")] = &o;
    }
    std::map<std::string, std::string> vdi_id_of_userdevice;
    for (const auto& [id, o] : by_id) {
      const XmlRpcValue* snap = o->Find("snapshot");
      if (Str(*o, "class") != "VBD" || snap == nullptr) continue;
      if (Str(*snap, "VM") != vm_id_ || Str(*snap, "type") != "Disk") continue;
      vdi_id_of_userdevice[Str(*snap, "userdevice")] = Str(*snap, "VDI");
    }
    std::map<std::string, std::string> vdi_map;  // exported uuid -> new uuid
    std::set<std::string> kept_vdi_ids;
    for (const BackupDisk& d : backup_.disks) {
      auto it = vdi_id_of_userdevice.find(d.userdevice);
      if (it == vdi_id_of_userdevice.end() || by_id.count(it->second) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("vm-metadata.xml has no disk at userdevice ",
                         Quote(d.userdevice), " (", Quote(d.device), ")"));
      }
      kept_vdi_ids.insert(it->second);
    }
    if (r_.dry_run) {
      for (const BackupDisk& d : backup_.disks) {
        result_.plan.push_back(absl::StrCat(
            "VDI.create of ", FormatBytes(d.virtual_size), " on SR ",
            Quote(result_.sr_name), ", PUT /import_raw_vdi of ", d.file, " (",
            d.vhd ? "vhd" : "raw", ") through ", result_.host_name,
            "; attached as userdevice ", d.userdevice));
      }
      result_.plan.push_back(
          absl::StrCat("PUT /import_metadata of vm-metadata.xml's VM as ",
                       Quote(result_.vm_name)));
      if (r_.start) result_.plan.push_back("start it");
      return absl::OkStatus();
    }
    for (const BackupDisk& d : backup_.disks) {
      const std::string exported_vdi_id = vdi_id_of_userdevice[d.userdevice];
      const XmlRpcValue& vdi_obj = *by_id[exported_vdi_id];
      const XmlRpcValue* vdi_snap = vdi_obj.Find("snapshot");
      XmlRpcValue args = XmlRpcValue::MakeStruct();
      args.AddMember("name_label",
                     XmlRpcValue::String(!d.name_label.empty()
                                             ? d.name_label
                                             : Str(*vdi_snap, "name_label")));
      args.AddMember("name_description",
                     XmlRpcValue::String(Str(*vdi_snap, "name_description")));
      args.AddMember("SR", XmlRpcValue::String(sr_ref_));
      args.AddMember("virtual_size",
                     XmlRpcValue::String(absl::StrCat(d.virtual_size)));
      args.AddMember("type", XmlRpcValue::String("user"));
      args.AddMember("sharable", XmlRpcValue::Bool(false));
      args.AddMember("read_only", XmlRpcValue::Bool(false));
      args.AddMember("other_config", XmlRpcValue::MakeStruct());
      absl::StatusOr<XmlRpcValue> made = c_.xapi->Call(
          "VDI.create", {std::move(args)}, CallKind::kNotIdempotent);
      if (!made.ok() || !made->is_string()) {
        return Annotate(
            made.ok() ? absl::InvalidArgumentError("VDI.create returned no ref")
                      : made.status(),
            "creating the disk of ", d.device, " (",
            FormatBytes(d.virtual_size), ") on SR ", Quote(result_.sr_name));
      }
      const std::string vdi_ref = made->text();
      made_vdis_.insert(vdi_ref);
      VMB_ASSIGN_OR_RETURN(VdiRecord vdi, c_.xapi->GetVdi(vdi_ref));
      const uint64_t vsize = d.virtual_size;
      const bool vhd = d.vhd;
      VMB_ASSIGN_OR_RETURN(
          std::unique_ptr<CheckedFileReader> reader,
          OpenChecked(d.file, d.size, d.sha256,
                      [vsize, vhd,
                       test = r_.test]() -> std::unique_ptr<ExportVerifier> {
                        return vhd ? NewVhdVerifier(vsize, test)
                                   : NewRawVerifier(vsize, test);
                      }));
      Log(absl::StrCat("disk ", d.device, ": ", d.file, " (",
                       FormatBytes(reader->size()), ") into a new VDI ",
                       vdi.uuid));
      VMB_RETURN_IF_ERROR(
          Upload(d.file, "/import_raw_vdi",
                 {{"vdi", vdi_ref}, {"format", vhd ? "vhd" : "raw"}},
                 reader.get(), nullptr)
              .status());
      const auto digests = reader->ContentSha256();
      if (auto it = digests.find(""); it != digests.end())
        disk_digests_[d.userdevice] = it->second;
      vdi_map[Str(*vdi_snap, "uuid")] = vdi.uuid;
    }
    // The VM's shell: only the VM, its kept disks and their SRs, its VBDs
    // (CDs ejected), its VIFs and their networks.
    XmlRpcValue objects = XmlRpcValue::MakeArray();
    std::set<std::string> kept_srs, kept_networks;
    for (const auto& [id, o] : by_id) {
      const XmlRpcValue* snap = o->Find("snapshot");
      const std::string cls = Str(*o, "class");
      if (snap == nullptr) continue;
      if (cls == "VDI" && kept_vdi_ids.count(id) != 0)
        kept_srs.insert(Str(*snap, "SR"));
      if (cls == "VIF" && Str(*snap, "VM") == vm_id_)
        kept_networks.insert(Str(*snap, "network"));
    }
    VMB_ASSIGN_OR_RETURN(RecordMap<NetworkRecord> networks,
                         c_.xapi->GetAllNetworks());
    for (const auto& [id, o] : by_id) {
      const std::string cls = Str(*o, "class");
      XmlRpcValue copy = *o;
      const XmlRpcValue* snap = o->Find("snapshot");
      if (snap == nullptr) continue;
      bool keep = false;
      if (cls == "VM" && id == vm_id_) {
        XmlRpcValue rec = *snap;
        SetMember(&rec, "name_label", XmlRpcValue::String(result_.vm_name));
        SetMember(&rec, "snapshots", XmlRpcValue::MakeArray());
        SetMember(&rec, "parent", XmlRpcValue::String(std::string(kNullRef)));
        SetMember(&rec, "power_state", XmlRpcValue::String("Halted"));
        SetMember(&copy, "snapshot", std::move(rec));
        keep = true;
      } else if (cls == "VBD" && Str(*snap, "VM") == vm_id_) {
        keep = Str(*snap, "type") != "Disk" ||
               kept_vdi_ids.count(Str(*snap, "VDI")) != 0;
      } else if (cls == "VIF" && Str(*snap, "VM") == vm_id_) {
        keep = true;
      } else if (cls == "VDI") {
        keep = kept_vdi_ids.count(id) != 0;
      } else if (cls == "SR") {
        keep = kept_srs.count(id) != 0;
      } else if (cls == "network" && kept_networks.count(id) != 0) {
        keep = true;
        const std::string name = Str(*snap, "name_label");
        const std::string bridge = Str(*snap, "bridge");
        bool found = false;
        for (const auto& [ref, n] : networks) {
          if (n.name_label == name || (!bridge.empty() && n.bridge == bridge))
            found = true;
        }
        if (!found) {
          Warn(absl::StrCat("no network named ", Quote(name),
                            " in this pool: XAPI makes a new internal network "
                            "of that name for the VM's VIF; connect it to the "
                            "right network before starting the VM"));
        }
      }
      if (keep) objects.Append(std::move(copy));
    }
    XmlRpcValue shell = XmlRpcValue::MakeStruct();
    if (const XmlRpcValue* version = ova_.Find("version"))
      shell.AddMember("version", *version);
    shell.AddMember("objects", std::move(objects));
    const std::string tar = TarOf("ova.xml", EncodeXmlRpcValue(shell));
    std::vector<std::pair<std::string, std::string>> query;
    if (r_.preserve) query.emplace_back("restore", "true");
    for (const auto& [from, to] : vdi_map)
      query.emplace_back(absl::StrCat("vdi:", from), to);
    Log(absl::StrCat("making the VM ", Quote(result_.vm_name),
                     " from vm-metadata.xml"));
    VMB_ASSIGN_OR_RETURN(std::string task_result,
                         Upload("vm-metadata.xml", "/import_metadata",
                                std::move(query), nullptr, &tar));
    VMB_ASSIGN_OR_RETURN(result_.vm_ref, FirstRef(task_result));
    made_vm_ = result_.vm_ref;
    return FinishVm();
  }

  // ---- clean-up

  absl::Status CleanUp(const absl::Status& cause) {
    std::vector<std::string> removed, left;
    if (!made_vm_.empty()) {
      // The VM's disks too, if the import made them.
      absl::StatusOr<VmRecord> vm = c_.xapi->GetVm(made_vm_);
      if (vm.ok()) {
        for (const std::string& vbd_ref : vm->vbds) {
          absl::StatusOr<VbdRecord> vbd = c_.xapi->GetVbd(vbd_ref);
          if (vbd.ok() && !vbd->vdi.empty() && vbd->vdi != kNullRef &&
              backup_.kind == "vm-export") {
            made_vdis_.insert(vbd->vdi);
          }
        }
      }
      absl::Status s = c_.xapi->DestroyVm(made_vm_);
      (s.ok() ? removed : left).push_back(absl::StrCat("VM ", made_vm_));
    }
    for (const std::string& vdi : made_vdis_) {
      absl::StatusOr<VdiRecord> rec = c_.xapi->GetVdi(vdi);
      const std::string what = absl::StrCat("VDI ", rec.ok() ? rec->uuid : vdi);
      // Right after an export XAPI may still hold the disk (VDI_IN_USE).
      absl::Status s = DestroyRetryingWhileInUse(
          [&] { return c_.xapi->DestroyVdi(vdi); }, absl::Minutes(2),
          absl::Milliseconds(100), *c_.clock);
      (s.ok() ? removed : left).push_back(what);
    }
    made_vm_.clear();
    made_vdis_.clear();
    std::string note;
    if (!removed.empty())
      absl::StrAppend(&note,
                      "; removed what it made: ", absl::StrJoin(removed, ", "));
    if (!left.empty())
      absl::StrAppend(&note, "; COULD NOT REMOVE: ", absl::StrJoin(left, ", "),
                      " (remove by hand)");
    if (note.empty()) note = "; nothing was left in the pool";
    if (cause.ok()) {
      // A restore test's tidy-up: UNKNOWN carries the line when everything
      // went, FAILED_PRECONDITION when something is left.
      return absl::Status(left.empty() ? absl::StatusCode::kUnknown
                                       : absl::StatusCode::kFailedPrecondition,
                          absl::StrCat("restore test done", note));
    }
    return absl::Status(cause.code(), absl::StrCat(cause.message(), note));
  }

  // ---- restore test

  // SHA-256 of a VDI's content, read through /export_raw_vdi.
  absl::StatusOr<std::string> ExportSha256(const std::string& vdi_ref) {
    VMB_ASSIGN_OR_RETURN(XapiStreamRequest req,
                         TaskRequest("vmbackup restore test", "/export_raw_vdi",
                                     {{"vdi", vdi_ref}, {"format", "raw"}}));
    Sha256 sha;
    absl::StatusOr<XapiStreamResult> got =
        XapiStreamGet(req, [&](absl::string_view data) {
          sha.Update(data);
          return absl::OkStatus();
        });
    absl::StatusOr<TaskRecord> done = EndTask(req.task_id);
    VMB_RETURN_IF_ERROR(got.status());
    VMB_RETURN_IF_ERROR(done.status());
    return sha.Hex();
  }

  // Reads every restored disk back and compares it with the backup's.
  absl::Status CompareRestoredDisks() {
    // The backup's digests by userdevice; a disk that no VBD of the XVA
    // names (keyed by its uuid) is matched by content.
    std::map<std::string, std::string> want;
    std::multiset<std::string> want_any;
    if (backup_.kind == "vdi-export") {
      want = disk_digests_;
    } else {
      for (const auto& [key, sha] : xva_digests_) {
        // By the userdevice of the XVA's own VBD (digits), else the
        // VDI's uuid.
        const bool userdevice =
            !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
              return absl::ascii_isdigit(static_cast<unsigned char>(c));
            });
        if (userdevice) {
          want[key] = sha;
        } else {
          want_any.insert(sha);
        }
      }
    }
    VMB_ASSIGN_OR_RETURN(VmRecord vm, c_.xapi->GetVm(result_.vm_ref));
    size_t compared = 0;
    for (const std::string& vbd_ref : vm.vbds) {
      VMB_ASSIGN_OR_RETURN(VbdRecord vbd, c_.xapi->GetVbd(vbd_ref));
      if (vbd.type != "Disk" || vbd.vdi.empty() || vbd.vdi == kNullRef)
        continue;
      VMB_ASSIGN_OR_RETURN(VdiRecord vdi, c_.xapi->GetVdi(vbd.vdi));
      const std::string size =
          FormatBytes(static_cast<uint64_t>(vdi.virtual_size));
      Log(absl::StrCat("restore test: reading disk ", vbd.userdevice, " back (",
                       size, ")"));
      absl::StatusOr<std::string> got = ExportSha256(vbd.vdi);
      if (!got.ok()) {
        return Annotate(got.status(), "restore test: reading disk ",
                        vbd.userdevice, " back");
      }
      std::string expected = "(none of the backup's)";
      if (auto it = want.find(vbd.userdevice); it != want.end()) {
        expected = it->second;
        want.erase(it);
      } else if (auto any = want_any.find(*got); any != want_any.end()) {
        expected = *any;
        want_any.erase(any);
      } else if (want_any.empty()) {
        return absl::DataLossError(absl::StrCat(
            "restore test: the restored VM has a disk at userdevice ",
            vbd.userdevice, " that the backup does not"));
      }
      if (*got != expected) {
        return absl::DataLossError(absl::StrCat(
            "restore test: disk ", vbd.userdevice, " reads back as SHA-256 ",
            *got, ", the backup holds ", expected));
      }
      ++compared;
      result_.test.push_back(absl::StrCat(vbd.userdevice, ": ", size,
                                          ", SHA-256 ", *got,
                                          ", equal to the backup's"));
    }
    if (!want.empty() || !want_any.empty() || compared == 0) {
      return absl::DataLossError(
          absl::StrCat("restore test: ", want.size() + want_any.size(),
                       " disk(s) of the backup are not on the restored VM (",
                       compared, " compared)"));
    }
    return absl::OkStatus();
  }

  static const char* CompressionName(v1::Compression c) {
    switch (c) {
      case v1::COMPRESSION_GZIP:
        return "gzip";
      case v1::COMPRESSION_ZSTD:
        return "zstd";
      default:
        return "uncompressed";
    }
  }

  std::vector<std::string> DataFiles() const {
    if (!backup_.xva.empty()) return {backup_.xva};
    std::vector<std::string> out;
    for (const BackupDisk& d : backup_.disks) out.push_back(d.file);
    return out;
  }

  const RestoreContext& c_;
  const RestoreRequest& r_;
  uint64_t total_bytes_ = 0;
  Backup backup_;
  RestoreResult result_;
  RecordMap<HostRecord> hosts_;
  std::string sr_ref_, sr_uuid_;
  std::string data_url_;
  std::vector<HostIdentity> redirect_hosts_;
  XmlRpcValue ova_;
  std::string vm_id_;    // the VM's id in vm-metadata.xml
  std::string vm_uuid_;  // and its uuid
  std::string made_vm_;
  std::set<std::string> made_vdis_;
  // A restore test: the backup's content digests (ContentSha256).
  std::map<std::string, std::string> xva_digests_;   // by VDI uuid
  std::map<std::string, std::string> disk_digests_;  // by userdevice
};

}  // namespace

absl::StatusOr<std::string> PickBackupToRestore(Filesystem& fs,
                                                const std::string& backup_dir,
                                                const std::string& vm,
                                                const std::string& at_text) {
  std::optional<absl::CivilSecond> at;
  if (!at_text.empty()) {
    absl::CivilSecond t;
    absl::CivilDay d;
    if (absl::ParseCivilTime(at_text, &d)) {
      t = absl::CivilSecond(d) + 86399;  // the whole day
    } else {
      std::string iso = at_text;
      if (iso.size() > 10 && iso[10] == '-') iso[10] = 'T';
      if (!absl::ParseCivilTime(iso, &t)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--at ", EscapeForLog(at_text),
                         ": not YYYY-MM-DD or YYYY-MM-DD-HH:MM:SS"));
      }
    }
    at = t;
  }
  absl::StatusOr<std::vector<DirEntry>> entries = fs.ListDir(backup_dir);
  if (!entries.ok()) return entries.status();
  std::vector<std::string> folders;
  for (const DirEntry& e : *entries) {
    if (!e.is_dir) continue;
    if (e.name == SanitizeVmName(vm) ||
        absl::EndsWith(e.name, absl::StrCat("--", vm))) {
      folders.push_back(e.name);
    }
  }
  if (folders.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "--vm ", EscapeForLog(vm), ": no folder of that VM in ", backup_dir));
  }
  if (folders.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("--vm ", EscapeForLog(vm), ": several folders match (",
                     absl::StrJoin(folders, ", "), "); name it by uuid"));
  }
  absl::StatusOr<std::vector<FoundBackup>> backups =
      FindBackups(fs, JoinPath(backup_dir, folders[0]));
  if (!backups.ok()) return backups.status();
  const FoundBackup* best = nullptr;
  for (const FoundBackup& b : *backups) {
    if (!b.committed || (at.has_value() && b.time > *at)) continue;
    if (best == nullptr || b.time > best->time) best = &b;
  }
  if (best == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("--vm ", EscapeForLog(vm), ": no committed backup in ",
                     JoinPath(backup_dir, folders[0]),
                     at.has_value() ? " at or before --at" : ""));
  }
  return best->path;
}

absl::StatusOr<RestoreResult> RestoreBackup(const RestoreContext& context,
                                            const RestoreRequest& request) {
  Restore restore(context, request);
  return restore.Run();
}

}  // namespace vmb
