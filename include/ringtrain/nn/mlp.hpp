// Mlp: a multi-layer perceptron over one flat parameter buffer.
//
// Layers dense_0 .. dense_{L-1} (input to output); each hidden layer is
// Dense -> activation -> optional inverted dropout; the last layer emits
// logits (classification) or predictions (regression) without activation.
//
// Memory: the parameters are one flat buffer laid out in REVERSE layer order
// (dense_{L-1} first), so the gradients backward() finishes first form a
// contiguous prefix of the gradient buffer (docs/ARCHITECTURE.md: buckets can be reduced
// while backward continues). All activations and their gradients live in
// workspace buffers sized for `max_batch` at construction; forward() and
// backward() never allocate.
//
// The gradient buffer is owned by the caller (the trainer appends reduction
// slots to it); backward() overwrites grads[0, num_params()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ringtrain/nn/param_layout.hpp"
#include "ringtrain/nn/tensor.hpp"
#include "ringtrain/util/big_buffer.hpp"

namespace ringtrain {

enum class Activation { kRelu, kTanh };

// Told by Mlp::backward() each time a longer prefix of the gradient buffer
// holds its final values (after each layer), so those gradients can be
// all-reduced while backward goes on (comm.overlap).
class GradientsReady {
 public:
  virtual void gradients_ready(std::size_t prefix) = 0;

 protected:
  ~GradientsReady() = default;
};
Activation parse_activation(const std::string& name);  // UsageError if unknown
const char* activation_name(Activation a);

struct MlpSpec {
  std::vector<int> sizes;  // input, hidden..., output; at least 2 entries
  Activation activation = Activation::kRelu;
  float dropout = 0.0f;    // drop probability for hidden layers, in [0, 1)
  std::string architecture() const;  // "784-256-128-10"
};

// Limits of a spec, from the configuration or from a model file: sizes that
// are surely not a model (a crafted file, a typo) are refused before anything
// is allocated. Every layer, input and output included, holds at most
// kMaxLayerWidth units.
constexpr int kMaxHiddenLayers = 256;
constexpr int kMaxLayerWidth = 1 << 24;
constexpr std::size_t kMaxParams = std::size_t(1) << 32;  // 16 GiB of float32
// UsageError "<context>: ..." when the spec breaks a limit, has fewer than 2
// sizes or a size outside [1, kMaxLayerWidth] (the dropout is Mlp's to
// check). Overflow-safe. Returns the parameter count.
std::size_t validate_mlp_spec(const MlpSpec& spec, const std::string& context);

// The flat parameter layout an Mlp of this spec uses (reverse layer order),
// without allocating anything else. Validates the spec (context "model.hidden",
// the option that sets it).
ParamLayout mlp_layout(const MlpSpec& spec);
// "784-256-128-10" -> {784, 256, 128, 10}; UsageError naming `context` if malformed.
std::vector<int> parse_architecture(const std::string& text, const std::string& context);

class Mlp {
 public:
  Mlp(MlpSpec spec, int max_batch);

  const MlpSpec& spec() const { return spec_; }
  const ParamLayout& layout() const { return layout_; }
  std::size_t num_params() const { return layout_.total(); }
  int num_layers() const { return static_cast<int>(spec_.sizes.size()) - 1; }
  int input_size() const { return spec_.sizes.front(); }
  int output_size() const { return spec_.sizes.back(); }
  int max_batch() const { return max_batch_; }

  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }

  // He-uniform (ReLU) or Glorot-uniform (tanh) kernels, zero biases; a pure
  // function of the seed, so every rank could compute it (rank 0's copy is
  // broadcast anyway).
  void init(uint64_t seed);

  // x: (batch, input_size) row-major. Returns (batch, output_size) outputs that
  // stay valid until the next forward(). `dropout_key` selects the dropout
  // masks; it is ignored when !training or dropout == 0.
  ConstMatMap forward(const float* x, int batch, bool training, uint64_t dropout_key = 0);

  // dout: (batch, output_size) gradient of the summed loss w.r.t. the outputs
  // of the last forward(). Writes the parameter gradients into grads. With
  // a `ready` sink, calls it after each layer with the length of the prefix
  // of grads that is final (the values of gradient_ready_points()).
  void backward(const float* dout, float* grads, GradientsReady* ready = nullptr);
  // The prefixes backward() completes, in order, ending with num_params().
  std::vector<std::size_t> gradient_ready_points() const;

 private:
  struct Layer {
    int in = 0, out = 0;
    std::size_t kernel = 0, bias = 0;  // offsets into the flat buffers
    BigBuffer<float> z, h;      // (max_batch, out): pre-activation, activation
    BigBuffer<float> scale, a;  // dropout only: 0 or 1/keep, and h * scale
    BigBuffer<float> dz;        // (max_batch, out)
  };
  const float* layer_input(int l) const;

  MlpSpec spec_;
  int max_batch_;
  ParamLayout layout_;
  std::vector<std::size_t> ready_points_;  // gradient_ready_points(), set by the constructor
  BigBuffer<float> params_;
  std::vector<Layer> layers_;
  const float* input_ = nullptr;
  int batch_ = 0;
  bool dropout_active_ = false;
};

}  // namespace ringtrain
