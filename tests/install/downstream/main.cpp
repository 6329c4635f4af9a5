// Uses the installed ringtrain library from outside its tree: the model layer
// (core), a model file written and read back (io: HDF5 and zlib) and an MPI
// helper (comm: <mpi.h> and libmpi), with no MPI launcher. Prints one line per
// check; exits 1 on a wrong result. Usage: downstream SCRATCH_DIR
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/comm/ring_allreduce.hpp"  // includes <mpi.h>
#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
    return 2;
  }
  try {
    // Compile definitions of the package's targets reach us.
    std::printf("ringtrain %s\n", RINGTRAIN_VERSION);
    check(std::strcmp(RINGTRAIN_VERSION, PACKAGE_VERSION) == 0,
          std::string("RINGTRAIN_VERSION ") + RINGTRAIN_VERSION + " == package version " + PACKAGE_VERSION);

    // core: a 4-8-3 MLP, its flat layout (output layer first) and a forward pass.
    ringtrain::MlpSpec spec;
    spec.sizes = ringtrain::parse_architecture("4-8-3", "downstream");
    const ringtrain::ParamLayout layout = ringtrain::mlp_layout(spec);
    check(layout.total() == 4 * 8 + 8 + 8 * 3 + 3, "layout of 4-8-3 holds " + std::to_string(layout.total()) + " floats (67)");
    check(layout.find("dense_1/kernel").offset == 0 && layout.find("dense_0/bias").offset == 59,
          "layout in reverse layer order (dense_1/kernel at 0, dense_0/bias at 59)");
    ringtrain::Mlp mlp(spec, 2);
    mlp.init(42);
    const std::vector<float> x = {0.1f, 0.2f, 0.3f, 0.4f, -1.0f, 0.5f, 2.0f, 0.0f};
    const ringtrain::ConstMatMap out = mlp.forward(x.data(), 2, /*training=*/false);
    bool finite = out.rows() == 2 && out.cols() == 3;
    for (int i = 0; i < out.size(); ++i) finite = finite && std::isfinite(out.data()[i]);
    float weight_sum = 0.0f;
    for (std::size_t i = 0; i < mlp.num_params(); ++i) weight_sum += std::fabs(mlp.params()[i]);
    check(finite && weight_sum > 0.0f, "forward pass of 2 rows gives 2x3 finite outputs");

    // io: a model file (HDF5, Fletcher32, CRC-32 through zlib), written and read back.
    const std::string path = std::string(argv[1]) + "/downstream.h5";
    ringtrain::SavedModel saved;
    saved.spec = spec;
    saved.params.assign(mlp.params(), mlp.params() + mlp.num_params());
    saved.config = "[model]\nhidden = 8\n";
    ringtrain::write_model_file(path, saved);
    const ringtrain::SavedModel back = ringtrain::read_model_file(path);
    check(ringtrain::model_file_format(path) == ringtrain::kModelFormat, "model file format " + ringtrain::model_file_format(path));
    check(back.spec.architecture() == "4-8-3" && back.params == saved.params && back.config == saved.config,
          "model file read back: architecture " + back.spec.architecture() + ", every parameter bit-identical");
    check(ringtrain::file_crc32(path) != 0, "file_crc32 of the model file (zlib)");

    // comm: the MPI error check (MPI_SUCCESS passes without MPI_Init; linking it
    // needs libmpi).
    ringtrain::check_mpi(MPI_SUCCESS, "downstream");
    check(true, "check_mpi(MPI_SUCCESS) from <mpi.h> version " + std::to_string(MPI_VERSION) + "." + std::to_string(MPI_SUBVERSION));
  } catch (const ringtrain::Error& e) {
    std::fprintf(stderr, "FAIL: ringtrain error: %s\n", e.what());
    return 1;
  }
  if (failures != 0) {
    std::printf("downstream: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("downstream: all checks passed\n");
  return 0;
}
