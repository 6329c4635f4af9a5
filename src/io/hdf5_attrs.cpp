// HDF5 attributes and text (see hdf5.hpp): the typed attribute maps of the
// model and checkpoint files, the fixed-length strings they store, and the
// text dataset of the effective config.
#include "ringtrain/io/hdf5.hpp"

#include <algorithm>
#include <cstring>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

H5Handle h5_fixed_string_type(const std::string& value) {
  // A NUL would end the stored text early and the file's CRC would fail.
  if (value.find('\0') != std::string::npos) throw RuntimeError("HDF5 text may not contain a NUL byte");
  H5Handle type = h5_check(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  h5_check(H5Tset_size(type, value.size() + 1), "H5Tset_size");
  h5_check(H5Tset_strpad(type, H5T_STR_NULLTERM), "H5Tset_strpad");
  h5_check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset");
  return type;
}


void h5_write_string_attr(hid_t loc, const std::string& name, const std::string& value) {
  H5Handle type = h5_fixed_string_type(value);
  H5Handle space = h5_check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  H5Handle attr = h5_check(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                           H5Aclose, "cannot create attribute " + name);
  h5_check(H5Awrite(attr, type, value.c_str()), "writing attribute " + name);
}


namespace {
void write_scalar_attr(hid_t loc, const std::string& name, hid_t type, const void* value) {
  H5Handle space = h5_check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  H5Handle attr = h5_check(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                           "cannot create attribute " + name);
  h5_check(H5Awrite(attr, type, value), "writing attribute " + name);
}
}  // namespace

void h5_write_attrs(hid_t loc, const Attrs& attrs) {
  for (const auto& [name, value] : attrs) {
    if (const auto* i = std::get_if<int64_t>(&value)) {
      write_scalar_attr(loc, name, H5T_NATIVE_INT64, i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      write_scalar_attr(loc, name, H5T_NATIVE_DOUBLE, d);
    } else {
      h5_write_string_attr(loc, name, std::get<std::string>(value));
    }
  }
}

namespace {
std::string read_string(hid_t obj, hid_t type, bool is_attr, const std::string& context) {
  if (H5Tis_variable_str(type) > 0) {
    H5Handle mem = h5_check(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    h5_check(H5Tset_size(mem, H5T_VARIABLE), "H5Tset_size");
    h5_check(H5Tset_cset(mem, H5Tget_cset(type)), "H5Tset_cset");  // no ASCII/UTF-8 conversion
    char* p = nullptr;
    h5_check(is_attr ? H5Aread(obj, mem, &p) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p),
             "reading " + context);
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  const std::size_t size = H5Tget_size(type);
  if (size == 0 || size > kMaxText)
    throw UsageError(str_cat(context, ": text of ", size, " bytes (more than ", kMaxText, " or none: corrupt file?)"));
  std::string buf(size, '\0');
  H5Handle mem = h5_check(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  h5_check(H5Tset_size(mem, size), "H5Tset_size");
  h5_check(H5Tset_cset(mem, H5Tget_cset(type)), "H5Tset_cset");
  h5_check(is_attr ? H5Aread(obj, mem, buf.data()) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()),
           "reading " + context);
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

struct AttrIter {
  Attrs* out;
  std::string context;
  std::string error;
};

herr_t collect_attr(hid_t loc, const char* name, const H5A_info_t*, void* data) {
  auto* it = static_cast<AttrIter*>(data);
  const hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (attr < 0) return -1;
  H5Handle a(attr, H5Aclose);
  H5Handle space(H5Aget_space(attr), H5Sclose);
  H5Handle type(H5Aget_type(attr), H5Tclose);
  if (space < 0 || type < 0) return -1;
  if (H5Sget_simple_extent_type(space) != H5S_SCALAR) return 0;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      int64_t v = 0;
      if (H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) return -1;
      (*it->out)[name] = v;
      break;
    }
    case H5T_FLOAT: {
      double v = 0;
      if (H5Aread(attr, H5T_NATIVE_DOUBLE, &v) < 0) return -1;
      (*it->out)[name] = v;
      break;
    }
    case H5T_STRING:
      try {  // no exception may cross HDF5's C frames
        (*it->out)[name] = read_string(attr, type, true, it->context + " attribute " + name);
      } catch (const std::exception& e) {
        it->error = e.what();
        return -1;
      }
      break;
    default:
      break;
  }
  return 0;
}
}  // namespace

Attrs h5_read_attrs(hid_t loc, const std::string& context) {
  Attrs out;
  AttrIter it{&out, context, {}};
  hsize_t idx = 0;
  if (H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, collect_attr, &it) < 0)
    throw UsageError(str_cat(context, ": cannot read attributes (corrupt file?)", it.error.empty() ? "" : ": ",
                             it.error));
  return out;
}

std::string attr_to_string(const AttrValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", *d);
    return buf;
  }
  return std::get<std::string>(v);
}

void h5_write_string_dataset(hid_t loc, const std::string& name, const std::string& value) {
  H5Handle type = h5_fixed_string_type(value);
  H5Handle space = h5_check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  H5Handle dcpl = h5_check(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate");
  // Text up to 48 KiB is stored in the dataset's (checksummed) object header;
  // longer text is contiguous and covered only by the model file's own CRC.
  if (value.size() < (48u << 10)) h5_check(H5Pset_layout(dcpl, H5D_COMPACT), "H5Pset_layout");
  H5Handle ds = h5_check(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                         H5Dclose, "cannot create dataset " + name);
  h5_check(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, value.c_str()), "writing " + name);
}

std::string h5_read_string_dataset(hid_t loc, const std::string& name, const std::string& context) {
  H5Handle ds = h5_open_dataset(loc, name, context);
  H5Handle type = h5_check(H5Dget_type(ds), H5Tclose, str_cat(context, ": cannot read the type of '", name, "'"));
  if (H5Tget_class(type) != H5T_STRING) throw UsageError(str_cat(context, ": '", name, "' is not text"));
  H5Handle space = h5_check(H5Dget_space(ds), H5Sclose, str_cat(context, ": cannot read the dataspace of '", name, "'"));
  // One string is read back: any other dataspace would be read past it.
  if (H5Sget_simple_extent_type(space) != H5S_SCALAR)
    throw UsageError(str_cat(context, ": '", name, "' is not a single text value"));
  if (H5Tis_variable_str(type) <= 0) h5_check_scalar_storage(ds, H5Tget_size(type));
  try {
    return read_string(ds, type, false, str_cat(context, " ", name));
  } catch (const RuntimeError& e) {
    throw UsageError(str_cat(context, ": cannot read '", name, "' (corrupt file?)"));
  }
}

}  // namespace ringtrain
