// The gnuplot scripts of `ringtrain plot`: the data they carry (evaluations,
// the best model's step and value, checkpoints, stops), their layout choices,
// and the usage errors. Drawing the PNG itself is tested end to end
// (tests/e2e/test_plot_report.sh), where gnuplot is installed.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "ringtrain/app/plot.hpp"
#include "ringtrain/util/error.hpp"
#include "run_dir_fixture.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
using Json = nlohmann::ordered_json;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The lines of an inline data block ($name << EOD ... EOD), comments dropped.
std::vector<std::string> block(const std::string& script, const std::string& name) {
  std::vector<std::string> rows;
  const std::size_t from = script.find(name + " << EOD\n");
  REQUIRE(from != std::string::npos);
  std::istringstream in(script.substr(from));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line) && line != "EOD")
    if (!line.empty() && line[0] != '#') rows.push_back(line);
  return rows;
}

}  // namespace

TEST_CASE("training plot: every evaluation, the best step and value, checkpoints as ticks") {
  TempDir tmp;
  FakeRun{}.write(tmp.file("a"));
  PlotOptions o;
  o.output = "out.png";
  o.width = 800, o.height = 600;
  const std::string s = training_plot_script({load_run(tmp.file("a"))}, o);
  CHECK(s.find("set terminal pngcairo size 800,600") != std::string::npos);
  CHECK(s.find("set output 'out.png'") != std::string::npos);
  CHECK(block(s, "$run0").size() == 4);
  // The best evaluation (index 1: 2000 examples, step 15 with a global batch of 128).
  const std::vector<std::string> best = block(s, "$best0");
  REQUIRE(best.size() == 1);
  CHECK(best[0] == "2000 0.5 15");
  CHECK(s.find("'best, step 15'") != std::string::npos);
  CHECK(s.find("best: step 15, val_loss 0.5") != std::string::npos);
  CHECK(count(s, "nohead lw 2 lc rgb") == 4);  // a tick per checkpoint
  CHECK(s.find("set multiplot") != std::string::npos);
  CHECK(count(s, "plot ") == 1);  // val_loss is a loss: one panel
  CHECK(s.find("set link x2 via x/2000.0") != std::string::npos);
}

TEST_CASE("training plot: a second panel for a monitor that is not a loss; stops annotated") {
  TempDir tmp;
  PlotOptions o;
  o.output = "x.png";
  o.monitor = "val_accuracy";
  const std::string s = training_plot_script(batch_pair(tmp.path()), o);
  CHECK(count(s, "\nplot ") == 2);
  CHECK(block(s, "$run1").size() == 4);
  CHECK(s.find("'early stop'") != std::string::npos);
  CHECK(s.find("b: early stop at step 15") != std::string::npos);
  // best.h5 was chosen by val_loss: its val_accuracy is marked, and the legend says so.
  CHECK(s.find("a best: step 15, val_accuracy 0.6 (chosen by val_loss)") != std::string::npos);
  CHECK(s.find("b best: step 7, val_accuracy 0.6 (chosen by val_loss)") != std::string::npos);
}

TEST_CASE("training plot: runs without evaluations, unknown or differing monitors are usage errors") {
  TempDir tmp;
  FakeRun{}.write(tmp.file("a"));
  FakeRun empty;
  empty.evals = 0;
  empty.write(tmp.file("empty"));
  PlotOptions o;
  o.output = "x.png";
  CHECK_THROWS_WITH_AS(training_plot_script({load_run(tmp.file("empty"))}, o),
                       doctest::Contains("empty/metrics.jsonl holds no evaluation yet"), UsageError);
  o.monitor = "val_f2";
  CHECK_THROWS_WITH_AS(training_plot_script({load_run(tmp.file("a"))}, o),
                       doctest::Contains("--monitor 'val_f2' is not in"), UsageError);
  CHECK_THROWS_WITH_AS(training_plot_script({load_run(tmp.file("a"))}, o),
                       doctest::Contains("(it has: train_loss, val_loss, val_accuracy)"), UsageError);
  o.monitor.clear();
  std::ofstream(tmp.file("a/events.jsonl"))
      << R"({"event":"start","step":0,"examples_seen":0,"monitor":"val_accuracy","mode":"max"})"
      << "\n";
  FakeRun{}.write(tmp.file("b"));
  CHECK_THROWS_WITH_AS(training_plot_script({load_run(tmp.file("a")), load_run(tmp.file("b"))}, o),
                       doctest::Contains("the runs monitor different metrics"), UsageError);
}

TEST_CASE("gnuplot_quote: single quotes doubled, line breaks removed") {
  CHECK(gnuplot_quote("it's") == "'it''s'");
  CHECK(gnuplot_quote("a\nb") == "'a b'");
}

TEST_CASE("bench plot: bus bandwidth per algorithm and weak-scaling efficiency") {
  const Json ar = Json::parse(R"({"benchmark": "allreduce", "ranks": 2, "results": [
      {"bytes": 4, "ring_busbw_gbs": 0.01, "mpi_busbw_gbs": 0.02},
      {"bytes": 4096, "ring_busbw_gbs": 1.5, "mpi_busbw_gbs": 1.25},
      {"bytes": 1048576, "ring_busbw_gbs": 7.5, "mpi_busbw_gbs": 6.0}]})");
  const Json tr = Json::parse(R"J({"benchmark": "train", "configs": {
      "rt1": {"ranks": 1, "system": "ringtrain (ring)", "scaling_baseline": "rt1", "samples_per_s": 60000},
      "rt2_ring": {"ranks": 2, "system": "ringtrain (ring)", "scaling_baseline": "rt1", "samples_per_s": 108000},
      "pt1": {"ranks": 1, "system": "PyTorch DDP (gloo)", "scaling_baseline": "pt1", "samples_per_s": 50000},
      "pt2": {"ranks": 2, "system": "PyTorch DDP (gloo)", "scaling_baseline": "pt1", "samples_per_s": null}}})J");
  PlotOptions o;
  o.output = "b.png";
  const std::string s = bench_plot_script({ar, tr}, {"ar.json", "tr.json"}, o);
  CHECK(block(s, "$ar0_0") == std::vector<std::string>{"4096 1.5", "1048576 7.5"});  // 4 B: latency, left out
  CHECK(block(s, "$ar0_1") == std::vector<std::string>{"4096 1.25", "1048576 6"});
  CHECK(s.find("'MPI_Allreduce (Open MPI)'") != std::string::npos);
  CHECK(block(s, "$sc1_0") == std::vector<std::string>{"1 100", "2 90"});
  CHECK(block(s, "$sc1_1") == std::vector<std::string>{"1 100"});  // the failed DDP row is left out
  CHECK(s.find("set multiplot layout 1,2") != std::string::npos);
}

TEST_CASE("bench plot: files that are not ringtrain benchmarks are usage errors") {
  PlotOptions o;
  const auto fails = [&](const std::string& doc, const std::string& message) {
    INFO(doc);
    CHECK_THROWS_WITH_AS(bench_plot_script({Json::parse(doc)}, {"f.json"}, o), doctest::Contains(message.c_str()),
                         UsageError);
  };
  fails(R"({"benchmark": 1})", "f.json: not a ringtrain benchmark file");
  const std::string cfg = R"("rt1": {"ranks": 1, "system": "s", "scaling_baseline": "rt1", "samples_per_s": 5})";
  fails(R"({"benchmark": "train", "configs": {"rt2": {"ranks": "2", "scaling_baseline": "rt1"}, )" + cfg + "}}",
        "\"ranks\" is not a whole number >= 1");
  fails(R"({"benchmark": "train", "configs": {"rt2": {"ranks": 0, "scaling_baseline": "rt1"}, )" + cfg + "}}",
        "\"ranks\" is not a whole number >= 1");
  fails(R"({"benchmark": "train", "configs": {"rt2": {"ranks": 2, "scaling_baseline": 5}, )" + cfg + "}}",
        "\"scaling_baseline\" is not a string");
  fails(R"({"benchmark": "train", "configs": {"rt1": {"ranks": 1, "system": 3, "scaling_baseline": "rt1",
        "samples_per_s": 5}}})",
        "\"system\" is not a string");
  fails(R"({"benchmark": "allreduce", "ranks": "2", "results": [{"bytes": 4096, "ring_busbw_gbs": 1}]})",
        "\"ranks\" is not a whole number");
  fails(R"({"benchmark": "allreduce", "results": [{"bytes": 4096}]})", "no \"<algorithm>_busbw_gbs\" columns");
  fails(R"({"benchmark": "allreduce", "results": [{"bytes": 4, "ring_busbw_gbs": 1}]})",
        "no message size of 1 KiB or more");
  fails(R"({"benchmark": "allreduce", "results": [{"bytes": 4096, "ring_busbw_gbs": 1}, {"ring_busbw_gbs": 2}]})",
        "a record without a number \"bytes\"");
  // An algorithm name that would break out of the script is not taken as one.
  fails(R"({"benchmark": "allreduce", "results": [{"bytes": 4096, "x\nEOD\nsystem 'id'\n_busbw_gbs": 1}]})",
        "no \"<algorithm>_busbw_gbs\" columns");
  CHECK_THROWS_WITH_AS(bench_plot_script({Json::parse(R"({"a": 1})")}, {"x.json"}, o),
                       doctest::Contains("x.json: not a ringtrain benchmark file"), UsageError);
  CHECK_THROWS_WITH_AS(
      bench_plot_script({Json::parse(R"({"benchmark": "train", "configs": {"rt1": {"samples_per_s": 1}}})")},
                        {"old.json"}, o),
      doctest::Contains("has no \"ranks\""), UsageError);
  CHECK_THROWS_WITH_AS(bench_plot_script({Json::parse(R"({"benchmark": "allreduce", "results": []})")}, {"e.json"}, o),
                       doctest::Contains("e.json: no \"results\" rows"), UsageError);
}

TEST_CASE("plot never writes over a file of the runs it plots, nor over a special file") {
  TempDir tmp;
  const std::string run = tmp.file("a");
  FakeRun{}.write(run);
  std::filesystem::create_directories(run + "/checkpoints");
  std::ofstream(run + "/checkpoints/ckpt-1000.h5") << "a checkpoint";
  std::filesystem::create_symlink("/dev/null", tmp.file("null"));
  const auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::map<std::string, std::string> before;
  for (const auto& e : std::filesystem::recursive_directory_iterator(run))
    if (e.is_regular_file()) before[e.path().string()] = bytes(e.path().string());
  const auto refused = [&](const std::vector<std::string>& args, const std::string& needle) {
    CAPTURE(needle);
    CHECK_THROWS_WITH_AS(run_plot(args), doctest::Contains(needle.c_str()), UsageError);
  };
  refused({run, "--output", run + "/best.h5"}, "is an input");
  refused({run, "--output", run + "/metrics.jsonl"}, "is an input");
  refused({run, "--output", run + "/checkpoints/ckpt-1000.h5"}, "is an input");
  refused({run, "--output", run + "/checkpoints/../config.ini"}, "is the input");
  refused({run, "--output", tmp.file("x.png"), "--script", run + "/events.jsonl"}, "plot: --script");
  refused({run, "--output", tmp.file("x.png"), "--script", tmp.file("x.png")}, "same file");
  refused({run, "--output", tmp.file("null")}, "is a symbolic link");
  refused({run, "--output", run}, "is a directory");
  for (const auto& [path, content] : before) CHECK_MESSAGE(bytes(path) == content, path);
  CHECK(std::filesystem::is_symlink(tmp.file("null")));
  CHECK_FALSE(std::filesystem::exists(tmp.file("x.png")));
}
