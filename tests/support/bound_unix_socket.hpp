// A unix socket bound to `path` (a file left there first is removed), as a test's stand-in for
// a listener systemd owns (socket activation) or for systemd's own notify socket.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace test {

// `type` SOCK_STREAM or SOCK_DGRAM; listens (backlog 16) when `listen_too`. -1 on failure.
inline int bound_unix_socket(const std::string& path, int type, bool listen_too) {
  const int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      (listen_too && ::listen(fd, 16) != 0)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace test
