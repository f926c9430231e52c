// SPDX-License-Identifier: Apache-2.0
#pragma once

// E-mail: a message in RFC 5322 form (a text/plain part, and an HTML part
// when given) and its delivery over SMTP with libcurl, tried a few times.
//
//   CurlSmtpSender smtp({.url = "smtp://mail.example:587", ...});
//   MailMessage m{.from = ..., .to = {...}, .subject = ..., .text = ...};
//   absl::Status s = SendWithRetries(smtp, m, {.tries = 3}, clock);

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include "common/base/clock.h"

namespace vmb::coordinator {

struct MailMessage {
  std::string from;
  std::vector<std::string> to;
  std::string subject;  // UTF-8; encoded (RFC 2047) when not ASCII
  std::string text;     // the text/plain part (UTF-8)
  std::string html;     // the text/html part; "": none
};

// The whole message: headers (Date, From, To, Subject, Message-ID,
// MIME-Version) and the body as multipart/alternative (or one text/plain
// part), each part base64 in lines of 76, CRLF line ends. `unique` goes
// into the Message-ID and the MIME boundary.
std::string FormatMessage(const MailMessage& message, absl::Time date,
                          const std::string& unique);

// Sends one message; an interface so the report can be tested without a
// server.
class MailSender {
 public:
  virtual ~MailSender() = default;
  // Errors: UNAVAILABLE (cannot connect, TLS, the server refused; the
  // message says which, without the password).
  virtual absl::Status Send(const MailMessage& message) = 0;
};

class CurlSmtpSender final : public MailSender {
 public:
  struct Options {
    std::string url;  // smtp://HOST[:PORT] or smtps://HOST[:PORT]
    // smtp:// only: refuse to send unless the server starts TLS.
    bool require_starttls = true;
    std::string ca_file;  // PEM CAs; "": the system's
    std::string user;     // AUTH when not empty
    std::string password;
    absl::Duration timeout = absl::Seconds(60);  // per try
  };
  explicit CurlSmtpSender(Options options);
  absl::Status Send(const MailMessage& message) override;

 private:
  Options options_;
};

struct RetryOptions {
  int tries = 3;
  absl::Duration first_backoff = absl::Seconds(5);  // doubled each time
};

// Send, tried up to `tries` times with backoff between (clock->SleepFor).
// Returns the last error, prefixed with the number of tries.
absl::Status SendWithRetries(MailSender& sender, const MailMessage& message,
                             const RetryOptions& retry, Clock* clock);

}  // namespace vmb::coordinator
