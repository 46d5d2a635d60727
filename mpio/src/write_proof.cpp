#include "mpio/write_proof.hpp"

namespace mpio {

WriteProof choose_write_proof(size_t failed, std::span<const ProofPath> paths) {
  if (failed >= paths.size()) return {};
  const std::optional<uint16_t>& tag = paths[failed].portal_group_tag;
  std::optional<size_t> reinstate_via, reset_via;
  for (size_t i = 0; i < paths.size(); ++i) {
    const ProofPath& q = paths[i];
    if (i == failed || !q.active) continue;
    if (tag && q.portal_group_tag && *q.portal_group_tag == *tag) reinstate_via = i;
    if (q.ready) reset_via = i;
  }
  if (reinstate_via) return {WriteProof::Method::reinstate_session, *reinstate_via};
  if (reset_via) return {WriteProof::Method::lu_reset, *reset_via};
  return {};
}

}  // namespace mpio
