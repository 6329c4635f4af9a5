// Eigen aliases for the row-major views ringtrain uses everywhere.
//
// Activations are (batch, features) and kernels (in, out), both row-major, so a
// batch of rows is contiguous in memory and a kernel is laid out exactly as the
// Keras-convention HDF5 dataset `[in, out]` that model files store.
#pragma once

#include <Eigen/Core>

namespace ringtrain {

using MatrixR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<MatrixR>;
using ConstMatMap = Eigen::Map<const MatrixR>;
using RowVecMap = Eigen::Map<Eigen::RowVectorXf>;
using ConstRowVecMap = Eigen::Map<const Eigen::RowVectorXf>;

}  // namespace ringtrain
