// RunFiles (see run_files.hpp).
#include "ringtrain/train/run_files.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace fs = std::filesystem;

namespace {

nlohmann::ordered_json metrics_json(const Attrs& attrs) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [k, v] : attrs) {
    if (const auto* i = std::get_if<int64_t>(&v)) j[k] = *i;
    else if (const auto* d = std::get_if<double>(&v)) j[k] = *d;
    else j[k] = std::get<std::string>(v);
  }
  return j;
}

void remove_file(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) throw RuntimeError(str_cat(path, ": cannot delete: ", ec.message()));
}

// best.h5 as a second name of the versioned file when the file system
// allows it (no second write), else a copy; atomic either way.
void publish_as(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  std::remove(tmp.c_str());
  if (::link(from.c_str(), tmp.c_str()) != 0) {
    std::error_code ec;
    fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) throw RuntimeError(str_cat(to, ": cannot copy from ", from, ": ", ec.message()));
  }
  AtomicFile out(to);  // tmp name matches AtomicFile's
  out.commit();
}

}  // namespace

RunFiles::RunFiles(std::string dir, bool active, int keep_last, std::function<void()> keep_alive)
    : dir_(std::move(dir)), active_(active), keep_last_(keep_last), keep_alive_(std::move(keep_alive)) {}

RunFiles::~RunFiles() {
  if (in_flight_.valid()) in_flight_.wait();
}

// Waits for the write in flight and keeps its failure: a future that is
// replaced without get() would drop the error silently.
void RunFiles::settle() {
  if (!in_flight_.valid()) return;
  if (keep_alive_)
    while (in_flight_.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) keep_alive_();
  try {
    in_flight_.get();
  } catch (const std::exception& e) {
    if (error_.empty()) error_ = e.what();
  }
}

SavedCheckpoint& RunFiles::stage() {
  settle();
  return staging_;
}

void RunFiles::submit(SaveRequest request) {
  RT_CHECK(active_, "RunFiles::submit on an inactive rank");
  settle();
  if (!error_.empty()) return;  // reported at the next step; write nothing more
  in_flight_ = std::async(std::launch::async, [this, r = std::move(request)] { write(r); });
}

std::string RunFiles::failed() {
  if (in_flight_.valid() && in_flight_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) settle();
  return error_;
}

void RunFiles::wait() {
  settle();
  if (!error_.empty()) throw RuntimeError(error_);
}

std::string RunFiles::checkpoint_path(int64_t step) const {
  return str_cat(dir_, "/checkpoints/ckpt-", step, ".h5");
}

std::string RunFiles::versioned_name(int64_t step) { return str_cat("best-step", step, ".h5"); }

std::vector<std::pair<int64_t, std::string>> RunFiles::list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  const std::regex name("ckpt-([0-9]{1,18})\\.h5");
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints", ec)) {
    std::smatch m;
    const std::string file = e.path().filename().string();
    if (std::regex_match(file, m, name)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

void RunFiles::write(const SaveRequest& r) {
  const SavedModel& model = staging_.model;
  if (r.checkpoint) {
    std::error_code ec;
    fs::create_directories(dir_ + "/checkpoints", ec);
    if (ec) throw RuntimeError(str_cat(dir_, "/checkpoints: cannot create: ", ec.message()));
    const std::string path = checkpoint_path(r.step);
    write_checkpoint_file(path, staging_);
    latest_ = str_cat("checkpoints/ckpt-", r.step, ".h5");
    record(latest_, "checkpoint", model, r.step);
    prune_checkpoints();  // only now that the new one is safe
    if (on_checkpoint_) {
      nlohmann::ordered_json e;
      e["step"] = r.step;
      const nlohmann::ordered_json m = metrics_json(staging_.trainer);  // of this step (not the last evaluation)
      for (const char* key : {"examples_seen", "epoch"})
        if (m.contains(key)) e[key] = m[key];
      e["path"] = latest_;
      on_checkpoint_(e);
    }
  }
  if (r.versioned) {
    const std::string name = versioned_name(r.step);
    write_model_file(dir_ + "/" + name, model);
    record(name, "best-versioned", model, r.step);
    if (r.best) {
      publish_as(dir_ + "/" + name, dir_ + "/best.h5");
      record("best.h5", "best", model, r.step);
    }
  } else if (r.best) {
    write_model_file(dir_ + "/best.h5", model);
    record("best.h5", "best", model, r.step);
  }
  for (int64_t s : r.evicted) {
    const std::string name = versioned_name(s);
    remove_file(dir_ + "/" + name);
    entries_.erase(name);
  }
  if (r.final_model) {
    write_model_file(dir_ + "/final.h5", model);
    record("final.h5", "final", model, r.step);
  }
  write_manifest();
}

void RunFiles::record(const std::string& rel, const char* kind, const SavedModel& model, int64_t step) {
  const std::string path = dir_ + "/" + rel;
  nlohmann::ordered_json e;
  e["kind"] = kind;
  e["step"] = step;
  e["bytes"] = int64_t(fs::file_size(path));
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", file_crc32(path));
  e["crc32"] = crc;
  e["metrics"] = metrics_json(model.metrics);
  entries_[rel] = e;
}

void RunFiles::prune_checkpoints() {
  const auto all = list_checkpoints(dir_);
  for (std::size_t i = std::size_t(keep_last_); i < all.size(); ++i) {
    remove_file(all[i].second);
    entries_.erase(str_cat("checkpoints/ckpt-", all[i].first, ".h5"));
  }
}

void RunFiles::write_manifest() {
  nlohmann::ordered_json m;
  m["format"] = "ringtrain-manifest";
  m["format_version"] = 1;
  nlohmann::ordered_json aliases = nlohmann::ordered_json::object();
  if (entries_.contains("best.h5")) aliases["best"] = "best.h5";
  if (!latest_.empty() && entries_.contains(latest_)) aliases["latest"] = latest_;
  m["aliases"] = aliases;
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const auto& [path, e] : entries_.items()) {
    nlohmann::ordered_json f;
    f["path"] = path;
    f.update(e);
    files.push_back(f);
  }
  m["files"] = files;
  write_file_atomic(dir_ + "/manifest.json", m.dump(2) + "\n");
}

void RunFiles::adopt_existing(int64_t step) {
  if (!active_) return;
  // Temporaries of writes a crash interrupted: never valid, never listed.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_ + "/checkpoints", ec))
    if (e.path().extension() == ".tmp") fs::remove(e.path(), ec);
  for (const auto& [s, path] : list_checkpoints(dir_))
    if (s > step) {
      std::error_code ec;
      fs::rename(path, path + ".superseded", ec);
      if (ec) throw RuntimeError(str_cat(path, ": cannot move aside: ", ec.message()));
    }
  std::ifstream in(dir_ + "/manifest.json");
  if (!in) return;
  nlohmann::ordered_json m;
  try {
    in >> m;
    for (const auto& f : m.at("files")) {
      const std::string rel = f.at("path");
      if (!fs::exists(dir_ + "/" + rel)) continue;
      nlohmann::ordered_json e = f;
      e.erase("path");
      entries_[rel] = e;
    }
    if (m.at("aliases").contains("latest")) latest_ = m["aliases"]["latest"];
  } catch (const std::exception&) {
    entries_ = nlohmann::ordered_json::object();  // rebuilt as files are written
  }
  const auto ckpts = list_checkpoints(dir_);
  latest_ = ckpts.empty() ? "" : str_cat("checkpoints/ckpt-", ckpts.front().first, ".h5");
}

}  // namespace ringtrain
