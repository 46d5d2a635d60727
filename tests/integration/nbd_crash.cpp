// nbd_crash: the writer and the checker of tests/integration/crash-checks.sh, which SIGKILLs the
// attach while the writer runs and checks the target's backing file after each restart.
//
//   nbd_crash write --uri URI --blocks N --seed S --round R --state FILE [--seconds T]
//     Writes 4 KiB blocks among the first N of the export, up to 8 in flight (never two to the
//     same block), every one with contents unique to (seed, block, generation); about one in
//     four with FUA, and a FLUSH after every 8 acknowledged writes. Runs until the connection
//     is lost (the kill) or T seconds, then writes FILE: each issued write ("I block gen") and
//     each block's newest write acknowledged durable ("D block gen": acknowledged with FUA, or
//     acknowledged before a FLUSH was sent that was then acknowledged; proto.md NBD_CMD_FLUSH,
//     NBD_CMD_FLAG_FUA).
//   nbd_crash check --backing FILE --blocks N --seed S --baseline FILE --state FILE
//     Each block of the backing file must hold one complete version: zeros, the version the
//     baseline recorded after the previous check, or a write issued since; never older than its
//     newest durable write. Rewrites the baseline with what it found. Prints the counts.
// Exit status: 0 good, 1 a lost, torn or foreign block (check) or no write at all (write),
// 2 bad usage or setup.

#include <fcntl.h>
#include <libnbd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr size_t kBlock = 4096;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Block `block`, generation `gen`: a 24-byte header naming it, then a stream that depends on all
// three, so a block mixing two versions or holding another block's data fails the comparison.
void fill(uint8_t* out, uint64_t seed, uint64_t block, uint64_t gen) {
  std::memcpy(out, &block, 8);
  std::memcpy(out + 8, &gen, 8);
  std::memcpy(out + 16, &seed, 8);
  uint64_t state = seed ^ (block * 0x100000001b3ULL) ^ (gen * 0xc6a4a7935bd1e995ULL);
  for (size_t i = 24; i < kBlock; i += 8) {
    const uint64_t word = splitmix64(state);
    std::memcpy(out + i, &word, 8);
  }
}

struct InFlight {
  int64_t cookie;
  uint64_t block, gen;
  bool fua;
  std::vector<uint8_t> data;
};

int run_write(const std::string& uri, uint64_t blocks, uint64_t seed, uint64_t round,
              const std::string& state_path, double seconds) {
  nbd_handle* nbd = nbd_create();
  if (nbd == nullptr || nbd_connect_uri(nbd, uri.c_str()) == -1) {
    std::fprintf(stderr, "nbd_crash: connect: %s\n", nbd_get_error());
    return 2;
  }
  const bool can_fua = nbd_can_fua(nbd) == 1;
  std::mt19937_64 rng(seed ^ (round * 0x9e3779b97f4a7c15ULL));
  std::vector<InFlight> writes;
  std::set<uint64_t> busy;
  std::vector<std::pair<uint64_t, uint64_t>> issued, durable_log;
  std::vector<std::pair<uint64_t, uint64_t>> acked_volatile, flush_covers;
  int64_t flush_cookie = -1;
  uint64_t counter = 0, acked = 0, fua_acked = 0, flushes = 0, since_flush = 0;
  std::string end_reason = "time limit";
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  bool lost = false;
  while (!lost && std::chrono::steady_clock::now() < end) {
    while (writes.size() < 8) {
      uint64_t block = rng() % blocks;
      for (int tries = 0; busy.count(block) != 0 && tries < 16; ++tries) block = rng() % blocks;
      if (busy.count(block) != 0) break;
      InFlight w{0, block, ((round + 1) << 32) | ++counter, can_fua && rng() % 4 == 0, {}};
      w.data.resize(kBlock);
      fill(w.data.data(), seed, w.block, w.gen);
      w.cookie = nbd_aio_pwrite(nbd, w.data.data(), kBlock, w.block * kBlock, NBD_NULL_COMPLETION,
                                w.fua ? LIBNBD_CMD_FLAG_FUA : 0);
      if (w.cookie == -1) {
        lost = true;
        break;
      }
      issued.emplace_back(w.block, w.gen);
      busy.insert(block);
      writes.push_back(std::move(w));
    }
    if (flush_cookie == -1 && since_flush >= 8) {
      flush_cookie = nbd_aio_flush(nbd, NBD_NULL_COMPLETION, 0);
      if (flush_cookie == -1) break;
      flush_covers = std::move(acked_volatile);
      acked_volatile.clear();
      since_flush = 0;
    }
    if (lost || nbd_poll(nbd, 1000) == -1) break;
    for (size_t i = 0; i < writes.size();) {
      const int done = nbd_aio_command_completed(nbd, writes[i].cookie);
      if (done == 0) {
        ++i;
        continue;
      }
      if (done == -1) {
        lost = true;
        break;
      }
      ++acked;
      ++since_flush;
      if (writes[i].fua) {
        ++fua_acked;
        durable_log.emplace_back(writes[i].block, writes[i].gen);
      } else {
        acked_volatile.emplace_back(writes[i].block, writes[i].gen);
      }
      busy.erase(writes[i].block);
      writes.erase(writes.begin() + static_cast<long>(i));
    }
    if (flush_cookie != -1) {
      const int done = nbd_aio_command_completed(nbd, flush_cookie);
      if (done == -1) lost = true;
      if (done == 1) {
        ++flushes;
        durable_log.insert(durable_log.end(), flush_covers.begin(), flush_covers.end());
        flush_covers.clear();
        flush_cookie = -1;
      }
    }
  }
  if (lost || nbd_aio_is_closed(nbd) || nbd_aio_is_dead(nbd)) {
    end_reason = std::string("connection lost: ") + (nbd_get_error() ? nbd_get_error() : "?");
  }
  nbd_close(nbd);
  std::map<uint64_t, uint64_t> durable;
  for (auto [block, gen] : durable_log) durable[block] = std::max(durable[block], gen);
  std::ofstream out(state_path);
  for (auto [block, gen] : issued) out << "I " << block << ' ' << gen << '\n';
  for (auto [block, gen] : durable) out << "D " << block << ' ' << gen << '\n';
  out.close();
  std::printf("nbd_crash write: round %" PRIu64 ": %zu issued, %" PRIu64 " acknowledged (%" PRIu64
              " with FUA), %" PRIu64 " flushes acknowledged, %zu acknowledged durable; %s\n",
              round, issued.size(), acked, fua_acked, flushes, durable_log.size(),
              end_reason.c_str());
  return out ? 0 : 2;
}

int run_check(const std::string& backing, uint64_t blocks, uint64_t seed,
              const std::string& baseline_path, const std::string& state_path) {
  std::map<uint64_t, uint64_t> baseline, durable;
  std::map<uint64_t, std::set<uint64_t>> issued;
  {
    std::ifstream in(baseline_path);
    uint64_t block, gen;
    while (in >> block >> gen) baseline[block] = gen;
  }
  uint64_t durable_writes = 0;
  {
    std::ifstream in(state_path);
    if (!in) {
      std::fprintf(stderr, "nbd_crash: no writer state %s\n", state_path.c_str());
      return 2;
    }
    std::string kind;
    uint64_t block, gen;
    while (in >> kind >> block >> gen) {
      if (kind == "I") issued[block].insert(gen);
      if (kind == "D") {
        durable[block] = gen;
        ++durable_writes;
      }
    }
  }
  const int fd = ::open(backing.c_str(), O_RDONLY);
  if (fd < 0) {
    std::fprintf(stderr, "nbd_crash: open %s: %s\n", backing.c_str(), std::strerror(errno));
    return 2;
  }
  std::vector<uint8_t> block_data(kBlock), expect(kBlock);
  const std::vector<uint8_t> zeros(kBlock, 0);
  uint64_t torn = 0, foreign = 0, lost = 0, unacked_landed = 0, changed = 0;
  std::map<uint64_t, uint64_t> found;
  for (uint64_t block = 0; block < blocks; ++block) {
    if (::pread(fd, block_data.data(), kBlock, static_cast<off_t>(block * kBlock)) !=
        static_cast<ssize_t>(kBlock)) {
      std::fprintf(stderr, "nbd_crash: short read of block %" PRIu64 "\n", block);
      ::close(fd);
      return 2;
    }
    uint64_t gen = 0;
    if (block_data != zeros) {
      uint64_t header_block;
      std::memcpy(&header_block, block_data.data(), 8);
      std::memcpy(&gen, block_data.data() + 8, 8);
      fill(expect.data(), seed, block, gen);
      if (header_block != block || block_data != expect) {
        if (++torn <= 10) std::printf("TORN or foreign data in block %" PRIu64 "\n", block);
        continue;
      }
    }
    found[block] = gen;
    const uint64_t before = baseline.count(block) ? baseline[block] : 0;
    const auto& candidates = issued[block];
    if (gen != before && candidates.count(gen) == 0) {
      if (++foreign <= 10) {
        std::printf("FOREIGN version in block %" PRIu64 ": generation %" PRIx64 "\n", block, gen);
      }
    }
    if (durable.count(block) && gen < durable[block]) {
      if (++lost <= 10) {
        std::printf("LOST durable write to block %" PRIu64 ": holds %" PRIx64
                    ", acknowledged %" PRIx64 "\n",
                    block, gen, durable[block]);
      }
    }
    if (gen != before) ++changed;
    if (candidates.count(gen) && (!durable.count(block) || gen > durable[block])) {
      ++unacked_landed;
    }
  }
  ::close(fd);
  std::ofstream out(baseline_path);
  for (auto [block, gen] : found) out << block << ' ' << gen << '\n';
  std::printf("nbd_crash check: %" PRIu64 " blocks checked, %" PRIu64
              " blocks with a durable write checked, %" PRIu64 " changed, %" PRIu64
              " newer than their last durable write; torn %" PRIu64 ", foreign %" PRIu64
              ", lost durable %" PRIu64 "\n",
              blocks, durable_writes, changed, unacked_landed, torn, foreign, lost);
  return torn + foreign + lost == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"crash-safety writer and checker"};
  app.require_subcommand(1);
  std::string uri, backing, state, baseline;
  uint64_t blocks = 4096, seed = 1, round = 0;
  double seconds = 30;
  auto* write = app.add_subcommand("write", "write until the connection is lost");
  auto* check = app.add_subcommand("check", "check the backing file");
  write->add_option("--uri", uri)->required();
  write->add_option("--round", round);
  write->add_option("--seconds", seconds);
  check->add_option("--backing", backing)->required();
  check->add_option("--baseline", baseline)->required();
  for (auto* sub : {write, check}) {
    sub->add_option("--blocks", blocks);
    sub->add_option("--seed", seed);
    sub->add_option("--state", state)->required();
  }
  CLI11_PARSE(app, argc, argv);
  if (blocks == 0) return 2;
  if (*write) return run_write(uri, blocks, seed, round, state, seconds);
  return run_check(backing, blocks, seed, baseline, state);
}
