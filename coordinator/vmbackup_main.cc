// SPDX-License-Identifier: Apache-2.0
// vmbackup: the command line (see coordinator/cli.h and docs/cli.md).
#include <signal.h>

#include <iostream>
#include <string>
#include <vector>

#include "common/curl_util.h"
#include "common/xmlrpc_codec.h"
#include "coordinator/cli.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  vmb::InitCurlGlobal();
  vmb::InitXmlRpcCodec();
  std::vector<std::string> args(argv + 1, argv + argc);
  return vmb::coordinator::RunCli(args, {&std::cin, &std::cout, &std::cerr});
}
