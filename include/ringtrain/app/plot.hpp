// `ringtrain plot`: pictures of runs and benchmarks, drawn by gnuplot.
//
//   ringtrain plot RUN_DIR [RUN_DIR ...] --output curves.png
//     training and validation loss and the monitored metric against examples
//     seen (epochs on the top axis); the best model as a point and a vertical
//     line labelled with its step and value; checkpoints as ticks; early
//     stops, pre-emptions and divergence annotated. Several runs overlay in
//     distinct colours.
//   ringtrain plot --bench allreduce.json [--bench train.json] --output bench.png
//     all-reduce bus bandwidth against message size for every algorithm
//     (bench_allreduce --json), weak-scaling efficiency against world size
//     (bench/bench_train.sh --output).
//
// The script generators are pure (tests read their output); run_plot writes
// the script to a temporary file, runs gnuplot on it and commits the PNG
// atomically, so a failed plot never leaves a half-written picture.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/app/run_summary.hpp"

namespace ringtrain {

struct PlotOptions {
  std::string output;              // the PNG gnuplot writes (run_plot: a temporary beside the target)
  int width = 1200, height = 800;  // pixels
  std::string monitor;             // metric of the lower panel; "" for each run's own monitor
  std::string title;               // "" for a generated one
};

// The gnuplot script, data inline. UsageError for runs without evaluations,
// an unknown --monitor, or runs that monitor different metrics (without
// --monitor).
std::string training_plot_script(const std::vector<RunSummary>& runs, const PlotOptions& o);
// `benches`: parsed benchmark JSON documents; `names` their file names.
// UsageError for a document that is neither benchmark kind.
std::string bench_plot_script(const std::vector<nlohmann::ordered_json>& benches, const std::vector<std::string>& names,
                              const PlotOptions& o);

// A number for gnuplot data and commands, exact enough to round-trip.
std::string gnuplot_number(double v);
// Text for a "# ..." comment line of a script: line breaks become blanks (a
// line break would end the comment and start a command).
std::string gnuplot_comment(std::string text);
// A gnuplot string literal: single-quoted, '' for a quote.
std::string gnuplot_quote(const std::string& s);
// Line colour of the i-th series (cycles through 8).
const char* plot_colour(std::size_t i);
// "set terminal pngcairo ..." and "set output ..." lines.
std::string gnuplot_header(const PlotOptions& o);

int run_plot(const std::vector<std::string>& args);

}  // namespace ringtrain
