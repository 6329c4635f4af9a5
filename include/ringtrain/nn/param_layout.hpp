// ParamLayout: names, offsets and shapes of every tensor in a flat buffer.
//
// The model's parameters live in one flat float buffer (and its gradients in a
// matching one); a layout says where `dense_0/kernel` etc. sit inside it. File
// formats and optimizer state use these names. Holds no data itself.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace ringtrain {

struct TensorSpec {
  std::string name;          // e.g. "dense_1/kernel"
  std::size_t offset = 0;    // in floats, from the start of the flat buffer
  std::vector<std::size_t> shape;
  std::size_t size() const;
};

class ParamLayout {
 public:
  // Appends a tensor at the current end of the buffer; returns its offset.
  std::size_t add(const std::string& name, std::vector<std::size_t> shape);
  // Throws UsageError naming the tensor when it does not exist.
  const TensorSpec& find(const std::string& name) const;
  bool contains(const std::string& name) const;
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  std::size_t total() const { return total_; }

 private:
  std::vector<TensorSpec> tensors_;
  // name -> position in tensors_: a linear search per add() and find() made
  // building an L-layer model cost O(L^2) string comparisons.
  std::unordered_map<std::string, std::size_t> index_;
  std::size_t total_ = 0;
};

}  // namespace ringtrain
