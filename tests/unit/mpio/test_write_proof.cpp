#include <catch2/catch.hpp>

#include <mpio/write_proof.hpp>
#include <vector>

using mpio::ProofPath;
using mpio::WriteProof;
using Method = mpio::WriteProof::Method;

namespace {

ProofPath active(std::optional<uint16_t> tag, bool ready = true) {
  return {.active = true, .ready = ready, .portal_group_tag = tag};
}

ProofPath failed(std::optional<uint16_t> tag) {
  return {.active = false, .ready = false, .portal_group_tag = tag};
}

}  // namespace

TEST_CASE("an active path to the failed path's portal group reinstates its session",
          "[mpio][write_proof]") {
  const std::vector<ProofPath> paths{failed(1), active(2), active(1)};
  const auto proof = mpio::choose_write_proof(0, paths);
  CHECK(proof.method == Method::reinstate_session);
  CHECK(proof.via == 2);
}

TEST_CASE("reinstatement is preferred to an LU reset even through a path not ready yet",
          "[mpio][write_proof]") {
  // The proof is a login of its own: it needs the portal, not the other path's session.
  const std::vector<ProofPath> paths{active(2), active(1, false), failed(1)};
  const auto proof = mpio::choose_write_proof(2, paths);
  CHECK(proof.method == Method::reinstate_session);
  CHECK(proof.via == 1);
}

TEST_CASE("without a path to the same portal group an LU reset goes through an active ready path",
          "[mpio][write_proof]") {
  const std::vector<ProofPath> paths{failed(1), active(2), active(3, false)};
  const auto proof = mpio::choose_write_proof(0, paths);
  CHECK(proof.method == Method::lu_reset);
  CHECK(proof.via == 1);
}

TEST_CASE("a failed path whose portal group is unknown is proven by an LU reset",
          "[mpio][write_proof]") {
  // Two unknown tags are not the same portal group.
  const std::vector<ProofPath> paths{failed(std::nullopt), active(std::nullopt)};
  const auto proof = mpio::choose_write_proof(0, paths);
  CHECK(proof.method == Method::lu_reset);
  CHECK(proof.via == 1);
}

TEST_CASE("paths that are not active prove nothing: the failed path's own login will",
          "[mpio][write_proof]") {
  // A ghost (ALUA standby), a connecting and another failed path, all with the same tag.
  ProofPath ghost{.active = false, .ready = true, .portal_group_tag = 1};
  const std::vector<ProofPath> paths{failed(1), ghost, failed(1), active(2, false)};
  const auto proof = mpio::choose_write_proof(0, paths);
  CHECK(proof.method == Method::wait);
}

TEST_CASE("the failed path is never its own proof", "[mpio][write_proof]") {
  // Still marked active and ready in the view: the choice skips it by index.
  const std::vector<ProofPath> paths{active(1), failed(2)};
  CHECK(mpio::choose_write_proof(0, paths).method == Method::wait);
  CHECK(mpio::choose_write_proof(0, std::vector<ProofPath>{active(1)}).method == Method::wait);
}

TEST_CASE("of several candidates the last in the list is taken", "[mpio][write_proof]") {
  const std::vector<ProofPath> same_group{active(1), failed(1), active(1), active(1)};
  CHECK(mpio::choose_write_proof(1, same_group).via == 3);
  const std::vector<ProofPath> other_groups{active(2), active(3), failed(1), active(4, false)};
  const auto proof = mpio::choose_write_proof(2, other_groups);
  CHECK(proof.method == Method::lu_reset);
  CHECK(proof.via == 1);
}
