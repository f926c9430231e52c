// SPDX-License-Identifier: Apache-2.0
#include "coordinator/mailer.h"

#include <cstring>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <curl/curl.h>

#include "common/base/logging.h"
#include "common/base/redact.h"

namespace vmb::coordinator {
namespace {

bool IsAscii(absl::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80 || c == '\r' || c == '\n') return false;
  return true;
}

// A header value: as is when printable ASCII, else RFC 2047 base64 words.
std::string EncodeHeader(absl::string_view value) {
  if (IsAscii(value)) return std::string(value);
  // Whole UTF-8 sequences per word, at most 45 bytes each (60 encoded).
  std::vector<std::string> words;
  size_t start = 0;
  while (start < value.size()) {
    size_t end = std::min(value.size(), start + 45);
    while (end < value.size() &&
           (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) {
      --end;
    }
    std::string chunk(value.substr(start, end - start));
    for (char& c : chunk)
      if (c == '\r' || c == '\n') c = ' ';
    words.push_back(
        absl::StrCat("=?utf-8?B?", absl::Base64Escape(chunk), "?="));
    start = end;
  }
  return absl::StrJoin(words, "\r\n ");
}

// Base64 of `body` in lines of 76, each ended by CRLF.
std::string Base64Lines(absl::string_view body) {
  const std::string b64 = absl::Base64Escape(body);
  std::string out;
  for (size_t i = 0; i < b64.size(); i += 76) {
    absl::StrAppend(&out, b64.substr(i, 76), "\r\n");
  }
  return out;
}

// Text with LF line ends as CRLF.
std::string Crlf(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n' && (out.empty() || out.back() != '\r')) out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t nitems, void* user) {
  auto* up = static_cast<Upload*>(user);
  const size_t n = std::min(size * nitems, up->data->size() - up->offset);
  std::memcpy(buffer, up->data->data() + up->offset, n);
  up->offset += n;
  return n;
}

}  // namespace

std::string FormatMessage(const MailMessage& message, absl::Time date,
                          const std::string& unique) {
  std::string out;
  absl::StrAppend(&out, "Date: ",
                  absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", date,
                                   absl::UTCTimeZone()),
                  "\r\n");
  absl::StrAppend(&out, "From: ", message.from, "\r\n");
  absl::StrAppend(&out, "To: ", absl::StrJoin(message.to, ", "), "\r\n");
  absl::StrAppend(&out, "Subject: ", EncodeHeader(message.subject), "\r\n");
  const std::string domain =
      message.from.find('@') != std::string::npos
          ? message.from.substr(message.from.find('@') + 1)
          : std::string("vmbackup.invalid");
  absl::StrAppend(&out, "Message-ID: <", unique, "@", domain, ">\r\n");
  absl::StrAppend(&out, "MIME-Version: 1.0\r\n");
  absl::StrAppend(&out, "X-Mailer: vmbackup\r\n");
  const std::string text_part =
      absl::StrCat("Content-Type: text/plain; charset=utf-8\r\n",
                   "Content-Transfer-Encoding: base64\r\n\r\n",
                   Base64Lines(Crlf(message.text)));
  if (message.html.empty()) {
    absl::StrAppend(&out, text_part);
    return out;
  }
  const std::string boundary = absl::StrCat("=_vmbackup_", unique);
  absl::StrAppend(&out, "Content-Type: multipart/alternative; boundary=\"",
                  boundary, "\"\r\n\r\n");
  absl::StrAppend(&out, "--", boundary, "\r\n", text_part);
  absl::StrAppend(&out, "--", boundary, "\r\n",
                  "Content-Type: text/html; charset=utf-8\r\n",
                  "Content-Transfer-Encoding: base64\r\n\r\n",
                  Base64Lines(Crlf(message.html)));
  absl::StrAppend(&out, "--", boundary, "--\r\n");
  return out;
}

CurlSmtpSender::CurlSmtpSender(Options options)
    : options_(std::move(options)) {}

absl::Status CurlSmtpSender::Send(const MailMessage& message) {
  if (message.to.empty()) {
    return absl::InvalidArgumentError("the report has no recipient (mail_to)");
  }
  // The password never reaches a log line (libcurl's errors included).
  ScopedSecret secret(RegisterSecret(options_.password, "(smtp password)"));
  absl::BitGen gen;
  const std::string unique =
      absl::StrFormat("%d.%016x", absl::ToUnixSeconds(absl::Now()),
                      absl::Uniform<uint64_t>(gen));
  const std::string payload = FormatMessage(message, absl::Now(), unique);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_slist* rcpt = nullptr;
  for (const std::string& to : message.to)
    rcpt = curl_slist_append(rcpt, absl::StrCat("<", to, ">").c_str());
  const std::string from = absl::StrCat("<", message.from, ">");
  Upload upload{&payload};
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
  curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE,
                   static_cast<curl_off_t>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      curl, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 20000L);
  const bool smtps = absl::StartsWith(options_.url, "smtps://");
  if (!smtps) {
    curl_easy_setopt(curl, CURLOPT_USE_SSL,
                     options_.require_starttls
                         ? static_cast<long>(CURLUSESSL_ALL)
                         : static_cast<long>(CURLUSESSL_NONE));
  }
  if (!options_.ca_file.empty())
    curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.user.empty()) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, options_.user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, options_.password.c_str());
  }
  const CURLcode code = curl_easy_perform(curl);
  long response = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  if (code == CURLE_OK) return absl::OkStatus();
  std::string why = error[0] != '\0' ? error : curl_easy_strerror(code);
  if (code == CURLE_USE_SSL_FAILED) {
    why = absl::StrCat(why,
                       " (the server does not offer STARTTLS; "
                       "mail_starttls=false allows sending without it)");
  } else if (code == CURLE_LOGIN_DENIED) {
    why = absl::StrCat(why, " (mail_smtp_user / mail_smtp_password_file)");
  }
  if (response != 0) absl::StrAppend(&why, " [SMTP ", response, "]");
  return absl::UnavailableError(
      absl::StrCat("mail to ", options_.url, ": ", Redact(why)));
}

absl::Status SendWithRetries(MailSender& sender, const MailMessage& message,
                             const RetryOptions& retry, Clock* clock) {
  absl::Status last;
  absl::Duration backoff = retry.first_backoff;
  for (int attempt = 1; attempt <= retry.tries; ++attempt) {
    last = sender.Send(message);
    if (last.ok() || absl::IsInvalidArgument(last)) return last;
    VMB_LOG(WARNING) << "e-mail report, try " << attempt << " of "
                     << retry.tries << ": " << last.message();
    if (attempt < retry.tries) {
      clock->SleepFor(backoff);
      backoff *= 2;
    }
  }
  return absl::Status(last.code(), absl::StrCat("not sent after ", retry.tries,
                                                " tries: ", last.message()));
}

}  // namespace vmb::coordinator
