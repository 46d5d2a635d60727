#include "mpio/target_quirks.hpp"

#include <array>

namespace mpio {
namespace {

// tgt (tgtd, the Linux SCSI target framework) answers INQUIRY as "IET" / "VIRTUAL-DISK" unless
// an administrator renames the LU. It gives every command a data buffer of the command's
// transfer length from valloc(), freed when the command ends. glibc serves a page-aligned
// request at or above its mmap threshold (128 KiB at start) with mmap and frees it with munmap;
// the threshold adjusts up on each such free, but to the freed chunk's size, which is a little
// less than the next request of the same size with its alignment padding, so a tgtd that only
// ever sees commands of one size of 128 KiB or more maps and unmaps every buffer for its life.
// munmap of a threaded process shoots down TLBs on the other CPUs, and tgtd does it on its one
// event-loop thread. Measured on a 2-vCPU VM (tgtd 1.0.85, Debian 12; tmpfs LUN; fio 1 MiB QD8
// through iscsi-mpio on loopback; a fresh tgtd per figure): commands of 256 KiB (our default,
// one MaxBurstLength) read 227-269 MiB/s and wrote 146-187 MiB/s, with tgtd's thread at 100 %,
// 35 % of it in munmap and TLB flushes; 64 KiB commands read 845-885 MiB/s and wrote
// 461-496 MiB/s; 96-120 KiB ones 689-1001 / 249-585, less steady. Once a larger buffer has
// been freed (a client that sent bigger commands earlier), 256 KiB commands come from the heap
// too and 64 KiB ones lose (reads 780 against 1193-1254). On a second VM of the same kind,
// where munmap costs less, one tgtd that first served only iscsi-mpio and then also qemu-nbd's
// 1 MiB commands, 8 s runs (fresh / after):
//   64 KiB:  reads 550-724 / 574-810,  writes 266-382 / 242-472
//   120 KiB: reads 649     / 957-1043, writes 390     / 476-477
//   256 KiB: reads 403-440 / 733-1050, writes 376-399 / 488-681
// 120 KiB, the largest multiple of 8 KiB whose valloc request (plus a page of alignment and
// the chunk header) stays under the initial threshold, never maps a buffer on a fresh tgtd and
// keeps the per-command cost (command PDU, R2T, response, worker wake-up) near 256 KiB's on a
// warm one. An operator who knows a tgtd has raised its threshold sets
// multipath.max_sectors_kb: 256.
constexpr std::array quirks{
    TargetQuirk{.vendor = "IET",
                .product = "VIRTUAL-DISK",
                .target = "tgt",
                .max_command_bytes = 120u << 10},
};

}  // namespace

std::optional<TargetQuirk> find_target_quirk(std::string_view vendor, std::string_view product) {
  for (const auto& q : quirks)
    if (q.vendor == vendor && q.product == product) return q;
  return std::nullopt;
}

}  // namespace mpio
