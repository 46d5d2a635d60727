// How to prove that the writes a failed path still had in flight are dead, so copies of them
// can go down another path without a stale one landing after a newer write. Pure policy: the
// device describes its paths, this says which proof to attempt through which path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mpio {

// What the choice needs to know of one path.
struct ProofPath {
  bool active = false;                       // carries I/O (PathState::active)
  bool ready = false;                        // its session is logged in and takes commands
  std::optional<uint16_t> portal_group_tag;  // TargetPortalGroupTag of its last login
};

struct WriteProof {
  enum class Method {
    // Log in with the failed path's ISID through `via`: the target sees the same I_T nexus
    // and reinstates the session, which ends the old session's tasks (RFC 7143 §6.3.5).
    reinstate_session,
    // LOGICAL UNIT RESET through `via`: ends every task of the LU on every I_T nexus
    // (SAM-5 §5.8.2, §7.7), the healthy paths' own included.
    lu_reset,
    // No path can prove it: the failed path's own login, when it comes, is the proof.
    wait,
  };
  Method method = Method::wait;
  size_t via = 0;  // index into the paths; meaningless for wait
};

// The proof for the writes held on `paths[failed]`. Session reinstatement is the cheap proof
// and needs an active path to the same portal group (an I_T nexus is the initiator's name and
// ISID with the target's name and portal group tag); else an LU reset through an active path whose
// session is ready; else wait. Among several candidates the last in `paths` is taken.
WriteProof choose_write_proof(size_t failed, std::span<const ProofPath> paths);

}  // namespace mpio
