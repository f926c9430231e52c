// SPDX-License-Identifier: Apache-2.0
// The launcher of a bundled vmbackup binary (docs/install.md): a static
// program that runs BUNDLE/libexec/NAME through the bundle's own dynamic
// loader with the bundle's libraries, so that the binary built on Debian 12
// runs on an older userland (a CentOS 7-based dom0: glibc 2.17), or in an
// empty chroot. It is installed as BUNDLE/bin/NAME, one copy per binary;
// NAME is its own file name.
//
// The bundle is found from /proc/self/exe, else from argv[0] (a path, or a
// name looked up in $PATH), so a chroot without /proc works too. Nothing
// else is read and no shell is needed.
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int Find(const char* argv0, char* out, size_t size) {
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n > 0) {
    out[n] = '\0';
    return 0;
  }
  if (strchr(argv0, '/') != NULL) {
    return realpath(argv0, out) != NULL ? 0 : -1;
  }
  const char* path = getenv("PATH");
  if (path == NULL) return -1;
  char candidate[PATH_MAX];
  while (*path != '\0') {
    const char* end = strchr(path, ':');
    size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
    if (len > 0 && len + strlen(argv0) + 2 < sizeof(candidate)) {
      memcpy(candidate, path, len);
      candidate[len] = '/';
      strcpy(candidate + len + 1, argv0);
      if (access(candidate, X_OK) == 0 && realpath(candidate, out) != NULL)
        return 0;
    }
    if (end == NULL) break;
    path = end + 1;
  }
  return -1;
}

int main(int argc, char** argv) {
  char self[PATH_MAX];
  if (argc < 1 || Find(argv[0], self, sizeof(self)) != 0) {
    fprintf(stderr, "vmbackup launcher: cannot find where it is installed\n");
    return 127;
  }
  // self = BUNDLE/bin/NAME
  char* slash = strrchr(self, '/');
  if (slash == NULL) return 127;
  *slash = '\0';
  const char* name = slash + 1;
  slash = strrchr(self, '/');
  if (slash == NULL) return 127;
  *slash = '\0';  // self = BUNDLE
  char loader[PATH_MAX], libs[PATH_MAX], binary[PATH_MAX];
  if (snprintf(loader, sizeof(loader), "%s/lib/ld-linux-x86-64.so.2", self) >=
          (int)sizeof(loader) ||
      snprintf(libs, sizeof(libs), "%s/lib", self) >= (int)sizeof(libs) ||
      snprintf(binary, sizeof(binary), "%s/libexec/%s", self, name) >=
          (int)sizeof(binary)) {
    fprintf(stderr, "vmbackup launcher: path too long\n");
    return 127;
  }
  // Time zones: the host's /usr/share/zoneinfo, else the bundle's copy (an
  // empty chroot has none; folder names are in the pool's local time).
  char zoneinfo[PATH_MAX];
  if (getenv("TZDIR") == NULL && access("/usr/share/zoneinfo", F_OK) != 0 &&
      snprintf(zoneinfo, sizeof(zoneinfo), "%s/share/zoneinfo", self) <
          (int)sizeof(zoneinfo) &&
      access(zoneinfo, F_OK) == 0) {
    setenv("TZDIR", zoneinfo, 1);
  }
  // ld.so --library-path LIBS --argv0 ARGV0 BINARY ARGS...
  char** args = calloc((size_t)argc + 6, sizeof(char*));
  if (args == NULL) return 127;
  int i = 0;
  args[i++] = loader;
  args[i++] = "--library-path";
  args[i++] = libs;
  args[i++] = "--argv0";
  args[i++] = argv[0];
  args[i++] = binary;
  for (int a = 1; a < argc; ++a) args[i++] = argv[a];
  args[i] = NULL;
  execv(loader, args);
  fprintf(stderr, "vmbackup launcher: cannot run %s: %s\n", loader,
          strerror(errno));
  return 127;
}
