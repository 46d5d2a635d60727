#include <catch2/catch.hpp>

#include <common_asio/gather_cursor.hpp>
#include <string>
#include <vector>

namespace {

std::string take(common_asio::GatherCursor& cursor, size_t limit) {
  std::string out;
  for (const auto& b : cursor.window()) {
    const size_t n = std::min(limit - out.size(), b.size());
    out.append(static_cast<const char*>(b.data()), n);
    if (out.size() == limit) break;
  }
  cursor.consume(out.size());
  return out;
}

}  // namespace

TEST_CASE("GatherCursor hands out every byte once, across partial writes", "[common]") {
  const std::vector<std::string> parts{"header", "", "payload-bytes", "pad", ""};
  std::vector<boost::asio::const_buffer> buffers;
  std::string all;
  for (const auto& p : parts) {
    buffers.emplace_back(p.data(), p.size());
    all += p;
  }
  for (size_t step : {1u, 2u, 5u, 7u, 100u}) {
    INFO("write size " << step);
    common_asio::GatherCursor cursor(buffers);
    std::string written;
    for (int guard = 0; !cursor.finished() && guard < 100; ++guard) written += take(cursor, step);
    CHECK(cursor.finished());
    CHECK(written == all);
  }
}

TEST_CASE("GatherCursor windows hold at most max_window buffers", "[common]") {
  std::vector<std::string> parts(common_asio::GatherCursor::max_window + 10, "x");
  std::vector<boost::asio::const_buffer> buffers;
  for (const auto& p : parts) buffers.emplace_back(p.data(), p.size());
  common_asio::GatherCursor cursor(buffers);
  CHECK(cursor.window().size() == common_asio::GatherCursor::max_window);
  cursor.consume(common_asio::GatherCursor::max_window);
  CHECK(cursor.window().size() == 10);
  cursor.consume(10);
  CHECK(cursor.finished());
  common_asio::GatherCursor empty(std::span<const boost::asio::const_buffer>{});
  CHECK(empty.finished());
}
