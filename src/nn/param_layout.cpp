// ParamLayout implementation: append-only bookkeeping of named tensors.
#include "ringtrain/nn/param_layout.hpp"

#include "ringtrain/util/error.hpp"

namespace ringtrain {

std::size_t TensorSpec::size() const {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

std::size_t ParamLayout::add(const std::string& name, std::vector<std::size_t> shape) {
  RT_CHECK(index_.emplace(name, tensors_.size()).second, "duplicate tensor name ", name);
  TensorSpec spec{name, total_, std::move(shape)};
  total_ += spec.size();
  tensors_.push_back(std::move(spec));
  return tensors_.back().offset;
}

bool ParamLayout::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorSpec& ParamLayout::find(const std::string& name) const {
  if (const auto it = index_.find(name); it != index_.end()) return tensors_[it->second];
  throw UsageError(str_cat("no tensor named '", name, "' in the model"));
}

}  // namespace ringtrain
