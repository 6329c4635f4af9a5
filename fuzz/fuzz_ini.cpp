// libFuzzer target: the INI and command-line parsing of `ringtrain train`
// (app/options.hpp).
//
// Each input is parsed twice:
//   1. the whole input as an INI file: parse_train_args({"--config", FILE});
//   2. the first line as command-line words (split at spaces; a word that does
//      not start with '-' gets "--" put before it, so "optim.lr=0.2" becomes
//      "--optim.lr=0.2") and the rest of the input as the INI file.
// ringtrain::Error is the expected outcome of bad input; anything else (another
// exception, a crash, a sanitizer report, a hang) is a finding. A config that
// parses must also survive its own round trip: the effective INI it reports
// (written to the run directory as config.ini) parses back to itself.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ringtrain/app/options.hpp"
#include "ringtrain/util/error.hpp"
#include "scratch_dir.hpp"

using namespace ringtrain;

namespace {

const std::string& scratch_dir() { return fuzz::scratch_dir("ini"); }

void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), f) != text.size()) std::abort();
  if (std::fclose(f) != 0) std::abort();
}

void parse(const std::vector<std::string>& args) {
  ParsedTrainArgs parsed;
  try {
    parsed = parse_train_args(args);
  } catch (const Error&) {  // UsageError: the expected refusal
    return;
  }
  if (parsed.help) {
    if (parsed.help_text.empty()) std::abort();
    return;
  }
  // The effective configuration is complete and reads back to itself.
  const std::string eff = scratch_dir() + "/effective.ini";
  write_file(eff, parsed.config.effective_ini);
  ParsedTrainArgs again;
  try {
    again = parse_train_args({"--config", eff});
  } catch (const Error& e) {
    std::fprintf(stderr, "effective INI does not parse back: %s\n--- effective INI ---\n%s\n", e.what(),
                 parsed.config.effective_ini.c_str());
    std::abort();
  }
  if (again.config.effective_ini != parsed.config.effective_ini) {
    std::fprintf(stderr, "effective INI changes on the round trip\n--- first ---\n%s\n--- second ---\n%s\n",
                 parsed.config.effective_ini.c_str(), again.config.effective_ini.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size > 16384) return -1;  // options files are small; keep the inputs so
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string ini = scratch_dir() + "/in.ini";

  // 1. The whole input as the INI file.
  write_file(ini, text);
  parse({"--config", ini});

  // 2. First line: command-line words; the rest: the INI file.
  const auto nl = text.find('\n');
  if (nl == std::string::npos) return 0;
  std::vector<std::string> args;
  std::string word;
  for (std::size_t i = 0; i <= nl; ++i) {
    if (i == nl || text[i] == ' ') {
      if (!word.empty()) args.push_back(word[0] == '-' ? word : "--" + word);
      word.clear();
    } else {
      word += text[i];
    }
  }
  write_file(ini, text.substr(nl + 1));
  args.push_back("--config");
  args.push_back(ini);
  parse(args);
  return 0;
}
