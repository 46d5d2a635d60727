// Hedged reads (multipath.hedged_reads) counted per path in every machine-readable view: the
// status JSON, the paths JSON and the metrics.
#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include "control.hpp"
#include "path_views_test_support.hpp"
#include "status.hpp"

using namespace iscsi_mpio;
using namespace path_views_test;
using Catch::Matchers::Contains;

namespace {

// Path 1 black-holed: its reads were hedged on path 2, which answered most of them first.
std::vector<mpio::PathStatus> paths() {
  mpio::PathStatus silent = active_path(1);
  mpio::PathStatus other = active_path(2);
  other.hedges_sent = 40;
  other.hedges_won = 38;
  return {silent, other};
}

}  // namespace

TEST_CASE("status and paths JSON count the hedges sent and won on each path", "[iscsi_mpio]") {
  const auto json = boost::json::parse(status::render_json(snapshot(paths()))).as_object();
  const auto& other = json.at("paths").as_array().at(1).as_object();
  CHECK(other.at("hedges_sent").to_number<int>() == 40);
  CHECK(other.at("hedges_won").to_number<int>() == 38);
  CHECK(json.at("paths").as_array().at(0).as_object().at("hedges_sent").to_number<int>() == 0);
  const auto table = boost::json::parse(control::render_paths_json(paths(), {})).as_array();
  CHECK(table.at(1).as_object().at("hedges_won").to_number<int>() == 38);
}

TEST_CASE("metrics: hedges sent and won per path", "[iscsi_mpio]") {
  const auto text = metrics_text(paths());
  INFO(text);
  const std::string p2 = R"(index="2",path="198.18.2.1:3260 from 198.18.2.2")";
  CHECK_THAT(text, Contains("# TYPE iscsi_mpio_path_hedges_sent_total counter"));
  CHECK_THAT(text, Contains("iscsi_mpio_path_hedges_sent_total{" + p2 + "} 40"));
  CHECK_THAT(text, Contains("iscsi_mpio_path_hedges_won_total{" + p2 + "} 38"));
}
