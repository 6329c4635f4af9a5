// AtomicFile: write-to-temporary, fsync, rename, fsync the folder.
//
// A reader (or a crash) sees either the old file or the complete new one,
// never a half-written one. Write to tmp_path(), then commit(); if commit()
// is never reached the temporary is removed by the destructor.
#pragma once

#include <string>

namespace ringtrain {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& tmp_path() const { return tmp_; }
  void commit();  // RuntimeError naming the path on failure

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);
// Appends a line and fsyncs (metrics.jsonl).
void append_line_durable(const std::string& path, const std::string& line);

}  // namespace ringtrain
