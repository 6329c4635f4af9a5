// `ringtrain plot` the command (see plot.hpp): parses the options, builds the
// script, runs gnuplot on it and commits the PNG atomically. It never writes
// over a file it reads, nor over anything but a regular file (check_output).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ringtrain/app/command_line.hpp"
#include "ringtrain/app/plot.hpp"
#include "ringtrain/app/run_summary.hpp"
#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/util/error.hpp"

extern char** environ;

namespace ringtrain {

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

// One line: it ends up in one-line error messages too.
constexpr const char* kPlotUsage =
    "ringtrain plot RUN_DIR [RUN_DIR ...] --output FILE.png [options], or "
    "ringtrain plot --bench FILE.json [--bench FILE.json] --output FILE.png [options]";

// The gnuplot executable on PATH, "" if there is none.
std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (std::size_t from = 0; from <= dirs.size();) {
    std::size_t to = dirs.find(':', from);
    if (to == std::string::npos) to = dirs.size();
    const std::string dir = to > from ? dirs.substr(from, to - from) : ".";
    const std::string candidate = dir + "/gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    from = to + 1;
  }
  return "";
}

void parse_size(const std::string& text, PlotOptions& o) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &w, &x, &h, &extra) != 3 || (x != 'x' && x != 'X') || w < 400 || h < 300 ||
      w > 10000 || h > 10000)
    throw UsageError(
        str_cat("plot: --size: expected WIDTHxHEIGHT in pixels (400x300 to 10000x10000), got '", text, "'"));
  o.width = w, o.height = h;
}

nlohmann::ordered_json read_bench(const std::string& path) {
  require_regular_input(path, "plot: --bench");
  std::ifstream in(path);
  if (!in) throw UsageError(str_cat("plot: --bench: cannot read '", path, "'"));
  const nlohmann::ordered_json j = parse_json_shallow(in);
  if (j.is_discarded() || !j.is_object()) throw UsageError(str_cat("plot: --bench: '", path, "' is not a JSON object"));
  return j;
}

// Runs gnuplot on `script`; RuntimeError when it fails or draws nothing.
void run_gnuplot(const std::string& gnuplot, const std::string& script, const std::string& png) {
  std::string tmpl = (fs::temp_directory_path() / "ringtrain-plot-XXXXXX").string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    throw RuntimeError(str_cat("plot: cannot create a temporary file in ", fs::temp_directory_path().string()));
  const SignalCleanup on_signal(tmpl);
  const bool written = ::write(fd, script.data(), script.size()) == ssize_t(script.size());
  ::close(fd);
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_script{tmpl};
  if (!written) throw RuntimeError(str_cat("plot: cannot write ", tmpl));
  std::string a0 = gnuplot, a1 = tmpl;
  char* argv[] = {a0.data(), a1.data(), nullptr};
  pid_t pid = 0;
  int status = 0;
  std::fflush(nullptr);
  if (posix_spawn(&pid, gnuplot.c_str(), nullptr, nullptr, argv, environ) != 0 || waitpid(pid, &status, 0) != pid)
    throw RuntimeError(str_cat("plot: cannot run ", gnuplot));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw RuntimeError(
        str_cat("plot: gnuplot failed (",
                WIFEXITED(status) ? str_cat("exit ", WEXITSTATUS(status)) : str_cat("signal ", WTERMSIG(status)),
                ") drawing ", png, "; its messages are above"));
  std::error_code ec;
  if (fs::file_size(png, ec) < 8 || ec) throw RuntimeError(str_cat("plot: gnuplot wrote no picture to ", png));
}

// What a plot must never write over: the run directories' own files (the
// ones it reads, and the models, checkpoints and logs beside them). A
// picture drawn into the run directory before (curves.png) may be replaced.
std::vector<std::string> run_files(const std::vector<std::string>& dirs) {
  std::vector<std::string> files;
  for (const std::string& dir : dirs)
    for (const std::string& folder : {dir, dir + "/checkpoints"}) {
      std::error_code ec;
      for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string ext = it->path().extension().string();
        if (folder != dir || ext == ".h5" || ext == ".json" || ext == ".jsonl" || ext == ".ini")
          files.push_back(it->path().string());
      }
    }
  return files;
}

}  // namespace

int run_plot(const std::vector<std::string>& args) {
  po::options_description opts("plot options");
  opts.add_options()("output,o", po::value<std::string>(), "the PNG to write (replaced atomically)")(
      "bench", po::value<std::vector<std::string>>()->composing(),
      "plot benchmark JSON instead of runs (bench_allreduce --json, bench_train.sh --output); repeatable")(
      "size", po::value<std::string>()->default_value("1200x800"), "picture size in pixels, WIDTHxHEIGHT")(
      "monitor", po::value<std::string>(),
      "metric of the lower panel (default: the metric each run's best model was chosen by)")(
      "title", po::value<std::string>(), "title (default: generated)")(
      "script", po::value<std::string>(), "also write the gnuplot script (data inline) to this file");
  po::variables_map vm;
  if (!parse_command("plot", kPlotUsage, opts, args, std::size_t(-1), {"output"}, vm, "RUN_DIR")) return kExitSuccess;
  const std::vector<std::string> dirs = positional_words(vm);
  const bool bench = vm.count("bench") > 0;
  if (bench == !dirs.empty())
    throw UsageError(str_cat("plot: give either run directories or --bench files", bench ? ", not both" : "",
                             " (usage: ", kPlotUsage, ")"));
  PlotOptions o;
  parse_size(vm["size"].as<std::string>(), o);
  if (vm.count("monitor")) o.monitor = vm["monitor"].as<std::string>();
  if (vm.count("title")) o.title = vm["title"].as<std::string>();
  const std::string output = vm["output"].as<std::string>();
  if (output.find_first_of("\n\r") != std::string::npos)
    throw UsageError("plot: --output: a file name with a line break cannot be handed to gnuplot");
  const std::vector<std::string> files =
      bench ? vm["bench"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const std::vector<std::string> inputs = bench ? files : run_files(dirs);
  check_output(output, inputs, "plot: --output");
  if (vm.count("script")) {
    const std::string script = vm["script"].as<std::string>();
    if (same_file_or_path(script, output)) throw UsageError("plot: --script and --output name the same file");
    check_output(script, inputs, "plot: --script");
  }
  remove_temporaries_on_signals();  // an interrupted plot leaves no OUTPUT.tmp

  std::vector<nlohmann::ordered_json> docs;
  std::vector<RunSummary> runs;
  if (bench) {
    if (vm.count("monitor")) throw UsageError("plot: --monitor applies to run directories, not to --bench");
    for (const std::string& f : files) docs.push_back(read_bench(f));
  } else {
    for (const std::string& d : dirs) runs.push_back(load_run(d));
  }
  const auto script_for = [&](const std::string& png_path) {
    o.output = png_path;
    return bench ? bench_plot_script(docs, files, o) : training_plot_script(runs, o);
  };
  AtomicFile png(output);
  const std::string script = script_for(png.tmp_path());
  if (vm.count("script")) write_file_atomic(vm["script"].as<std::string>(), script_for(output));
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty()) throw UsageError("plot: gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)");
  run_gnuplot(gnuplot, script, png.tmp_path());
  png.commit();
  std::printf("wrote %s\n", output.c_str());
  return kExitSuccess;
}

}  // namespace ringtrain
