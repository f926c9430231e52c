// SPDX-License-Identifier: Apache-2.0
#include "tests/fakes/fake_xml_rpc_transport.h"

#include "absl/strings/str_cat.h"

namespace vmb::testing {

void FakeXmlRpcTransport::AddReplyLocked(const std::string& method,
                                         Reply reply) {
  std::deque<Reply>& queue = replies_[method];
  // A reply kept only to repeat gives way to a newly added one.
  if (queue.size() == 1 && queue.front().used) queue.clear();
  queue.push_back(std::move(reply));
}

void FakeXmlRpcTransport::AddRawReply(const std::string& method,
                                      std::string body) {
  absl::MutexLock lock(&mu_);
  AddReplyLocked(method, Reply{absl::OkStatus(), std::move(body)});
}

void FakeXmlRpcTransport::AddSuccess(const std::string& method,
                                     const XmlRpcValue& value) {
  XmlRpcValue envelope = XmlRpcValue::MakeStruct();
  envelope.AddMember("Status", XmlRpcValue::String("Success"));
  envelope.AddMember("Value", value);
  AddRawReply(method, EncodeMethodResponse(envelope));
}

void FakeXmlRpcTransport::AddFailure(
    const std::string& method, std::vector<std::string> error_description) {
  XmlRpcValue errors = XmlRpcValue::MakeArray();
  for (std::string& e : error_description)
    errors.Append(XmlRpcValue::String(std::move(e)));
  XmlRpcValue envelope = XmlRpcValue::MakeStruct();
  envelope.AddMember("Status", XmlRpcValue::String("Failure"));
  envelope.AddMember("ErrorDescription", errors);
  AddRawReply(method, EncodeMethodResponse(envelope));
}

void FakeXmlRpcTransport::AddTransportError(const std::string& method,
                                            absl::Status status) {
  absl::MutexLock lock(&mu_);
  AddReplyLocked(method, Reply{std::move(status), ""});
}

std::vector<FakeXmlRpcTransport::Call> FakeXmlRpcTransport::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<std::string> FakeXmlRpcTransport::methods() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const Call& c : calls_) out.push_back(c.method);
  return out;
}

void FakeXmlRpcTransport::Hold(const std::string& method) {
  absl::MutexLock lock(&mu_);
  holding_.insert(method);
}

void FakeXmlRpcTransport::Release(const std::string& method) {
  absl::MutexLock lock(&mu_);
  holding_.erase(method);
}

bool FakeXmlRpcTransport::WaitForHeldCall(const std::string& method,
                                          absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto waiting = [this, &method]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = held_.find(method);
    return it != held_.end() && it->second > 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&waiting), timeout);
}

absl::StatusOr<std::string> FakeXmlRpcTransport::Post(
    const std::string& url, absl::string_view request) {
  absl::StatusOr<XmlRpcMethodCall> call = DecodeMethodCall(request);
  if (!call.ok()) return call.status();
  absl::MutexLock lock(&mu_);
  calls_.push_back(Call{url, call->method, call->params});
  if (holding_.count(call->method) > 0) {
    ++held_[call->method];
    const std::string& method = call->method;
    const auto released = [this, &method]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return holding_.count(method) == 0;
    };
    mu_.Await(absl::Condition(&released));
    --held_[call->method];
  }
  auto it = replies_.find(call->method);
  if (it == replies_.end() || it->second.empty()) {
    return absl::NotFoundError(
        absl::StrCat("FakeXmlRpcTransport: no reply for ", call->method));
  }
  it->second.front().used = true;
  Reply reply = it->second.front();
  if (it->second.size() > 1) it->second.pop_front();
  if (!reply.status.ok()) return reply.status;
  return reply.body;
}

}  // namespace vmb::testing
