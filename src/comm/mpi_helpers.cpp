// check_mpi (see mpi_helpers.hpp).
#include "ringtrain/comm/mpi_helpers.hpp"

#include <mpi.h>

#include <string>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw RuntimeError(str_cat(what, " failed: ", std::string(text, len)));
}

}  // namespace ringtrain
