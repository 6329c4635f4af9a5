// ParamLayout (nn/param_layout.hpp): offsets, shapes, lookups, and errors for
// unknown and duplicate names.
#include <doctest/doctest.h>

#include <string>

#include "ringtrain/nn/param_layout.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

TEST_CASE("param_layout: add appends tensors at the end of the buffer") {
  ParamLayout layout;
  CHECK(layout.total() == 0);
  CHECK(layout.add("dense_1/kernel", {2, 3}) == 0);
  CHECK(layout.add("dense_1/bias", {3}) == 6);
  CHECK(layout.add("dense_0/kernel", {4, 2}) == 9);
  CHECK(layout.add("scalar", {}) == 17);  // empty shape: one element
  CHECK(layout.total() == 18);
  REQUIRE(layout.tensors().size() == 4);
  CHECK(layout.tensors()[2].name == "dense_0/kernel");

  const TensorSpec& k = layout.find("dense_0/kernel");
  CHECK(k.offset == 9);
  CHECK(k.shape == std::vector<std::size_t>{4, 2});
  CHECK(k.size() == 8);
  CHECK(layout.find("dense_1/bias").offset == 6);
  CHECK(layout.find("scalar").size() == 1);

  CHECK(layout.contains("dense_1/kernel"));
  CHECK_FALSE(layout.contains("dense_1"));
  CHECK_FALSE(layout.contains("dense_2/kernel"));
}

TEST_CASE("param_layout: unknown names throw UsageError naming the tensor") {
  ParamLayout layout;
  layout.add("dense_0/kernel", {2, 2});
  CHECK_THROWS_AS(layout.find("dense_9/bias"), UsageError);
  try {
    layout.find("dense_9/bias");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).find("dense_9/bias") != std::string::npos);
  }
}

TEST_CASE("param_layout: duplicate names throw and leave the layout unchanged") {
  ParamLayout layout;
  layout.add("dense_0/kernel", {2, 2});
  CHECK_THROWS_AS(layout.add("dense_0/kernel", {3}), Error);
  CHECK(layout.total() == 4);
  CHECK(layout.tensors().size() == 1);
}
