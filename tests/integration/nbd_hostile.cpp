// nbd_hostile: NBD clients that misbehave, for tests/integration/hostile-checks.sh, and one that
// behaves, for the verified I/O that must go on meanwhile. The malformed requests go out over
// raw sockets (libnbd refuses to send them); the constants below are taken from the NBD
// protocol (proto.md), not from the server's headers, so a wrong constant there shows up here.
//
// Usage:
//   nbd_hostile cases    --socket PATH          every bad request and bad framing, one connection
//                                               each; one PASS:/FAIL: line per case
//   nbd_hostile slow     --socket PATH          one handshake byte per second; prints how long
//                                               the server took to close the connection
//   nbd_hostile flood    --socket PATH --count N --hold S
//                                               N connections at once, each asks NBD_OPT_GO;
//                                               prints served/refused counts, holds them S s
//   nbd_hostile no-read  --socket PATH --hold S [--connections N]
//                                               sends 1 MiB reads and never reads a reply;
//                                               prints how many went out before the sockets
//                                               filled up, holds the connections S s
//   nbd_hostile verified --uri URI --backing FILE --span BYTES --seconds S [--seed N]
//                        [--stop-file PATH]
//                                               libnbd: write, read back and compare 4-64 KiB
//                                               requests in the first BYTES for S seconds, or
//                                               until PATH exists; prints latency; at the end
//                                               compares the span with FILE
// Exit status: 0 all checks passed, 1 a check failed, 2 bad usage or setup.

#include <fcntl.h>
#include <libnbd.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

// proto.md "Newstyle negotiation", "Transmission", "Error values".
constexpr uint64_t kNbdMagic = 0x4e42444d41474943;
constexpr uint64_t kIHaveOpt = 0x49484156454f5054;
constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint32_t kOptList = 3, kOptGo = 7;
constexpr uint32_t kRepAck = 1, kRepInfo = 3, kRepErrPolicy = 0x80000002,
                   kRepErrTooBig = 0x80000009;
constexpr uint16_t kInfoExport = 0, kInfoBlockSize = 3;
constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdFlush = 3;
constexpr uint32_t kEinval = 22, kEnospc = 28, kEoverflow = 75;

using Clock = std::chrono::steady_clock;

void put_be(std::vector<uint8_t>& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}
uint64_t get_be(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// A raw client socket with receive timeouts: every read is bounded.
class Raw {
 public:
  explicit Raw(const std::string& path, int timeout_s = 10) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      error = std::string("connect: ") + std::strerror(errno);
      return;
    }
    timeval tv{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  ~Raw() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  bool send_all(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      const ssize_t n = ::send(fd_, p, size, MSG_NOSIGNAL);
      if (n <= 0) {
        error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }
  bool send_all(const std::vector<uint8_t>& v) { return send_all(v.data(), v.size()); }
  // 1: got all, 0: orderly EOF or reset (the server closed), -1: timeout or other error.
  int recv_all(void* data, size_t size) {
    auto* p = static_cast<uint8_t*>(data);
    while (size > 0) {
      const ssize_t n = ::recv(fd_, p, size, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return 0;
      if (n < 0) {
        error = std::string("recv: ") + std::strerror(errno);
        return -1;
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return 1;
  }

  std::string error;

 private:
  int fd_ = -1;
};

struct Export {
  uint64_t size = 0;
  uint32_t min_block = 1, max_block = 32u << 20;
};

std::vector<uint8_t> go_option() {
  std::vector<uint8_t> m;
  put_be(m, kIHaveOpt, 8);
  put_be(m, kOptGo, 4);
  put_be(m, 4 + 2 + 2, 4);  // empty name, one info request
  put_be(m, 0, 4);
  put_be(m, 1, 2);
  put_be(m, kInfoBlockSize, 2);
  return m;
}

// The greeting and the client flags (fixed newstyle, no zeroes).
bool greet(Raw& raw) {
  uint8_t greeting[18];
  if (raw.recv_all(greeting, sizeof greeting) != 1) return false;
  if (get_be(greeting, 8) != kNbdMagic || get_be(greeting + 8, 8) != kIHaveOpt) {
    raw.error = "bad greeting";
    return false;
  }
  std::vector<uint8_t> flags;
  put_be(flags, 3, 4);
  return raw.send_all(flags);
}

// One option reply: type, data. False on EOF or error.
bool option_reply(Raw& raw, uint32_t& type, std::vector<uint8_t>& data) {
  uint8_t head[20];
  if (raw.recv_all(head, sizeof head) != 1) return false;
  if (get_be(head, 8) != kOptReplyMagic) {
    raw.error = "bad option reply magic";
    return false;
  }
  type = static_cast<uint32_t>(get_be(head + 12, 4));
  data.resize(get_be(head + 16, 4));
  return data.empty() || raw.recv_all(data.data(), data.size()) == 1;
}

// Handshake into transmission on the default export.
std::optional<Export> open_export(Raw& raw) {
  if (!raw.error.empty() || !greet(raw) || !raw.send_all(go_option())) return std::nullopt;
  Export exp;
  for (int i = 0; i < 16; ++i) {
    uint32_t type = 0;
    std::vector<uint8_t> data;
    if (!option_reply(raw, type, data)) return std::nullopt;
    if (type == kRepAck) return exp;
    if (type != kRepInfo || data.size() < 2) {
      raw.error = "NBD_OPT_GO refused: " + std::to_string(type);
      return std::nullopt;
    }
    const auto info = get_be(data.data(), 2);
    if (info == kInfoExport && data.size() >= 12) exp.size = get_be(data.data() + 2, 8);
    if (info == kInfoBlockSize && data.size() >= 14) {
      exp.min_block = static_cast<uint32_t>(get_be(data.data() + 2, 4));
      exp.max_block = static_cast<uint32_t>(get_be(data.data() + 10, 4));
    }
  }
  return std::nullopt;
}

std::vector<uint8_t> request(uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
                             uint32_t length) {
  std::vector<uint8_t> m;
  put_be(m, kRequestMagic, 4);
  put_be(m, flags, 2);
  put_be(m, type, 2);
  put_be(m, cookie, 8);
  put_be(m, offset, 8);
  put_be(m, length, 4);
  return m;
}

// A simple reply: its error, or -1 on EOF, -2 on timeout or garbage. Read data is skipped.
int64_t simple_reply(Raw& raw, uint64_t cookie, uint32_t read_length = 0) {
  uint8_t head[16];
  const int got = raw.recv_all(head, sizeof head);
  if (got == 0) return -1;
  if (got < 0 || get_be(head, 4) != kSimpleReplyMagic || get_be(head + 8, 8) != cookie) return -2;
  const auto error = static_cast<uint32_t>(get_be(head + 4, 4));
  if (error == 0 && read_length > 0) {
    std::vector<uint8_t> data(read_length);
    if (raw.recv_all(data.data(), data.size()) != 1) return -2;
  }
  return error;
}

// The connection still serves: a 4 KiB read at offset 0 succeeds.
bool still_serves(Raw& raw) {
  return raw.send_all(request(0, kCmdRead, 999, 0, 4096)) && simple_reply(raw, 999, 4096) == 0;
}

// The server closes the connection (EOF or reset) within the receive timeout, sending nothing.
bool closes_silently(Raw& raw, std::string& seen) {
  uint8_t byte;
  const ssize_t n = ::recv(raw.fd(), &byte, 1, 0);
  if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  seen = n > 0 ? "the server sent a byte" : std::string("recv: ") + std::strerror(errno);
  return false;
}

std::string describe(int64_t got) {
  if (got == -1) return "the server closed the connection";
  if (got == -2) return "no valid reply (timeout or garbage)";
  return "error " + std::to_string(got);
}

int failures = 0;
void report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("%s: %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : ": ",
              detail.c_str());
  std::fflush(stdout);
  if (!ok) ++failures;
}

// A request whose reply must be `want` (any of them), and the connection must go on serving.
void expect_error(const std::string& path, const std::string& name, uint16_t flags, uint16_t type,
                  uint64_t offset, uint32_t length, std::vector<uint32_t> want,
                  bool send_payload = false) {
  Raw raw(path);
  if (!open_export(raw)) return report(name, false, "handshake: " + raw.error);
  if (!raw.send_all(request(flags, type, 7, offset, length))) return report(name, false, raw.error);
  if (send_payload) {
    const std::vector<uint8_t> payload(length, 0xa5);
    if (!raw.send_all(payload)) return report(name, false, raw.error);
  }
  const int64_t got = simple_reply(raw, 7, type == kCmdRead ? length : 0);
  const bool right = got >= 0 && std::find(want.begin(), want.end(), got) != want.end();
  if (!right) return report(name, false, describe(got));
  const bool serving = still_serves(raw);
  report(name, serving, describe(got) + (serving ? ", still serving" : ", then no longer serving"));
}

int run_cases(const std::string& path) {
  Export exp;
  {
    Raw raw(path);
    const auto opened = open_export(raw);
    if (!opened) {
      std::printf("FAIL: handshake: %s\n", raw.error.c_str());
      return 1;
    }
    exp = *opened;
  }
  std::printf("export: %" PRIu64 " bytes, block sizes min %u max %u\n", exp.size, exp.min_block,
              exp.max_block);
  const uint32_t page = 4096;
  // proto.md "Error values": EINVAL for a read or trim past the end, ENOSPC for a write.
  expect_error(path, "read-past-end", 0, kCmdRead, exp.size - page, 2 * page, {kEinval});
  expect_error(path, "read-offset-past-end", 0, kCmdRead, exp.size + page, page, {kEinval});
  expect_error(path, "write-past-end", 0, kCmdWrite, exp.size - page, 2 * page, {kEnospc}, true);
  expect_error(path, "read-offset-overflow", 0, kCmdRead, UINT64_MAX - 511, 4096, {kEinval});
  // Length 0: the behaviour is unspecified but the server "SHOULD NOT disconnect".
  expect_error(path, "read-length-0", 0, kCmdRead, 0, 0, {0, kEinval});
  expect_error(path, "write-length-0", 0, kCmdWrite, 0, 0, {0, kEinval});
  if (exp.min_block > 1) {
    expect_error(path, "read-misaligned", 0, kCmdRead, 1, exp.min_block, {kEinval});
  }
  // Above the maximum block size: EINVAL (EOVERFLOW only for DF reads).
  if (uint64_t{exp.max_block} + exp.min_block <= exp.size) {
    expect_error(path, "read-above-max-block", 0, kCmdRead, 0, exp.max_block + exp.min_block,
                 {kEinval, kEoverflow});
  }
  expect_error(path, "unknown-flag", 0x4000, kCmdRead, 0, page, {kEinval});
  expect_error(path, "unknown-command", 0, 0x1234, 0, page, {kEinval});
  expect_error(path, "flush-with-length", 0, kCmdFlush, 0, page, {kEinval});

  {  // A write above the maximum block size: EINVAL after its payload, or a disconnect.
    Raw raw(path);
    if (!open_export(raw)) {
      report("write-above-max-block", false, raw.error);
    } else {
      const uint32_t length = exp.max_block + exp.min_block;
      raw.send_all(request(0, kCmdWrite, 8, 0, length));
      const std::vector<uint8_t> payload(length, 0x5a);
      raw.send_all(payload);  // may fail: the server is allowed to close
      const int64_t got = simple_reply(raw, 8);
      report("write-above-max-block", got == kEinval || got == -1, describe(got));
    }
  }
  {  // Garbage where a request header should be: the framing is lost, only a close is safe.
    Raw raw(path, 5);
    std::string seen;
    const bool ok = open_export(raw) && raw.send_all(std::vector<uint8_t>(28, 0xee)) &&
                    closes_silently(raw, seen);
    report("garbage-after-handshake", ok, ok ? "closed" : seen + raw.error);
  }
  {  // Garbage in the handshake, after the client flags.
    Raw raw(path, 5);
    std::string seen;
    const bool ok =
        greet(raw) && raw.send_all(std::vector<uint8_t>(64, 0xc3)) && closes_silently(raw, seen);
    report("garbage-in-handshake", ok, ok ? "closed" : seen + raw.error);
  }
  {  // Option data above what the server reads (64 KiB in proto.md's advice): NBD_REP_ERR_TOO_BIG
     // once the data is skipped, and the handshake goes on.
    Raw raw(path);
    std::vector<uint8_t> option;
    put_be(option, kIHaveOpt, 8);
    put_be(option, kOptGo, 4);
    put_be(option, 1u << 20, 4);
    option.resize(option.size() + (1u << 20), 0x77);
    uint32_t type = 0;
    std::vector<uint8_t> data;
    const bool answered = greet(raw) && raw.send_all(option) && option_reply(raw, type, data);
    const bool go_after = answered && raw.send_all(go_option());
    uint32_t next = 0;
    while (go_after && option_reply(raw, next, data) && next == kRepInfo) {
    }
    const bool ok = answered && type == kRepErrTooBig && next == kRepAck;
    report(
        "option-too-big", ok,
        ok ? "NBD_REP_ERR_TOO_BIG, then NBD_OPT_GO served"
           : "reply " + std::to_string(type) + ", then " + std::to_string(next) + " " + raw.error);
  }
  {  // Options without end (NBD_OPT_LIST over and over): the server stops after its limit.
    Raw raw(path, 10);
    std::vector<uint8_t> options;
    for (int i = 0; i < 2000; ++i) {
      put_be(options, kIHaveOpt, 8);
      put_be(options, kOptList, 4);
      put_be(options, 0, 4);
    }
    bool closed = false;
    // A send that fails is the server closing while the options still go out.
    if (greet(raw) && !raw.send_all(options)) {
      closed = true;
    } else if (raw.error.empty()) {
      std::vector<uint8_t> sink(65536);
      for (int reads = 0; reads < 10000; ++reads) {
        const ssize_t n = ::recv(raw.fd(), sink.data(), sink.size(), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) closed = true;
        if (n <= 0) break;
      }
    }
    report("endless-options", closed,
           closed ? "closed after the server's option limit" : raw.error);
  }
  {  // A write whose payload stops short, then the client's half-close: no reply, a close.
    Raw raw(path, 5);
    std::string seen;
    const bool ok = open_export(raw) && raw.send_all(request(0, kCmdWrite, 9, 0, 65536)) &&
                    raw.send_all(std::vector<uint8_t>(1000, 0x11)) &&
                    ::shutdown(raw.fd(), SHUT_WR) == 0 && closes_silently(raw, seen);
    report("short-write-payload", ok, ok ? "closed, nothing written" : seen + raw.error);
  }
  {  // Requests in flight, then a reset: the server must drop the replies and go on.
    Raw raw(path);
    bool sent = static_cast<bool>(open_export(raw));
    for (uint64_t i = 0; sent && i < 64; ++i) {
      sent = raw.send_all(request(0, kCmdRead, 100 + i, (i % 8) << 20, 1u << 20));
    }
    linger hard{1, 0};
    ::setsockopt(raw.fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    raw.close();
    Raw next(path);
    const bool ok = sent && open_export(next) && still_serves(next);
    report("disconnect-in-flight", ok, ok ? "64 reads dropped, next client served" : next.error);
  }
  return failures == 0 ? 0 : 1;
}

// One byte of the handshake per second: the greeting's reply and NBD_OPT_GO.
int run_slow(const std::string& path, int limit_s) {
  Raw raw(path, 2);
  uint8_t greeting[18];
  const auto start = Clock::now();
  if (raw.recv_all(greeting, sizeof greeting) != 1) {
    std::printf("FAIL: no greeting: %s\n", raw.error.c_str());
    return 1;
  }
  std::vector<uint8_t> bytes;
  put_be(bytes, 3, 4);
  const auto go = go_option();
  bytes.insert(bytes.end(), go.begin(), go.end());
  size_t sent = 0;
  for (int second = 0; second < limit_s; ++second) {
    if (sent < bytes.size() && ::send(raw.fd(), &bytes[sent], 1, MSG_NOSIGNAL) == 1) ++sent;
    pollfd p{raw.fd(), POLLIN, 0};
    if (::poll(&p, 1, 1000) > 0) {
      uint8_t byte;
      const ssize_t n = ::recv(raw.fd(), &byte, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        const double s = std::chrono::duration<double>(Clock::now() - start).count();
        std::printf("slow client: closed by the server after %.1f s, %zu handshake bytes sent\n", s,
                    sent);
        return 0;
      }
    }
  }
  std::printf("FAIL: slow client still connected after %d s\n", limit_s);
  return 1;
}

// `count` connections at once, driven by poll: greeting, flags, NBD_OPT_GO, then either the
// export (served) or an error reply (refused, its message kept). All stay open `hold` seconds.
int run_flood(const std::string& path, int count, int hold_s, int deadline_s) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, static_cast<rlim_t>(count) + 64);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  struct Client {
    std::unique_ptr<Raw> raw;
    std::vector<uint8_t> in;
    int state = 0;  // 0 greeting, 1 option replies, 2 served, 3 refused, 4 closed, 5 error
  };
  std::vector<Client> clients(static_cast<size_t>(count));
  int connect_failures = 0;
  for (auto& c : clients) {
    c.raw = std::make_unique<Raw>(path);
    if (!c.raw->error.empty()) {
      c.state = 5;
      ++connect_failures;
    } else {
      ::fcntl(c.raw->fd(), F_SETFL, O_NONBLOCK);
    }
  }
  std::string refusal;
  const auto deadline = Clock::now() + std::chrono::seconds(deadline_s);
  auto pending = [&] {
    return std::count_if(clients.begin(), clients.end(), [](auto& c) { return c.state < 2; });
  };
  while (pending() > 0 && Clock::now() < deadline) {
    std::vector<pollfd> fds;
    std::vector<Client*> owners;
    for (auto& c : clients) {
      if (c.state < 2) {
        fds.push_back({c.raw->fd(), POLLIN, 0});
        owners.push_back(&c);
      }
    }
    if (::poll(fds.data(), fds.size(), 200) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& c = *owners[i];
      uint8_t buf[4096];
      const ssize_t n = ::recv(c.raw->fd(), buf, sizeof buf, 0);
      if (n <= 0) {
        c.state = 4;
        continue;
      }
      c.in.insert(c.in.end(), buf, buf + n);
      if (c.state == 0 && c.in.size() >= 18) {
        c.in.erase(c.in.begin(), c.in.begin() + 18);
        std::vector<uint8_t> out;
        put_be(out, 3, 4);
        const auto go = go_option();
        out.insert(out.end(), go.begin(), go.end());
        c.state = ::send(c.raw->fd(), out.data(), out.size(), MSG_NOSIGNAL) ==
                          static_cast<ssize_t>(out.size())
                      ? 1
                      : 5;
      }
      while (c.state == 1 && c.in.size() >= 20) {
        const size_t length = get_be(&c.in[16], 4);
        if (c.in.size() < 20 + length) break;
        const auto type = static_cast<uint32_t>(get_be(&c.in[12], 4));
        if (type == kRepAck) {
          c.state = 2;
        } else if (type & 0x80000000u) {
          c.state = 3;
          if (refusal.empty()) {
            refusal.assign(c.in.begin() + 20, c.in.begin() + 20 + static_cast<long>(length));
            refusal += type == kRepErrPolicy ? " (NBD_REP_ERR_POLICY)" : " (another error)";
          }
        }
        c.in.erase(c.in.begin(), c.in.begin() + 20 + static_cast<long>(length));
      }
    }
  }
  int counts[6] = {};
  for (auto& c : clients) ++counts[c.state];
  std::printf(
      "flood: %d connections: %d served, %d refused in the handshake, %d closed without a "
      "reply, %d unanswered, %d connect failures\n",
      count, counts[2], counts[3], counts[4], counts[0] + counts[1], connect_failures);
  std::printf("flood: refusal message: %s\n", refusal.empty() ? "(none)" : refusal.c_str());
  std::printf("flood: holding\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(hold_s));
  // The refused ones that are still open give up politely now (proto.md NBD_OPT_ABORT).
  return counts[0] + counts[1] == 0 && connect_failures == 0 ? 0 : 1;
}

// Reads sent and no reply ever read, on `connections` connections at once: the server must stop
// reading each (its per-connection budget) rather than buffer replies without bound. Prints how
// many requests went out before every socket was full, then holds the connections.
int run_no_read(const std::string& path, int hold_s, uint64_t region_offset, int connections) {
  struct Client {
    std::unique_ptr<Raw> raw;
    std::vector<uint8_t> pending;
    uint64_t sent = 0;
  };
  std::vector<Client> clients(static_cast<size_t>(connections));
  for (auto& c : clients) {
    c.raw = std::make_unique<Raw>(path);
    if (!open_export(*c.raw)) {
      std::printf("FAIL: handshake: %s\n", c.raw->error.c_str());
      return 1;
    }
    ::fcntl(c.raw->fd(), F_SETFL, O_NONBLOCK);
  }
  auto stalled_since = Clock::now();
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && Clock::now() - stalled_since < std::chrono::seconds(3)) {
    bool progress = false;
    for (auto& c : clients) {
      if (c.pending.empty()) {
        c.pending = request(0, kCmdRead, c.sent, region_offset + ((c.sent % 16) << 20), 1u << 20);
      }
      const ssize_t n = ::send(c.raw->fd(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.pending.erase(c.pending.begin(), c.pending.begin() + n);
        if (c.pending.empty()) ++c.sent;
        progress = true;
      } else if (n < 0 && errno != EAGAIN) {
        std::printf("FAIL: send: %s\n", std::strerror(errno));
        return 1;
      }
    }
    if (progress) {
      stalled_since = Clock::now();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const bool stopped = Clock::now() < deadline;
  uint64_t sent = 0;
  for (auto& c : clients) sent += c.sent;
  std::printf("no-read: %d connections, %" PRIu64
              " reads of 1 MiB sent before their sockets filled up%s\n",
              connections, sent, stopped ? "" : " (the server never stopped reading: FAIL)");
  std::printf("no-read: holding\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(hold_s));
  return stopped ? 0 : 1;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Writes, reads back and compares; keeps a copy of the span to compare with the backing file.
// True once the caller created `stop_file` (never when it is empty): it says so when the clients
// the verified I/O must run alongside are done, instead of leaving us to run out our seconds.
bool stop_asked(const std::string& stop_file) {
  return !stop_file.empty() && ::access(stop_file.c_str(), F_OK) == 0;
}

int run_verified(const std::string& uri, const std::string& backing, uint64_t span, double seconds,
                 uint64_t seed, const std::string& stop_file) {
  nbd_handle* nbd = nbd_create();
  if (nbd == nullptr || nbd_connect_uri(nbd, uri.c_str()) == -1) {
    std::printf("FAIL: verified: connect: %s\n", nbd_get_error());
    return 1;
  }
  std::vector<uint8_t> model(span, 0), data, back;
  std::vector<uint8_t> initial(span);
  if (nbd_pread(nbd, initial.data(), span, 0, 0) == -1) {
    std::printf("FAIL: verified: initial read: %s\n", nbd_get_error());
    return 1;
  }
  model = initial;
  std::mt19937_64 rng(seed);
  std::vector<double> latency_us;
  uint64_t errors = 0, mismatches = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  uint64_t state = seed;
  while (Clock::now() < end && errors == 0 && !stop_asked(stop_file)) {
    const uint64_t length = 4096 * (1 + rng() % 16);
    const uint64_t offset = 4096 * (rng() % ((span - length) / 4096 + 1));
    data.resize(length);
    for (size_t i = 0; i < length; i += 8) {
      const uint64_t word = splitmix64(state);
      std::memcpy(&data[i], &word, 8);
    }
    auto t0 = Clock::now();
    if (nbd_pwrite(nbd, data.data(), length, offset, 0) == -1) {
      std::printf("verified: write at %" PRIu64 ": %s\n", offset, nbd_get_error());
      ++errors;
      break;
    }
    latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(offset));
    back.resize(length);
    t0 = Clock::now();
    if (nbd_pread(nbd, back.data(), length, offset, 0) == -1) {
      std::printf("verified: read at %" PRIu64 ": %s\n", offset, nbd_get_error());
      ++errors;
      break;
    }
    latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (back != data) ++mismatches;
  }
  if (nbd_flush(nbd, 0) == -1) ++errors;
  nbd_shutdown(nbd, 0);
  nbd_close(nbd);
  std::vector<uint8_t> file(span);
  const int fd = ::open(backing.c_str(), O_RDONLY);
  const bool file_read = fd >= 0 && ::pread(fd, file.data(), span, 0) == static_cast<ssize_t>(span);
  if (fd >= 0) ::close(fd);
  const bool file_ok = file_read && file == model;
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double p) {
    return latency_us.empty() ? 0.0 : latency_us[static_cast<size_t>(p * (latency_us.size() - 1))];
  };
  std::printf("verified: %zu requests (4-64 KiB, write then read back), %" PRIu64
              " errors, %" PRIu64
              " mismatches, backing file %s; latency us p50 %.0f p99 %.0f max %.0f\n",
              latency_us.size(), errors, mismatches, file_ok ? "matches" : "DIFFERS", pct(0.5),
              pct(0.99), latency_us.empty() ? 0.0 : latency_us.back());
  return errors == 0 && mismatches == 0 && file_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hostile and verified NBD clients"};
  app.require_subcommand(1);
  std::string path, uri, backing, stop_file;
  int count = 1000, hold = 5, limit = 60, deadline = 60, connections = 1;
  uint64_t span = 16u << 20, seed = 1, region = 32u << 20;
  double seconds = 10;
  auto* cases = app.add_subcommand("cases", "every bad request, one connection each");
  auto* slow = app.add_subcommand("slow", "one handshake byte per second");
  auto* flood = app.add_subcommand("flood", "many connections at once");
  auto* no_read = app.add_subcommand("no-read", "requests without reading replies");
  auto* verified = app.add_subcommand("verified", "verified I/O with libnbd");
  for (auto* sub : {cases, slow, flood, no_read}) {
    sub->add_option("--socket", path, "the export's unix socket")->required();
  }
  slow->add_option("--limit", limit, "give up after SECONDS");
  flood->add_option("--count", count, "connections");
  flood->add_option("--deadline", deadline, "seconds for all handshakes");
  for (auto* sub : {flood, no_read}) sub->add_option("--hold", hold, "seconds to hold");
  no_read->add_option("--offset", region, "where the reads go");
  no_read->add_option("--connections", connections, "clients that never read, at once");
  verified->add_option("--uri", uri)->required();
  verified->add_option("--backing", backing)->required();
  verified->add_option("--span", span, "bytes from offset 0");
  verified->add_option("--seconds", seconds);
  verified->add_option("--seed", seed);
  verified->add_option("--stop-file", stop_file, "stop early once this file exists");
  CLI11_PARSE(app, argc, argv);
  if (*cases) return run_cases(path);
  if (*slow) return run_slow(path, limit);
  if (*flood) return run_flood(path, count, hold, deadline);
  if (*no_read) return run_no_read(path, hold, region, connections);
  return run_verified(uri, backing, span, seconds, seed, stop_file);
}
