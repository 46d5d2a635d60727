// A path held out as marginal (multipath.marginal_path) in every view: the status tree and its
// JSON, the paths table and its JSON, and the metrics.
#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include "control.hpp"
#include "path_views_test_support.hpp"
#include "status.hpp"

using namespace iscsi_mpio;
using namespace path_views_test;
using Catch::Matchers::Contains;

namespace {

std::vector<mpio::PathStatus> paths() {
  mpio::PathStatus good = active_path(2);
  mpio::PathStatus held = active_path(1);
  held.state = mpio::PathState::marginal;
  held.marginal = true;
  held.marginal_failures = 3;
  held.marginal_time_left = std::chrono::milliseconds(23400);
  held.last_error = "no route to the portal";
  return {held, good};
}

}  // namespace

TEST_CASE("status: a held-out path is failed marginal, with the time left", "[iscsi_mpio]") {
  const auto s = snapshot(paths());
  const auto tree = status::render_tree(s);
  INFO(tree);
  CHECK_THAT(tree, Contains("198.18.1.1:3260 from 198.18.1.2 ") && Contains("failed marginal") &&
                       Contains("marginal: held out, reinstated in 23.4 s (3 failures)"));
  CHECK_THAT(tree, Contains("active ready"));

  const auto json = boost::json::parse(status::render_json(s)).as_object();
  const auto& held = json.at("paths").as_array().at(0).as_object();
  CHECK(held.at("state").as_string() == "marginal");
  CHECK(held.at("marginal").as_bool());
  CHECK(held.at("marginal_failures").to_number<int>() == 3);
  CHECK(held.at("marginal_ms_left").to_number<int>() == 23400);
  const auto& good = json.at("paths").as_array().at(1).as_object();
  CHECK_FALSE(good.at("marginal").as_bool());
  CHECK(good.at("marginal_ms_left").to_number<int>() == 0);
}

TEST_CASE("status: a marginal path that failed again is held once back", "[iscsi_mpio]") {
  auto p = paths();
  p[0].state = mpio::PathState::failed;
  p[0].marginal_time_left = std::chrono::milliseconds(0);
  CHECK(status::marginal_text(p[0]) == " marginal: held out once back (3 failures)");
  CHECK(status::marginal_text(p[1]).empty());
}

TEST_CASE("paths view: marginal state and its line", "[iscsi_mpio]") {
  const auto table = control::render_paths_table(paths());
  INFO(table);
  CHECK_THAT(table, Contains("marginal") && Contains("reinstated in 23.4 s"));
  const auto json = boost::json::parse(control::render_paths_json(paths(), {})).as_array();
  CHECK(json.at(0).as_object().at("state").as_string() == "marginal");
  CHECK(json.at(0).as_object().at("marginal_ms_left").to_number<int>() == 23400);
}

TEST_CASE("metrics: state marginal and the seconds left", "[iscsi_mpio]") {
  const auto text = metrics_text(paths());
  INFO(text);
  const std::string p1 = R"(index="1",path="198.18.1.1:3260 from 198.18.1.2")";
  CHECK_THAT(text, Contains("iscsi_mpio_path_state{" + p1 + R"(,state="marginal"} 1)"));
  CHECK_THAT(text, Contains("iscsi_mpio_path_marginal_seconds_left{" + p1 + "} 23.4"));
  CHECK_THAT(text, Contains("iscsi_mpio_path_marginal_failures{" + p1 + "} 3"));
}
