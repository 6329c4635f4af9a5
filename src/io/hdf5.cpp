// Checked HDF5 helpers (see hdf5.hpp).
#include "ringtrain/io/hdf5.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

void h5_quiet() {
  // Before the library initialises: no clean-up at exit. After a failed
  // H5Fclose (a full disk) HDF5 keeps the file in its tables, and closing it
  // again from the exit handler crashes; every file of ours is closed by RAII.
  static std::once_flag once;
  std::call_once(once, [] { H5dont_atexit(); });
  // The error stack is per thread in a thread-safe HDF5 (the writer thread).
  thread_local bool silenced = false;
  if (!silenced) H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  silenced = true;
}

namespace {

// The operating system's reason, when the innermost HDF5 error carries one
// (the sec2 driver writes "... error message = 'No space left on device' ...").
herr_t find_os_reason(unsigned, const H5E_error2_t* e, void* out) {
  const char* desc = e->desc ? std::strstr(e->desc, "error message = '") : nullptr;
  if (desc == nullptr) return 0;
  desc += std::strlen("error message = '");
  const char* end = std::strchr(desc, '\'');
  static_cast<std::string*>(out)->assign(desc, end ? std::size_t(end - desc) : std::strlen(desc));
  return 1;  // stop walking
}

}  // namespace

std::string hdf5_build_version() {
  return str_cat(H5_VERS_MAJOR, ".", H5_VERS_MINOR, ".", H5_VERS_RELEASE, H5_VERS_SUBRELEASE[0] ? "-" : "",
                 H5_VERS_SUBRELEASE);
}

std::string h5_os_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, find_os_reason, &reason);
  return reason;
}

H5Handle h5_check(hid_t id, H5Handle::Closer closer, const std::string& context) {
  if (id < 0) throw UsageError(context);
  return H5Handle(id, closer);
}

void h5_check(herr_t status, const std::string& context) {
  if (status >= 0) return;
  const std::string reason = h5_os_reason();
  throw RuntimeError(str_cat("HDF5 error: ", context, reason.empty() ? "" : ": " + reason));
}

void h5_require_hdf5(const std::string& path) {
  h5_quiet();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw UsageError(str_cat(path, ": no such file"));
  // H5Fis_hdf5 opens the file: a FIFO would wait for a writer forever.
  if (!S_ISREG(st.st_mode))
    throw UsageError(str_cat(path, ": not a regular file (a directory, FIFO or device is no HDF5 file)"));
  if (H5Fis_hdf5(path.c_str()) <= 0) throw UsageError(str_cat(path, ": not an HDF5 file (or truncated)"));
}

H5Handle h5_open_read(const std::string& path) {
  h5_require_hdf5(path);
  return h5_check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                  str_cat(path, ": cannot open HDF5 file (truncated or corrupt?)"));
}

bool h5_exists(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

namespace {

// A link of this file (hard or soft); an external link would make the
// reader open another file the crafted one names.
void check_local_link(hid_t loc, const std::string& name, const std::string& context) {
  H5L_info_t info{};
  if (H5Lget_info(loc, name.c_str(), &info, H5P_DEFAULT) < 0)
    throw UsageError(str_cat(context, ": cannot read the link '", name, "' (corrupt file?)"));
  if (info.type != H5L_TYPE_HARD && info.type != H5L_TYPE_SOFT)
    throw UsageError(str_cat(context, ": '", name, "' is a link to another file (not followed)"));
}

// "data.h5: dataset 'X'" (top-level names without their slash, as the
// readers' other messages write them), for messages about `obj`.
std::string object_where(hid_t obj) {
  std::string file(1024, '\0'), name(1024, '\0');
  const ssize_t fn = H5Fget_name(obj, file.data(), file.size());
  const ssize_t on = H5Iget_name(obj, name.data(), name.size());
  file.resize(fn > 0 ? std::min<std::size_t>(std::size_t(fn), file.size() - 1) : 0);
  name.resize(on > 0 ? std::min<std::size_t>(std::size_t(on), name.size() - 1) : 0);
  if (name.size() > 1 && name[0] == '/' && name.find('/', 1) == std::string::npos) name.erase(0, 1);
  return str_cat(file, ": dataset '", name, "'");
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string out;
  for (hsize_t d : dims) out += (out.empty() ? "" : " x ") + std::to_string(d);
  return out.empty() ? "a scalar" : out;
}

// The file's size on disk; HDF5's own figure includes the end-of-allocation
// address the (crafted) superblock declares.
hsize_t file_size_of(hid_t obj) {
  std::string file(4096, '\0');
  const ssize_t n = H5Fget_name(obj, file.data(), file.size());
  if (n <= 0 || std::size_t(n) >= file.size()) return 0;
  file.resize(std::size_t(n));
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0 ? hsize_t(st.st_size) : 0;
}

// Refuses a dataset whose `dims` of `type_size` bytes overflow or exceed
// what the file holds for it (see h5_dataset_shape).
void check_storage(hid_t ds, const std::vector<hsize_t>& dims, std::size_t type_size, const std::string& where) {
  hsize_t bytes = type_size;
  for (hsize_t d : dims)
    if (__builtin_mul_overflow(bytes, d, &bytes) || bytes > (hsize_t(1) << 62))
      throw UsageError(str_cat(where, " declares ", dims_text(dims), " values of ", type_size,
                               " bytes: more than 2^62 bytes (crafted file?)"));
  H5Handle dcpl = h5_check(H5Dget_create_plist(ds), H5Pclose, where + ": cannot read its creation properties");
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_VIRTUAL)
    throw UsageError(str_cat(where, " is a virtual dataset (its values live in other files): not read"));
  if (H5Pget_external_count(dcpl) != 0)
    throw UsageError(str_cat(where, " keeps its values in external files: not read"));
  if (bytes == 0) return;
  bool compressed = false;
  const int nfilters = H5Pget_nfilters(dcpl);
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0;
    std::size_t nelmts = 0;
    const H5Z_filter_t f = H5Pget_filter2(dcpl, unsigned(i), &flags, &nelmts, nullptr, 0, nullptr, nullptr);
    if (f != H5Z_FILTER_FLETCHER32 && f != H5Z_FILTER_SHUFFLE) compressed = true;
  }
  // Chunked storage never written reads as fill values; the chunk index (and
  // a contiguous layout's size) are numbers in the file: bound by its size.
  const hsize_t stored = std::min<hsize_t>(H5Dget_storage_size(ds), file_size_of(ds));
  hsize_t limit = stored;
  if (compressed && __builtin_mul_overflow(stored, kMaxCompression, &limit)) limit = ~hsize_t(0);
  if (bytes > limit)
    throw UsageError(str_cat(where, " declares ", dims_text(dims), " values (", bytes, " bytes) but the file stores ",
                             stored, " bytes of it", compressed ? " compressed" : "",
                             " (crafted, truncated or never written)"));
}

const char* class_text(H5T_class_t c) {
  switch (c) {
    case H5T_STRING: return "text";
    case H5T_COMPOUND: return "compound values";
    case H5T_ENUM: return "enum values";
    case H5T_VLEN: return "variable-length sequences";
    case H5T_ARRAY: return "arrays";
    case H5T_REFERENCE: return "references";
    case H5T_OPAQUE: return "opaque values";
    case H5T_BITFIELD: return "bit fields";
    default: return "non-numeric values";
  }
}

}  // namespace

H5Handle h5_open_dataset(hid_t file, const std::string& name, const std::string& path) {
  if (!h5_exists(file, name)) throw UsageError(str_cat(path, ": no dataset named '", name, "'"));
  check_local_link(file, name, path);
  return h5_check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose,
                  str_cat(path, ": cannot open dataset '", name, "'"));
}

std::vector<hsize_t> h5_dataset_shape(hid_t dataset) {
  const std::string where = object_where(dataset);
  H5Handle type = h5_check(H5Dget_type(dataset), H5Tclose, where + ": cannot read its type (corrupt file?)");
  const H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    throw UsageError(str_cat(where, " holds ", class_text(cls), ", not numbers"));
  const std::size_t type_size = H5Tget_size(type);
  if (type_size == 0 || type_size > 64) throw UsageError(str_cat(where, " has a malformed number type"));
  H5Handle space = h5_check(H5Dget_space(dataset), H5Sclose, where + ": cannot read its dataspace (corrupt file?)");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK) throw UsageError(str_cat(where, ": malformed dataspace (corrupt file?)"));
  std::vector<hsize_t> dims(rank);
  if (rank && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0)
    throw UsageError(str_cat(where, ": malformed dataspace (corrupt file?)"));
  if (H5Sget_simple_extent_type(space) == H5S_NULL) dims.assign(1, 0);  // no values at all
  check_storage(dataset, dims, type_size, where);
  return dims;
}

bool h5_is_integer(hid_t dataset) {
  H5Handle type = h5_check(H5Dget_type(dataset), H5Tclose, "H5Dget_type");
  return H5Tget_class(type) == H5T_INTEGER;
}

namespace {

// What a conversion that would clamp saw (h5_read).
struct RangeError {
  bool hit = false;
  std::string value;
};

// The source value of a conversion exception, in decimal ("" when its type
// is not a plain native number).
std::string number_text(hid_t type, const void* p) {
  const std::size_t size = H5Tget_size(type);
  char buf[64] = "";
  if (H5Tget_class(type) == H5T_FLOAT) {
    if (size == sizeof(double)) std::snprintf(buf, sizeof buf, "%.17g", *static_cast<const double*>(p));
    else if (size == sizeof(float)) std::snprintf(buf, sizeof buf, "%.9g", double(*static_cast<const float*>(p)));
    return buf;
  }
  if (H5Tget_class(type) != H5T_INTEGER || size > 8) return buf;
  uint64_t u = 0;
  std::memcpy(&u, p, size);  // little-endian: the low bytes
  if (H5Tget_sign(type) == H5T_SGN_2 && size < 8 && (u >> (8 * size - 1)) & 1) u |= ~uint64_t(0) << (8 * size);
  if (H5Tget_sign(type) == H5T_SGN_2) return std::to_string(int64_t(u));
  return std::to_string(u);
}

H5T_conv_ret_t on_conversion_exception(H5T_conv_except_t kind, hid_t src_type, hid_t, void* src, void*, void* data) {
  if (kind != H5T_CONV_EXCEPT_RANGE_HI && kind != H5T_CONV_EXCEPT_RANGE_LOW) return H5T_CONV_UNHANDLED;
  auto* seen = static_cast<RangeError*>(data);
  if (!seen->hit) seen->value = src ? number_text(src_type, src) : "";
  seen->hit = true;
  return H5T_CONV_ABORT;
}

std::string mem_type_text(hid_t mem_type) {
  const std::size_t size = H5Tget_size(mem_type);
  const bool is_float = H5Tget_class(mem_type) == H5T_FLOAT;
  const bool is_unsigned = !is_float && H5Tget_sign(mem_type) == H5T_SGN_NONE;
  return str_cat(is_float ? "float" : is_unsigned ? "uint" : "int", 8 * size);
}

}  // namespace

bool h5_read(hid_t dataset, hid_t mem_type, hid_t mem_space, hid_t file_space, void* out, const std::string& what) {
  H5Handle dxpl = h5_check(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate");
  RangeError seen;
  h5_check(H5Pset_type_conv_cb(dxpl, on_conversion_exception, &seen), "H5Pset_type_conv_cb");
  const herr_t status = H5Dread(dataset, mem_type, mem_space, file_space, dxpl, out);
  if (seen.hit)
    throw UsageError(str_cat(what, ": value ", seen.value.empty() ? "" : seen.value + " ", "is beyond the range of ",
                             mem_type_text(mem_type)));
  return status >= 0;
}

namespace {
void write_dataset(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                   hid_t file_type, hid_t mem_type, std::size_t elem_size, const void* data) {
  H5Handle space = h5_check(H5Screate_simple(int(shape.size()), shape.data(), nullptr), H5Sclose,
                            "H5Screate_simple for " + name);
  H5Handle dcpl = h5_check(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate");
  hsize_t total = 1;
  for (hsize_t d : shape) total *= d;
  if (total > 0) {
    // Chunks of about 1 MiB along the first axis; Fletcher32 detects flipped bytes.
    std::vector<hsize_t> chunk = shape;
    hsize_t row = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) row *= std::max<hsize_t>(shape[i], 1);
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(shape[0], (hsize_t(1) << 20) / elem_size / row));
    h5_check(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "H5Pset_chunk for " + name);
    h5_check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32 for " + name);
  }
  H5Handle ds = h5_check(H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                         H5Dclose, "cannot create dataset " + name);
  if (total > 0) h5_check(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "writing " + name);
}

}  // namespace

void h5_write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                     const float* data) {
  write_dataset(loc, name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float), data);
}

void h5_write_ints(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                   const int32_t* data) {
  write_dataset(loc, name, shape, H5T_STD_I32LE, H5T_NATIVE_INT32, sizeof(int32_t), data);
}

void h5_write_int64s(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                     const int64_t* data) {
  write_dataset(loc, name, shape, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t), data);
}



void h5_check_scalar_storage(hid_t dataset, std::size_t bytes) {
  check_storage(dataset, {}, bytes, object_where(dataset));
}

H5Handle h5_create_file(const std::string& path) {
  h5_quiet();
  H5Handle fapl = h5_check(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate");
  h5_check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST), "H5Pset_libver_bounds");
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (id < 0) throw RuntimeError(str_cat(path, ": cannot create HDF5 file"));
  return H5Handle(id, H5Fclose);
}

H5Handle h5_create_group(hid_t loc, const std::string& name) {
  const hid_t id = H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw RuntimeError(str_cat("HDF5 error: cannot create group ", name));
  return H5Handle(id, H5Gclose);
}

H5Handle h5_open_group(hid_t loc, const std::string& name, const std::string& context) {
  if (!h5_exists(loc, name)) throw UsageError(str_cat(context, ": no group '", name, "'"));
  check_local_link(loc, name, context);
  return h5_check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), H5Gclose,
                  str_cat(context, ": cannot open group '", name, "' (corrupt file?)"));
}

}  // namespace ringtrain
