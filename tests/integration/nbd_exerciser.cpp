// nbd_exerciser: drives an NBD export with seeded random I/O and checks every byte twice, once
// read back through NBD and once, after an NBD flush, straight from the iSCSI target's backing
// file. The second check is the one that catches an initiator that acknowledges writes it never
// sent, sends them to the wrong LBA, or splits and reassembles transfers wrongly: reading back
// through the same initiator could hide all of these.
//
// Usage: nbd_exerciser --uri URI --backing FILE [--backing-offset N] [--seed S] [--ops N]
//          [--max-len BYTES] [--check flush,trim,zero] [--require fua,trim,zero]
//          [--trim-must-zero] ...
// Exit status: 0 all checks passed, 1 a mismatch or an NBD error, 2 bad usage or setup.

#include <fcntl.h>
#include <libnbd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

struct Options {
  std::string uri;
  std::string backing;
  std::uint64_t backing_offset = 0;
  std::uint64_t seed = 0;
  bool seed_given = false;
  unsigned ops = 200;
  std::uint64_t max_len = 4 * kMiB;
  std::uint64_t align = 4096;
  std::uint64_t span = 0;  // 0: the whole export
  unsigned queue_depth = 8;
  double time_limit_s = 120;
  double settle_s = 0;  // pause before the final verification (late stale writes land first)
  std::set<std::string> checks;
  // Features the export must advertise: without them a check fails instead of being skipped,
  // so a target known to support them catches a broken VPD-to-flag mapping.
  std::set<std::string> required;
  bool trim_must_zero = false;
  double stall_ms = 500;  // a wait at least this long counts as a stall
  // Reads only, each compared with the backing file as it is: the longest stall is then a read's
  // (hedged reads through a black hole; writes there wait for the path's verdict).
  bool reads_only = false;
};

// Thrown for transport or protocol failures: the run cannot continue.
struct NbdFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_nbd(std::string_view what) {
  throw NbdFailure(std::string(what) + ": " + (nbd_get_error() ? nbd_get_error() : "?") +
                   " (errno " + std::to_string(nbd_get_errno()) + ")");
}

class NbdHandle {
 public:
  explicit NbdHandle(const std::string& uri) : handle_(nbd_create()) {
    if (handle_ == nullptr) throw_nbd("nbd_create");
    if (nbd_connect_uri(handle_, uri.c_str()) == -1) throw_nbd("connect " + uri);
  }
  NbdHandle(const NbdHandle&) = delete;
  NbdHandle& operator=(const NbdHandle&) = delete;
  ~NbdHandle() {
    nbd_shutdown(handle_, 0);
    nbd_close(handle_);
  }
  nbd_handle* get() const { return handle_; }

 private:
  nbd_handle* handle_;
};

// splitmix64: a tiny, seedable generator whose output depends only on its state, so any block's
// expected contents can be regenerated from (seed, writer, block index) without keeping a copy.
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// What the exerciser knows about each block of the span.
class BlockMap {
 public:
  static constexpr std::uint32_t kUnknown = 0;  // never written: contents not checked
  static constexpr std::uint32_t kZero = UINT32_MAX;

  BlockMap(std::uint64_t blocks, std::uint64_t block_size, std::uint64_t seed)
      : writer_(blocks, kUnknown), block_size_(block_size), seed_(seed) {}

  std::uint64_t block_size() const { return block_size_; }
  std::uint64_t blocks() const { return writer_.size(); }
  std::uint32_t writer(std::uint64_t block) const { return writer_[block]; }
  void set(std::uint64_t offset, std::uint64_t length, std::uint32_t writer) {
    for (std::uint64_t b = offset / block_size_; b < (offset + length) / block_size_; ++b)
      writer_[b] = writer;
  }

  // The bytes writer `writer` puts into block `block`.
  void fill(std::span<std::byte> out, std::uint32_t writer, std::uint64_t block) const {
    if (writer == kZero) {
      std::fill(out.begin(), out.end(), std::byte{0});
      return;
    }
    std::uint64_t state = seed_ ^ (std::uint64_t{writer} << 40) ^ (block * 0x100000001b3ULL);
    for (std::size_t i = 0; i < out.size(); i += 8) {
      const std::uint64_t word = splitmix64(state);
      std::memcpy(out.data() + i, &word, std::min<std::size_t>(8, out.size() - i));
    }
  }

  void fill_region(std::span<std::byte> out, std::uint64_t offset, std::uint32_t writer) const {
    for (std::uint64_t i = 0; i < out.size(); i += block_size_)
      fill(out.subspan(i, block_size_), writer, (offset + i) / block_size_);
  }

 private:
  std::vector<std::uint32_t> writer_;
  std::uint64_t block_size_;
  std::uint64_t seed_;
};

struct Mismatch {
  std::string where;  // "nbd" or "backing file"
  std::uint64_t offset;
  std::uint64_t length;
  std::string detail;
};

class Exerciser {
 public:
  Exerciser(const Options& options, nbd_handle* nbd, int backing_fd, std::uint64_t span,
            std::uint64_t seed)
      : options_(options),
        nbd_(nbd),
        backing_fd_(backing_fd),
        span_(span),
        map_(span / options.align, options.align, seed),
        rng_(seed) {}

  void run_random_io();
  void verify_all();
  std::string check_flush();
  std::string check_trim();
  std::string check_zero();

  const std::vector<Mismatch>& mismatches() const { return mismatches_; }
  unsigned writes() const { return writes_; }
  // The longest wait for any NBD request or batch of requests: what a client saw as a stall
  // while a path failed over.
  double longest_stall_ms() const { return longest_stall_.count() / 1e6; }
  // Waits of at least --stall-ms: how often, and how long in all (a flapping path's cost).
  unsigned stalls() const { return stalls_; }
  double stalled_ms() const { return stalled_.count() / 1e6; }
  unsigned reads() const { return reads_; }
  std::uint64_t bytes_written() const { return bytes_written_; }
  std::uint64_t bytes_read() const { return bytes_read_; }
  std::uint64_t bytes_verified() const { return bytes_verified_; }

 private:
  struct Op {
    bool write;
    std::uint64_t offset;
    std::uint64_t length;
    std::uint32_t writer;
    std::vector<std::byte> buffer;
    std::int64_t cookie = 0;
  };

  std::uint64_t random_length();
  std::uint64_t random_offset(std::uint64_t length, std::uint64_t alignment);
  void run_batch(std::vector<Op>& batch);
  void read_nbd(std::span<std::byte> out, std::uint64_t offset);
  void read_backing(std::span<std::byte> out, std::uint64_t offset);
  void write_nbd(std::span<const std::byte> data, std::uint64_t offset, std::uint32_t flags);
  void flush();
  // Compares `actual` with what the block map expects; unknown blocks are skipped.
  void compare(std::span<const std::byte> actual, std::uint64_t offset, const char* where);
  void compare_with_backing(std::span<const std::byte> actual, std::uint64_t offset);
  void verify_region(std::uint64_t offset, std::uint64_t length);
  std::uint32_t next_writer() { return ++last_writer_; }

  const Options& options_;
  nbd_handle* nbd_;
  int backing_fd_;
  std::uint64_t span_;
  BlockMap map_;
  std::mt19937_64 rng_;
  std::uint32_t last_writer_ = 0;
  std::vector<Mismatch> mismatches_;
  unsigned writes_ = 0;
  unsigned reads_ = 0;
  std::uint64_t bytes_written_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::chrono::nanoseconds longest_stall_{0};
  unsigned stalls_ = 0;
  std::chrono::nanoseconds stalled_{0};
  void note_wait(std::chrono::steady_clock::time_point since) {
    const std::chrono::nanoseconds waited = std::chrono::steady_clock::now() - since;
    longest_stall_ = std::max(longest_stall_, waited);
    if (waited.count() / 1e6 >= options_.stall_ms) {
      ++stalls_;
      stalled_ += waited;
    }
  }
  std::uint64_t bytes_verified_ = 0;
};

// Lengths spread over three ranges so that small requests, requests around MaxBurstLength
// (256 KiB is common) and requests far above the usual max transfer length all occur.
std::uint64_t Exerciser::random_length() {
  const std::uint64_t align = options_.align;
  const std::uint64_t limits[] = {64 * 1024, 512 * 1024, options_.max_len};
  const std::uint64_t limit = std::min(limits[rng_() % 3], options_.max_len);
  const std::uint64_t units = std::max<std::uint64_t>(1, std::min(limit, span_) / align);
  return (1 + rng_() % units) * align;
}

std::uint64_t Exerciser::random_offset(std::uint64_t length, std::uint64_t alignment) {
  const std::uint64_t slots = (span_ - length) / alignment + 1;
  return (rng_() % slots) * alignment;
}

void Exerciser::run_random_io() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(options_.time_limit_s);
  unsigned done = 0;
  while (done < options_.ops && std::chrono::steady_clock::now() < deadline) {
    // A batch of non-overlapping requests in flight together: the initiator sees queue depth
    // without the result depending on the order the target executes them in.
    std::vector<Op> batch;
    for (int attempt = 0;
         attempt < 32 && batch.size() < options_.queue_depth && done + batch.size() < options_.ops;
         ++attempt) {
      const std::uint64_t length = random_length();
      const std::uint64_t offset = random_offset(length, options_.align);
      const bool overlaps = std::any_of(batch.begin(), batch.end(), [&](const Op& op) {
        return offset < op.offset + op.length && op.offset < offset + length;
      });
      if (overlaps) continue;
      const bool write = !options_.reads_only && rng_() % 10 < 6;
      Op op{write, offset, length, write ? next_writer() : 0, std::vector<std::byte>(length)};
      if (write) map_.fill_region(op.buffer, offset, op.writer);
      batch.push_back(std::move(op));
    }
    run_batch(batch);
    done += batch.size();
    // Read every write of the batch back through NBD before the next batch overwrites it.
    for (const Op& op : batch) {
      if (op.write) verify_region(op.offset, op.length);
    }
  }
}

void Exerciser::run_batch(std::vector<Op>& batch) {
  const auto started = std::chrono::steady_clock::now();
  const nbd_completion_callback no_completion{};
  for (Op& op : batch) {
    op.cookie = op.write
                    ? nbd_aio_pwrite(nbd_, op.buffer.data(), op.length, op.offset, no_completion, 0)
                    : nbd_aio_pread(nbd_, op.buffer.data(), op.length, op.offset, no_completion, 0);
    if (op.cookie == -1) throw_nbd(op.write ? "aio_pwrite" : "aio_pread");
  }
  while (nbd_aio_in_flight(nbd_) > 0) {
    if (nbd_poll(nbd_, -1) == -1) throw_nbd("poll");
  }
  note_wait(started);
  for (Op& op : batch) {
    if (nbd_aio_command_completed(nbd_, op.cookie) != 1) {
      throw_nbd(std::string(op.write ? "write" : "read") + " offset " + std::to_string(op.offset) +
                " length " + std::to_string(op.length));
    }
    if (op.write) {
      map_.set(op.offset, op.length, op.writer);
      ++writes_;
      bytes_written_ += op.length;
    } else {
      ++reads_;
      bytes_read_ += op.length;
      if (options_.reads_only) {
        compare_with_backing(op.buffer, op.offset);
      } else {
        compare(op.buffer, op.offset, "nbd");
      }
    }
  }
}

// Nothing writes during a reads-only run: every byte read must be the backing file's.
void Exerciser::compare_with_backing(std::span<const std::byte> actual, std::uint64_t offset) {
  std::vector<std::byte> expected(actual.size());
  read_backing(expected, offset);
  bytes_verified_ += actual.size();
  if (std::memcmp(actual.data(), expected.data(), actual.size()) == 0) return;
  std::size_t at = 0;
  while (actual[at] == expected[at]) ++at;
  mismatches_.push_back({"nbd read vs backing file", offset + at, actual.size() - at,
                         "first differing byte at offset " + std::to_string(offset + at)});
}

void Exerciser::read_nbd(std::span<std::byte> out, std::uint64_t offset) {
  const auto started = std::chrono::steady_clock::now();
  const int rc = nbd_pread(nbd_, out.data(), out.size(), offset, 0);
  note_wait(started);
  if (rc == -1)
    throw_nbd("read offset " + std::to_string(offset) + " length " + std::to_string(out.size()));
  bytes_read_ += out.size();
}

void Exerciser::read_backing(std::span<std::byte> out, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = pread(backing_fd_, out.data() + done, out.size() - done,
                            static_cast<off_t>(options_.backing_offset + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("pread backing file: " + std::string(strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
}

void Exerciser::write_nbd(std::span<const std::byte> data, std::uint64_t offset,
                          std::uint32_t flags) {
  if (nbd_pwrite(nbd_, data.data(), data.size(), offset, flags) == -1)
    throw_nbd("write offset " + std::to_string(offset) + " length " + std::to_string(data.size()));
  ++writes_;
  bytes_written_ += data.size();
}

void Exerciser::flush() {
  if (nbd_can_flush(nbd_) == 1 && nbd_flush(nbd_, 0) == -1) throw_nbd("flush");
}

void Exerciser::compare(std::span<const std::byte> actual, std::uint64_t offset,
                        const char* where) {
  const std::uint64_t bs = map_.block_size();
  std::vector<std::byte> expected(bs);
  std::optional<Mismatch> run;
  auto close_run = [&] {
    if (run) mismatches_.push_back(*std::exchange(run, std::nullopt));
  };
  for (std::uint64_t i = 0; i < actual.size(); i += bs) {
    const std::uint64_t block = (offset + i) / bs;
    const std::uint32_t writer = map_.writer(block);
    if (writer == BlockMap::kUnknown) {
      close_run();
      continue;
    }
    map_.fill(expected, writer, block);
    const auto got = actual.subspan(i, bs);
    const auto diff = std::mismatch(expected.begin(), expected.end(), got.begin());
    bytes_verified_ += bs;
    if (diff.first == expected.end()) {
      close_run();
      continue;
    }
    if (run && run->offset + run->length == offset + i) {
      run->length += bs;
      continue;
    }
    close_run();
    char detail[160];
    std::snprintf(detail, sizeof detail,
                  "first difference at byte %" PRIu64 ": expected 0x%02x, got 0x%02x%s",
                  offset + i + static_cast<std::uint64_t>(diff.first - expected.begin()),
                  std::to_integer<unsigned>(*diff.first), std::to_integer<unsigned>(*diff.second),
                  writer == BlockMap::kZero ? " (expected zeros)" : "");
    run = Mismatch{where, offset + i, bs, detail};
  }
  close_run();
}

void Exerciser::verify_region(std::uint64_t offset, std::uint64_t length) {
  std::vector<std::byte> buffer(length);
  read_nbd(buffer, offset);
  compare(buffer, offset, "nbd");
}

// After the random phase: every block written is read back through NBD, then (after FLUSH, so
// a target with a write-back cache has handed the data to the file) from the backing file.
void Exerciser::verify_all() {
  const std::uint64_t bs = map_.block_size();
  const std::uint64_t chunk_blocks = std::max<std::uint64_t>(1, options_.max_len / bs);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;  // offset, length
  for (std::uint64_t b = 0; b < map_.blocks();) {
    if (map_.writer(b) == BlockMap::kUnknown) {
      ++b;
      continue;
    }
    std::uint64_t end = b;
    while (end < map_.blocks() && end - b < chunk_blocks && map_.writer(end) != BlockMap::kUnknown)
      ++end;
    extents.emplace_back(b * bs, (end - b) * bs);
    b = end;
  }
  std::vector<std::byte> buffer;
  for (const auto& [offset, length] : extents) {
    buffer.resize(length);
    read_nbd(buffer, offset);
    compare(buffer, offset, "nbd");
  }
  flush();
  for (const auto& [offset, length] : extents) {
    buffer.resize(length);
    read_backing(buffer, offset);
    compare(buffer, offset, "backing file");
  }
}

std::string Exerciser::check_flush() {
  if (nbd_can_flush(nbd_) != 1) {
    mismatches_.push_back({"flush", 0, 0, "export does not advertise NBD_FLAG_SEND_FLUSH"});
    return "flush FAILED (not advertised)";
  }
  const std::uint64_t length = std::min<std::uint64_t>(kMiB, span_);
  std::vector<std::byte> data(length);
  std::uint64_t offset = random_offset(length, options_.align);
  std::uint32_t writer = next_writer();
  map_.fill_region(data, offset, writer);
  write_nbd(data, offset, 0);
  map_.set(offset, length, writer);
  flush();
  std::vector<std::byte> in_file(length);
  read_backing(in_file, offset);
  const auto before = mismatches_.size();
  compare(in_file, offset, "backing file after FLUSH");
  std::string result = mismatches_.size() == before ? "flush ok" : "flush FAILED";

  // FUA (NBD proto.md "NBD_CMD_FLAG_FUA"): the data must be durable when the reply arrives,
  // without a separate flush.
  if (nbd_can_fua(nbd_) != 1) {
    if (!options_.required.contains("fua")) return result + ", fua not advertised";
    mismatches_.push_back({"fua", 0, 0, "export does not advertise NBD_FLAG_SEND_FUA (--require)"});
    return result + ", fua FAILED (required, not advertised)";
  }
  offset = random_offset(length, options_.align);
  writer = next_writer();
  map_.fill_region(data, offset, writer);
  write_nbd(data, offset, LIBNBD_CMD_FLAG_FUA);
  map_.set(offset, length, writer);
  read_backing(in_file, offset);
  const auto before_fua = mismatches_.size();
  compare(in_file, offset, "backing file after FUA write");
  return result + (mismatches_.size() == before_fua ? ", fua ok" : ", fua FAILED");
}

// NBD_CMD_TRIM is advisory (proto.md: the server "MAY" discard), so after a trim each block of
// the backing file must hold either its old data or zeros, and NBD must read what the file
// holds. With --trim-must-zero (a target known to deallocate, e.g. tgtd thin_provisioning=1)
// zeros are required.
std::string Exerciser::check_trim() {
  if (nbd_can_trim(nbd_) != 1) {
    if (options_.required.contains("trim")) {
      mismatches_.push_back(
          {"trim", 0, 0, "export does not advertise NBD_FLAG_SEND_TRIM (--require)"});
      return "trim FAILED (required, not advertised)";
    }
    std::puts("nbd_exerciser: trim: skipped, the export does not advertise NBD_FLAG_SEND_TRIM");
    return "trim skipped (not advertised)";
  }
  const std::uint64_t length = std::min<std::uint64_t>(2 * kMiB, span_);
  // 1 MiB alignment so that the region covers whole unmap-granularity units of any target.
  const std::uint64_t offset = random_offset(length, std::min<std::uint64_t>(kMiB, length));
  std::vector<std::byte> data(length);
  const std::uint32_t writer = next_writer();
  map_.fill_region(data, offset, writer);
  write_nbd(data, offset, 0);
  map_.set(offset, length, writer);
  flush();
  if (nbd_trim(nbd_, length, offset, 0) == -1) throw_nbd("trim");
  flush();

  std::vector<std::byte> via_nbd(length), in_file(length);
  read_nbd(via_nbd, offset);
  read_backing(in_file, offset);
  const std::uint64_t bs = map_.block_size();
  std::uint64_t zeroed = 0;
  const auto before = mismatches_.size();
  for (std::uint64_t i = 0; i < length; i += bs) {
    const auto file_block = std::span(in_file).subspan(i, bs);
    const bool is_zero = std::all_of(file_block.begin(), file_block.end(),
                                     [](std::byte b) { return b == std::byte{0}; });
    const bool is_old = std::equal(file_block.begin(), file_block.end(), data.begin() + i);
    if (is_zero) ++zeroed;
    if (!is_zero && !is_old) {
      mismatches_.push_back({"backing file after TRIM", offset + i, bs,
                             "block is neither zeros nor the data written before the trim"});
    } else if (!is_zero && options_.trim_must_zero) {
      mismatches_.push_back(
          {"backing file after TRIM", offset + i, bs, "block still holds data (--trim-must-zero)"});
    }
    if (!std::equal(file_block.begin(), file_block.end(), via_nbd.begin() + i)) {
      mismatches_.push_back(
          {"nbd after TRIM", offset + i, bs, "NBD read differs from the backing file"});
    }
    map_.set(offset + i, bs, is_zero ? BlockMap::kZero : writer);
  }
  return std::string(mismatches_.size() == before ? "trim ok" : "trim FAILED") + " (" +
         std::to_string(zeroed) + "/" + std::to_string(length / bs) + " blocks read as zeros)";
}

// NBD_CMD_WRITE_ZEROES must read back as zeros, with and without NBD_CMD_FLAG_NO_HOLE.
std::string Exerciser::check_zero() {
  if (nbd_can_zero(nbd_) != 1) {
    if (options_.required.contains("zero")) {
      mismatches_.push_back(
          {"zero", 0, 0, "export does not advertise NBD_FLAG_SEND_WRITE_ZEROES (--require)"});
      return "zero FAILED (required, not advertised)";
    }
    std::puts("nbd_exerciser: zero: skipped, the export does not advertise WRITE_ZEROES");
    return "zero skipped (not advertised)";
  }
  const auto before = mismatches_.size();
  for (const std::uint32_t flags : {0U, LIBNBD_CMD_FLAG_NO_HOLE}) {
    // Just over 1 MiB and block-aligned, so that it ends inside a unit of any granularity.
    const std::uint64_t length = std::min<std::uint64_t>(kMiB + 3 * options_.align, span_);
    const std::uint64_t offset = random_offset(length, options_.align);
    std::vector<std::byte> data(length);
    const std::uint32_t writer = next_writer();
    map_.fill_region(data, offset, writer);
    write_nbd(data, offset, 0);
    map_.set(offset, length, writer);
    if (nbd_zero(nbd_, length, offset, flags) == -1) throw_nbd("write_zeroes");
    map_.set(offset, length, BlockMap::kZero);
    read_nbd(data, offset);
    compare(data, offset, flags ? "nbd after WRITE_ZEROES(NO_HOLE)" : "nbd after WRITE_ZEROES");
    flush();
    read_backing(data, offset);
    compare(data, offset,
            flags ? "backing file after WRITE_ZEROES(NO_HOLE)" : "backing file after WRITE_ZEROES");
  }
  return mismatches_.size() == before ? "zero ok" : "zero FAILED";
}

Options parse_options(int argc, char** argv) {
  Options options;
  CLI::App app{"Random I/O through an NBD export, verified through NBD and in the backing file"};
  std::string checks, required;
  app.add_option("--uri", options.uri, "NBD URI, e.g. nbd+unix:///lun1?socket=/tmp/x/lun.sock")
      ->required();
  app.add_option("--backing", options.backing, "the target's backing file")->required();
  app.add_option("--backing-offset", options.backing_offset,
                 "byte offset of the LUN's first block in the backing file")
      ->transform(CLI::AsSizeValue(false));
  auto* seed = app.add_option("--seed", options.seed, "random seed (default: random, printed)");
  app.add_option("--ops", options.ops, "number of random reads and writes")->capture_default_str();
  app.add_option("--max-len", options.max_len, "largest request in bytes (suffixes K, M)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  app.add_option("--align", options.align, "offset and length granularity in bytes")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  app.add_option("--span", options.span, "exercise only the first BYTES of the export")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--queue-depth", options.queue_depth, "requests in flight per batch")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--settle", options.settle_s,
                 "wait SECONDS before the final verification, so that a stale write still "
                 "travelling on a failed path would land and be caught")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--time-limit", options.time_limit_s, "stop issuing random I/O after SECONDS")
      ->capture_default_str();
  app.add_option("--check", checks, "extra checks, comma-separated: flush,trim,zero");
  app.add_option("--require", required,
                 "features the export must advertise, comma-separated: fua,trim,zero (each "
                 "needs its check: fua flush, trim trim, zero zero)");
  app.add_option("--stall-ms", options.stall_ms,
                 "count waits of at least this many milliseconds as stalls")
      ->check(CLI::Range(1.0, 600000.0))
      ->capture_default_str();
  app.add_flag("--reads-only", options.reads_only,
               "only reads, each compared with the backing file (which nothing changes)");
  app.add_flag("--trim-must-zero", options.trim_must_zero,
               "require trimmed blocks to read as zeros in the backing file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  options.seed_given = seed->count() > 0;
  for (std::size_t start = 0; start < checks.size();) {
    const std::size_t comma = std::min(checks.find(',', start), checks.size());
    const std::string name = checks.substr(start, comma - start);
    if (name != "flush" && name != "trim" && name != "zero") {
      std::fprintf(stderr, "nbd_exerciser: unknown check '%s'\n", name.c_str());
      std::exit(2);
    }
    options.checks.insert(name);
    start = comma + 1;
  }
  for (std::size_t start = 0; start < required.size();) {
    const std::size_t comma = std::min(required.find(',', start), required.size());
    const std::string name = required.substr(start, comma - start);
    const std::string check = name == "fua" ? "flush" : name;
    if (name != "fua" && name != "trim" && name != "zero") {
      std::fprintf(stderr, "nbd_exerciser: unknown --require feature '%s'\n", name.c_str());
      std::exit(2);
    }
    if (!options.checks.contains(check)) {
      std::fprintf(stderr, "nbd_exerciser: --require %s needs --check %s\n", name.c_str(),
                   check.c_str());
      std::exit(2);
    }
    options.required.insert(name);
    start = comma + 1;
  }
  if (options.align == 0 || options.align % 8 != 0 || options.max_len < options.align) {
    std::fprintf(stderr, "nbd_exerciser: --align must be a multiple of 8 and <= --max-len\n");
    std::exit(2);
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const std::uint64_t seed = options.seed_given ? options.seed : std::random_device{}();
  const auto started = std::chrono::steady_clock::now();
  std::printf("nbd_exerciser: seed %" PRIu64 "\n", seed);
  std::fflush(stdout);

  const int backing_fd = open(options.backing.c_str(), O_RDONLY | O_CLOEXEC);
  if (backing_fd < 0) {
    std::fprintf(stderr, "nbd_exerciser: open %s: %s\n", options.backing.c_str(), strerror(errno));
    return 2;
  }
  try {
    NbdHandle nbd(options.uri);
    const std::int64_t export_size = nbd_get_size(nbd.get());
    if (export_size < 0) throw_nbd("get_size");
    std::uint64_t span = options.span ? std::min<std::uint64_t>(options.span, export_size)
                                      : static_cast<std::uint64_t>(export_size);
    span -= span % options.align;
    const off_t file_size = lseek(backing_fd, 0, SEEK_END);
    if (span < options.align || file_size < 0 ||
        static_cast<std::uint64_t>(file_size) < options.backing_offset + span) {
      std::fprintf(stderr,
                   "nbd_exerciser: backing file (%jd bytes) smaller than offset %" PRIu64
                   " + exercised span %" PRIu64 "\n",
                   static_cast<intmax_t>(file_size), options.backing_offset, span);
      return 2;
    }

    Exerciser exerciser(options, nbd.get(), backing_fd, span, seed);
    exerciser.run_random_io();
    std::string checks;
    for (const auto& [name, run] :
         std::array<std::pair<const char*, std::string (Exerciser::*)()>, 3>{
             {{"flush", &Exerciser::check_flush},
              {"trim", &Exerciser::check_trim},
              {"zero", &Exerciser::check_zero}}}) {
      if (options.checks.count(name)) checks += (checks.empty() ? "" : ", ") + (exerciser.*run)();
    }
    if (options.settle_s > 0)
      std::this_thread::sleep_for(std::chrono::duration<double>(options.settle_s));
    exerciser.verify_all();

    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const auto& mismatches = exerciser.mismatches();
    for (std::size_t i = 0; i < mismatches.size() && i < 20; ++i) {
      const Mismatch& m = mismatches[i];
      std::printf("nbd_exerciser: MISMATCH in %s at offset %" PRIu64 " length %" PRIu64 ": %s\n",
                  m.where.c_str(), m.offset, m.length, m.detail.c_str());
    }
    if (mismatches.size() > 20)
      std::printf("nbd_exerciser: ... %zu more\n", mismatches.size() - 20);
    std::printf(
        "nbd_exerciser: %s: %u writes (%.1f MiB), %u reads (%.1f MiB read in all), "
        "%.1f MiB compared via NBD and backing file%s%s, %zu mismatches, seed %" PRIu64
        ", %.1f s, longest I/O stall %.0f ms, %u stalls of %.0f ms or more (%.0f ms in all)\n",
        mismatches.empty() ? "PASS" : "FAIL", exerciser.writes(),
        exerciser.bytes_written() / double(kMiB), exerciser.reads(),
        exerciser.bytes_read() / double(kMiB), exerciser.bytes_verified() / double(kMiB),
        checks.empty() ? "" : "; ", checks.c_str(), mismatches.size(), seed, seconds,
        exerciser.longest_stall_ms(), exerciser.stalls(), options.stall_ms, exerciser.stalled_ms());
    close(backing_fd);
    return mismatches.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("nbd_exerciser: FAIL: %s (seed %" PRIu64 ")\n", e.what(), seed);
    close(backing_fd);
    return 1;
  }
}
