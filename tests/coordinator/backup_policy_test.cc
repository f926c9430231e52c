// SPDX-License-Identifier: Apache-2.0
// The config file parser. Rows refer to the seed checklist
// (VmBackup.py v3.25 behaviour, docs/compatibility.md).
#include "coordinator/backup_policy.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"

namespace vmb::coordinator {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

absl::StatusOr<BackupPolicy> Parse(const std::string& text,
                                   const PolicyOverrides& o = {}) {
  return ParseBackupPolicy(text, "weekly.cfg", o);
}

// Row 12: defaults.
TEST(BackupPolicyTest, DefaultsAreTheSeeds) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse(""));
  EXPECT_FALSE(p.pool_db_backup);
  EXPECT_EQ(p.max_backups, 4);
  EXPECT_EQ(p.backup_dir, "/snapshots/BACKUPS");
  EXPECT_EQ(p.status_log, "/snapshots/NAUbackup/status.log");
  EXPECT_EQ(p.vdi_export_format, v1::VDI_FORMAT_RAW);
  EXPECT_EQ(p.compress, v1::COMPRESSION_NONE);
  EXPECT_EQ(p.per_host_concurrency, 1);
  EXPECT_EQ(p.backup_dir_format, "backup-YYYY-MM-DD-(HH:MM:SS)");
  EXPECT_TRUE(p.rules.empty());
}

// Rows 9 and 10: line syntax and the seed's keys.
TEST(BackupPolicyTest, ParsesTheSeedsExampleConfig) {
  const std::string text = R"(# comment
pool_db_backup=1
max_backups=3

backup_dir=/path/to/backupspace
vdi_export_format=vhd
  # an indented comment is a comment too
exclude=PROD-WinDomainController
vdi-export=my-vm-name
vm-export = my-vm-name
vm-export=my-third-vm:3
vm-export=PROD.*
vm-export=DEV.*:2
status_log = /var/log/vmbackup/status.log
)";
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse(text));
  EXPECT_TRUE(p.pool_db_backup);
  EXPECT_EQ(p.max_backups, 3);
  EXPECT_EQ(p.backup_dir, "/path/to/backupspace");
  EXPECT_EQ(p.vdi_export_format, v1::VDI_FORMAT_VHD);
  EXPECT_EQ(p.status_log, "/var/log/vmbackup/status.log");
  ASSERT_EQ(p.rules.size(), 6u);
  EXPECT_EQ(p.rules[0].kind, SelectionRule::Kind::kExclude);
  EXPECT_EQ(p.rules[0].line, 8);
  EXPECT_EQ(p.rules[2].pattern,
            "my-vm-name");  // whitespace around key and value stripped
  EXPECT_EQ(p.rules[3].pattern, "my-third-vm");
  EXPECT_EQ(p.rules[3].max_backups, 3);
  EXPECT_EQ(p.rules[5].pattern, "DEV.*");
  EXPECT_EQ(p.rules[5].max_backups, 2);
  EXPECT_EQ(p.rules[5].text, "vm-export=DEV.*:2");
}

TEST(BackupPolicyTest, ValuesMayContainEquals) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse("vm-export=a=b\nbackup_dir=/x=y"));
  EXPECT_EQ(p.rules[0].pattern, "a=b");
  EXPECT_EQ(p.backup_dir, "/x=y");
}

TEST(BackupPolicyTest, NewKeys) {
  const std::string text = R"(compress=zstd
pre_clean=true
mail_to=a@example.com, b@example.com
mail_to=c@example.com
mail_from=vmbackup@example.com
mail_smtp_url=smtps://mail.example.com:465
mail_smtp_user=backup
mail_smtp_password_file=/etc/vmbackup/smtp.pass
mail_when=problems
per_host_concurrency=2
max_concurrency=6
stall_timeout=90s
vm_timeout=6h
bandwidth_limit=100M
require_mount=true
min_free_space=2G
vdi_export_disks=all
backup_dir_format=backup-YYYY-MM-DD-(HH-MM-SS)
)";
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse(text));
  EXPECT_EQ(p.compress, v1::COMPRESSION_ZSTD);
  EXPECT_TRUE(p.pre_clean);
  EXPECT_THAT(p.mail_to,
              ElementsAre("a@example.com", "b@example.com", "c@example.com"));
  EXPECT_EQ(p.mail_smtp_url, "smtps://mail.example.com:465");
  EXPECT_EQ(p.mail_when, MailWhen::kProblems);
  EXPECT_EQ(p.per_host_concurrency, 2);
  EXPECT_EQ(p.max_concurrency, 6);
  EXPECT_EQ(p.stall_timeout, absl::Seconds(90));
  EXPECT_EQ(p.vm_timeout, absl::Hours(6));
  EXPECT_EQ(p.bandwidth_limit, uint64_t{100} << 20);
  EXPECT_TRUE(p.require_mount);
  EXPECT_EQ(p.min_free_space, uint64_t{2} << 30);
  EXPECT_EQ(p.vdi_export_disks, VdiExportDisks::kAll);
  EXPECT_EQ(p.backup_dir_format, "backup-YYYY-MM-DD-(HH-MM-SS)");
}

// Row 11: unknown keys.
TEST(BackupPolicyTest, UnknownKeysAreErrorsUnlessIgnored) {
  EXPECT_THAT(
      Parse("max_backups=2\nbogus=1\n").status(),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "weekly.cfg:2: unknown key 'bogus' (ignore_extra_keys=true")));
  ASSERT_OK_AND_ASSIGN(BackupPolicy p,
                       Parse("bogus=1\nignore_extra_keys=true\n"));
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_EQ(p.warnings[0].line, 1);
  EXPECT_THAT(p.warnings[0].message, HasSubstr("ignoring unknown key 'bogus'"));
  PolicyOverrides cli;
  cli.ignore_extra_keys = true;
  EXPECT_OK(Parse("bogus=1\n", cli).status());
}

TEST(BackupPolicyTest, CommandLineOverridesWin) {
  PolicyOverrides cli;
  cli.compress = v1::COMPRESSION_GZIP;
  cli.pre_clean = false;
  ASSERT_OK_AND_ASSIGN(BackupPolicy p,
                       Parse("compress=zstd\npre_clean=true\n", cli));
  EXPECT_EQ(p.compress, v1::COMPRESSION_GZIP);
  EXPECT_FALSE(p.pre_clean);
}

// Rows 13, 19, 20 and the malformed-file contract: one clear message with
// the file and line.
TEST(BackupPolicyTest, MalformedConfigsNameFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"max_backups", "weekly.cfg:1: expected key=value"},
      {"=3", "weekly.cfg:1: a line starting with '=' has no key"},
      {"max_backups=0",
       "weekly.cfg:1: max_backups=0: must be a whole number >= 1"},
      {"max_backups=-1", "max_backups=-1: must be a whole number >= 1"},
      {"max_backups=three", "max_backups=three: must be a whole number"},
      {"max_backups=2\nmax_backups=3",
       "weekly.cfg:2: max_backups is set twice (lines 1 and 2)"},
      {"backup_dir=/a\n\nbackup_dir=/b",
       "backup_dir is set twice (lines 1 and 3)"},
      {"pool_db_backup=yes", "pool_db_backup=yes: must be 0 or 1"},
      {"pool_db_backup=2", "must be 0 or 1"},
      {"vdi_export_format=qcow2",
       "vdi_export_format=qcow2: must be raw or vhd"},
      {"backup_dir=relative/path",
       "backup_dir=relative/path: must be an absolute path"},
      {"backup_dir=", "backup_dir=: must be an absolute path"},
      {"status_log=/var/log/", "must be the absolute path of a file"},
      {"vm-export=web:0",
       "weekly.cfg:1: vm-export=web:0: the :N after the name must be at least "
       "1"},
      {"vm-export=web:-2", "must be at least 1, not -2"},
      {"vdi-export=web:3.5", "must be a whole number of backups, not '3.5'"},
      {"vm-export=web:+3", "must be a whole number of backups, not '+3'"},
      {"vm-export=web:99999999999", "must be a whole number of backups"},
      {"compress=bzip2", "compress=bzip2: must be none, gzip or zstd"},
      {"pre_clean=maybe", "pre_clean=maybe: must be true or false"},
      {"mail_to=not-an-address", "'not-an-address' is not an e-mail address"},
      {"mail_to=", "mail_to=: needs at least one address"},
      {"mail_from=a@b,c@d", "must be one e-mail address"},
      {"mail_smtp_url=mail.example.com", "must start with smtp:// or smtps://"},
      {"mail_smtp_url=smtp://user:pw@mail", "credentials go in mail_smtp_user"},
      {"mail_smtp_url=smtp://mail:99999", "has a bad port"},
      {"mail_when=sometimes", "must be always, problems, failure or never"},
      {"mail_starttls=maybe", "mail_starttls=maybe"},
      {"mail_smtp_ca=relative.pem", "must be an absolute path"},
      {"mail_smtp_user=backup", "mail_smtp_user needs mail_smtp_password_file"},
      {"per_host_concurrency=0", "must be a whole number from 1 to 64"},
      {"max_concurrency=-1", "must be a whole number from 0 (no limit)"},
      {"stall_timeout=0", "stall_timeout=0: must be at least 1s"},
      {"stall_timeout=ten minutes", "must be a whole number of seconds"},
      {"vm_timeout=30s", "must be 0 (no limit) or at least 1m"},
      {"bandwidth_limit=fast", "must be a whole number of bytes"},
      {"min_free_space=-5G", "must be a whole number of bytes"},
      {"min_free_space=99999999999T", "is too large"},
      {"vdi_export_disks=some", "must be boot or all"},
      {"backup_dir_format=%Y%m%d", "must be backup-YYYY-MM-DD-(HH:MM:SS) or"},
      {"vm-export=a\x01"
       "b",
       "control character"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    EXPECT_THAT(
        Parse(text).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)));
  }
}

// Rows 19 and 57: ":N" counts only when it is a whole number; names with ':'
// and ',' stay whole.
TEST(BackupPolicyTest, ColonSuffixIsAnOverrideOnlyWhenNumeric) {
  struct Case {
    std::string value;
    std::string pattern;
    std::optional<int> n;
  };
  for (const Case& c :
       std::vector<Case>{{"web", "web", {}},
                         {"web:7", "web", 7},
                         {"PRD-web:8080,v2", "PRD-web:8080,v2", {}},
                         {"PRD-web:8080,v2:3", "PRD-web:8080,v2", 3},
                         {"db:replica", "db:replica", {}},
                         {".*SAVE$:5", ".*SAVE$", 5},
                         {"web:0$", "web:0$", {}}}) {
    SCOPED_TRACE(c.value);
    std::string pattern;
    std::optional<int> n;
    ASSERT_OK(SplitMaxBackups(c.value, &pattern, &n));
    EXPECT_EQ(pattern, c.pattern);
    EXPECT_EQ(n, c.n);
  }
}

// Row 20: empty values.
TEST(BackupPolicyTest, EmptyValues) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p,
                       Parse("exclude=\nvdi-export=\nvm-export=\n"));
  ASSERT_EQ(p.rules.size(), 1u);  // only the vm-export (which selects every VM)
  EXPECT_EQ(p.rules[0].kind, SelectionRule::Kind::kVmExport);
  EXPECT_EQ(p.rules[0].pattern, "");
  EXPECT_EQ(p.warnings.size(), 2u);
}

// Rows 7 and 8: command-line selectors.
TEST(BackupPolicyTest, Selectors) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, PolicyForSelector("DEV mySql"));
  ASSERT_EQ(p.rules.size(), 1u);
  EXPECT_EQ(p.rules[0].kind, SelectionRule::Kind::kVmExport);
  EXPECT_EQ(p.rules[0].line, 0);
  EXPECT_EQ(p.max_backups, 4);
  ASSERT_OK_AND_ASSIGN(p, PolicyForSelector("vdi-export=DEV-mySql:2"));
  EXPECT_EQ(p.rules[0].kind, SelectionRule::Kind::kVdiExport);
  EXPECT_EQ(p.rules[0].max_backups, 2);
  ASSERT_OK_AND_ASSIGN(p, PolicyForSelector("vm-export=PROD.*"));
  EXPECT_EQ(p.rules[0].pattern, "PROD.*");
  EXPECT_THAT(
      PolicyForSelector("exclude=X").status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("neither an existing config file nor a vm-selector")));
  EXPECT_THAT(
      PolicyForSelector("DEV:0").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 1")));
}

TEST(BackupPolicyTest, SizesAndDurations) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("512"), 512u);
  EXPECT_EQ(*ParseByteSize("4k"), 4096u);
  EXPECT_EQ(*ParseByteSize("10MiB"), 10u << 20);
  EXPECT_EQ(*ParseByteSize("3GB"), uint64_t{3} << 30);
  EXPECT_EQ(*ParseByteSize("1T"), uint64_t{1} << 40);
  EXPECT_FALSE(ParseByteSize("1.5G").ok());
  EXPECT_FALSE(ParseByteSize("G").ok());
  EXPECT_EQ(*ParseDurationValue("600"), absl::Minutes(10));
  EXPECT_EQ(*ParseDurationValue("45s"), absl::Seconds(45));
  EXPECT_EQ(*ParseDurationValue("2h"), absl::Hours(2));
  EXPECT_EQ(*ParseDurationValue("1d"), absl::Hours(24));
  EXPECT_FALSE(ParseDurationValue("-5m").ok());
  EXPECT_FALSE(ParseDurationValue("5 m").ok());
}

TEST(BackupPolicyTest, VerifyAfterRunIsAPercentage) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse(""));
  EXPECT_EQ(p.verify_after_run, 0);
  ASSERT_OK_AND_ASSIGN(p, Parse("verify_after_run=25%\n"));
  EXPECT_EQ(p.verify_after_run, 25);
  ASSERT_OK_AND_ASSIGN(p, Parse("verify_after_run=100\n"));
  EXPECT_EQ(p.verify_after_run, 100);
  for (const char* bad : {"101", "-5", "ten", "10%%", ""}) {
    EXPECT_THAT(Parse(absl::StrCat("verify_after_run=", bad, "\n")),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("weekly.cfg:1: verify_after_run=")))
        << bad;
  }
}

TEST(BackupPolicyTest, ExampleAndHelpParse) {
  ASSERT_OK_AND_ASSIGN(BackupPolicy p, Parse(ExampleConfig()));
  EXPECT_EQ(p.max_backups, 3);
  EXPECT_THAT(ConfigKeysHelp(), HasSubstr("backup_dir_format="));
}

// The packaged example (deploy/etc/example.cfg) and `vmbackup config` name
// every key; the example's commented lines parse once uncommented, and give
// what the defaults give.
TEST(BackupPolicyTest, ExampleAndHelpNameEveryKey) {
  const std::string example = ExampleConfig();
  const std::string help = ConfigKeysHelp();
  ASSERT_THAT(ConfigKeyNames(), Contains("mail_smtp_ca"));
  for (const std::string& key : ConfigKeyNames()) {
    EXPECT_TRUE(absl::StrContains(example, absl::StrCat("\n", key, "=")) ||
                absl::StrContains(example, absl::StrCat("\n#", key, "=")))
        << key << " is not in deploy/etc/example.cfg";
    EXPECT_THAT(help, HasSubstr(absl::StrCat("  ", key, "="))) << key;
  }
  EXPECT_THAT(help, HasSubstr("always|problems|failure|never"));

  std::string uncommented;
  for (absl::string_view line : absl::StrSplit(example, '\n')) {
    absl::string_view setting = line;
    const bool commented_setting = absl::ConsumePrefix(&setting, "#") &&
                                   setting.find('=') != setting.npos &&
                                   setting.find(' ') > setting.find('=');
    absl::StrAppend(&uncommented, commented_setting ? setting : line, "\n");
  }
  ASSERT_OK_AND_ASSIGN(BackupPolicy defaults, Parse(ExampleConfig()));
  ASSERT_OK_AND_ASSIGN(BackupPolicy all, Parse(uncommented));
  EXPECT_EQ(all.compress, defaults.compress);
  EXPECT_EQ(all.per_host_concurrency, defaults.per_host_concurrency);
  EXPECT_EQ(all.stall_timeout, defaults.stall_timeout);
  EXPECT_EQ(all.vm_timeout, defaults.vm_timeout);
  EXPECT_EQ(all.backup_dir_format, defaults.backup_dir_format);
  EXPECT_EQ(all.mail_when, defaults.mail_when);
  EXPECT_EQ(all.status_log, defaults.status_log);
  EXPECT_EQ(all.mail_to, std::vector<std::string>{"backup-admins@example.com"});
}

}  // namespace
}  // namespace vmb::coordinator
