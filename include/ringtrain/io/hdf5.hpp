// RAII handles and checked helpers for the HDF5 C API.
//
// Every hid_t is owned by an H5Handle that closes it with the right H5?close;
// every HDF5 call is checked and failures become exceptions naming the file
// and object. HDF5's own error-stack printing is switched off: messages are
// ours, one line each.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace ringtrain {

class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// The HDF5 this was built with ("1.10.8"), from its headers.
std::string hdf5_build_version();

// Silences HDF5's automatic error printing on the calling thread; the first
// call in the process also turns off HDF5's clean-up at exit (hdf5.cpp says why).
void h5_quiet();
// The operating system's reason for the HDF5 error on this thread's stack
// ("No space left on device"), or "" when it carries none.
std::string h5_os_reason();

// Throws UsageError "<what>: <context>" when id < 0; returns an owning handle.
H5Handle h5_check(hid_t id, H5Handle::Closer closer, const std::string& context);
// Throws RuntimeError when status < 0.
void h5_check(herr_t status, const std::string& context);

// UsageError naming the path if it is missing or not an HDF5 file (looks for
// the signature only: nothing of the file is decoded).
void h5_require_hdf5(const std::string& path);
// Opens an existing HDF5 file read-only; UsageError naming the path if it is
// missing or not an HDF5 file.
H5Handle h5_open_read(const std::string& path);
bool h5_exists(hid_t loc, const std::string& name);
// Opens a dataset (or group) by a hard or soft link of this file; a link to
// another file (an external link) is a UsageError: never followed.
H5Handle h5_open_dataset(hid_t file, const std::string& name, const std::string& path);
// The shape of a numeric dataset, checked before anyone allocates or indexes
// by it; every reader of numbers calls this first. UsageError naming the file
// and dataset when the values are not integers or floating point (strings,
// compounds, ...), when the dimensions multiply past 2^62 bytes, when the
// values live outside the file (external storage, a virtual dataset), or
// when the dataset declares more bytes than the file stores for it (a
// crafted dataspace, chunks never written): see kMaxCompression.
std::vector<hsize_t> h5_dataset_shape(hid_t dataset);
bool h5_is_integer(hid_t dataset);
// A compressed dataset may declare at most this many times the bytes the
// file holds for it (deflate cannot expand more than about 1032 times);
// uncompressed ones at most the bytes stored.
constexpr hsize_t kMaxCompression = 1100;

// H5Dread into `mem_type` (a selection or H5S_ALL). A value the conversion
// would clamp (a float64 1e300 read as float32, a uint64 2^32+1 read as
// int32) throws UsageError "<what>: value V is beyond the range of <type>"
// instead of reading back inf or INT_MAX. Returns false when HDF5 fails
// otherwise (checksum mismatch, corrupt chunk): the caller words that.
[[nodiscard]] bool h5_read(hid_t dataset, hid_t mem_type, hid_t mem_space, hid_t file_space, void* out,
                           const std::string& what);

// A fixed-length, NUL-terminated UTF-8 string type that holds `value`
// (RuntimeError for a NUL in it). Fixed length rather than variable length:
// variable-length strings live in HDF5's global heap, which carries no
// checksum; a fixed-length value sits in its object header, which does.
H5Handle h5_fixed_string_type(const std::string& value);
// UsageError unless the file stores the `bytes` a scalar dataset declares
// (the checks of h5_dataset_shape, for a text dataset).
void h5_check_scalar_storage(hid_t dataset, std::size_t bytes);
// Writes a dataset of native floats/ints with the given shape, chunked along
// the first axis with the Fletcher32 checksum filter.
void h5_write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                     const float* data);
void h5_write_ints(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                   const int32_t* data);
void h5_write_int64s(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape,
                     const int64_t* data);
// Text is stored as fixed-length UTF-8 strings (h5py reads them as bytes:
// .decode() them), never in the unchecksummed global heap.
void h5_write_string_attr(hid_t loc, const std::string& name, const std::string& value);

// Scalar attributes of a group or dataset: integers, floating point or text.
using AttrValue = std::variant<int64_t, double, std::string>;
using Attrs = std::map<std::string, AttrValue>;
void h5_write_attrs(hid_t loc, const Attrs& attrs);
// Reads every scalar attribute of `loc` (others are skipped).
Attrs h5_read_attrs(hid_t loc, const std::string& context);
std::string attr_to_string(const AttrValue& v);

// A scalar text dataset (the effective config of a model file). Reading
// refuses any other dataspace (an array of strings would overflow the one
// string read back) and text longer than kMaxText.
void h5_write_string_dataset(hid_t loc, const std::string& name, const std::string& value);
constexpr std::size_t kMaxText = std::size_t(64) << 20;
std::string h5_read_string_dataset(hid_t loc, const std::string& name, const std::string& context);

// Creates a new file for writing in the HDF5 1.10+ format, whose object
// headers, chunk indexes and other metadata carry checksums (attribute
// values included). h5py and h5dump of HDF5 1.10 or later read it.
H5Handle h5_create_file(const std::string& path);
H5Handle h5_create_group(hid_t loc, const std::string& name);
H5Handle h5_open_group(hid_t loc, const std::string& name, const std::string& context);

}  // namespace ringtrain
