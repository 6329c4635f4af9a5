// MlpSpec limits (nn/mlp.hpp): sizes that are surely not a model are refused
// with a one-line UsageError before anything is allocated, and a deep model
// costs time linear in its depth (ParamLayout's name index).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

TEST_CASE("MlpSpec limits: hidden layers, layer width, parameter count") {
  MlpSpec spec;
  spec.sizes.assign(kMaxHiddenLayers + 2, 4);
  CHECK(validate_mlp_spec(spec, "ctx") == std::size_t(kMaxHiddenLayers + 1) * 20);
  CHECK(mlp_layout(spec).tensors().size() == std::size_t(2 * (kMaxHiddenLayers + 1)));
  spec.sizes.push_back(4);
  CHECK_THROWS_WITH_AS(mlp_layout(spec), "model.hidden: 257 hidden layers, at most 256 are supported", UsageError);
  spec.sizes.assign(100000, 4);  // was quadratic to lay out; now refused at once
  CHECK_THROWS_WITH_AS(validate_mlp_spec(spec, "f.h5: /model"), doctest::Contains("f.h5: /model: 99998 hidden layers"),
                       UsageError);
  spec.sizes = {16, kMaxLayerWidth + 1, 3};
  CHECK_THROWS_WITH_AS(mlp_layout(spec), doctest::Contains("layer sizes must lie in [1, 16777216]"), UsageError);
  spec.sizes = {16, kMaxLayerWidth, kMaxLayerWidth, 3};
  CHECK_THROWS_WITH_AS(mlp_layout(spec), doctest::Contains("more than 4294967296 parameters"), UsageError);
  spec.sizes = {3};
  CHECK_THROWS_AS(mlp_layout(spec), UsageError);
}

TEST_CASE("parse_architecture refuses a deep or malformed text before building it") {
  std::string deep = "4";
  for (int i = 0; i < 100000; ++i) deep += "-4";
  CHECK_THROWS_WITH_AS(parse_architecture(deep, "m.h5"), doctest::Contains("more than 256 hidden layers"), UsageError);
  CHECK_THROWS_WITH_AS(parse_architecture("4-16777217-3", "m.h5"), doctest::Contains("malformed architecture"),
                       UsageError);
  CHECK(parse_architecture("4-5-3", "m.h5") == std::vector<int>{4, 5, 3});
}

TEST_CASE("a model of 256 hidden layers builds, with every tensor found by name") {
  MlpSpec spec;
  spec.sizes.assign(kMaxHiddenLayers + 2, 2);
  Mlp mlp(spec, 1);
  CHECK(mlp.num_layers() == kMaxHiddenLayers + 1);
  CHECK(mlp.layout().find("dense_200/bias").size() == 2);
}
