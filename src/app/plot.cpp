// `ringtrain plot` for run directories (see plot.hpp); benchmarks are in
// plot_bench.cpp. Layout: one loss panel (train and validation loss), and a
// second panel for the monitored metric unless it is a loss already shown.
// Margins are fixed in screen coordinates so both panels share their x axis
// exactly and the legends sit in the right margin, clear of the curves.
#include "ringtrain/app/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "ringtrain/app/command_line.hpp"  // attrs_json
#include "ringtrain/util/error.hpp"

namespace ringtrain {

using Json = nlohmann::ordered_json;

namespace {

// 0.3172, 12.5, 1.2e-05: short enough for a label.
std::string short_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

bool is_loss(const std::string& metric) { return metric == "train_loss" || metric == "val_loss"; }

// Axis label with what the numbers mean.
std::string metric_axis_label(const std::string& metric, const std::string& mode) {
  std::string unit;
  for (const char* f : {"accuracy", "error", "f1", "mcc"})
    if (metric.find(f) != std::string::npos) unit = metric.find("mcc") != std::string::npos ? "-1 to 1" : "fraction";
  if (metric.find("loss") != std::string::npos) unit = "mean per example";
  return str_cat(metric, unit.empty() ? "" : " (" + unit + ")",
                 mode == "max" ? ", higher is better" : ", lower is better");
}

std::string loss_axis_label(const std::vector<RunSummary>& runs) {
  bool cls = false, reg = false;
  for (const RunSummary& r : runs) {
    const auto it = r.config.find("task");
    (it != r.config.end() && it->second == "regression" ? reg : cls) = true;
  }
  if (cls && !reg) return "loss (cross-entropy, mean per example)";
  if (reg && !cls) return "loss (mean squared error, mean per example)";
  return "loss (mean per example)";
}

double number_or_nan(const Json& j, const std::string& key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

// What ended a launch, for the picture; nullptr for a completed run.
const char* end_text(const std::string& reason) {
  if (reason == "early_stop") return "early stop";
  if (reason == "preempted") return "pre-empted";
  if (reason == "diverged") return "diverged";
  if (reason == "stopped") return "stopped";  // train.stop_after_steps
  return nullptr;
}

struct Series {
  std::string label, colour, monitor, mode;
  std::vector<std::string> cols;  // data block columns
  bool has_val_loss = false;
  std::vector<Json> ckpts, stops;
  bool has_best = false;
  double best_x = 0, best_y = 0;
  int64_t best_step = 0;
  std::string best_by;  // the run's own monitor, when the plotted one differs
};

// The plotted metric's value at best.h5, from best.h5 itself.
bool best_point(const RunSummary& r, const std::string& metric, Series& s) {
  if (!r.has_best) return false;
  const Json best = attrs_json(r.best);
  s.best_x = number_or_nan(best, "examples_seen"), s.best_y = number_or_nan(best, metric);
  const double step = number_or_nan(best, "step");
  if (!std::isfinite(s.best_x) || !std::isfinite(s.best_y) || !std::isfinite(step)) return false;
  s.best_step = int64_t(step);
  return true;
}

std::string data_blocks(const RunSummary& r, std::size_t i, Series& s) {
  std::ostringstream os;
  os << "$run" << i << " << EOD\n# " << gnuplot_comment(r.dir) << "\n#";
  for (const std::string& c : s.cols) os << ' ' << c;
  os << '\n';
  for (const Json& e : r.evals) {
    for (std::size_t c = 0; c < s.cols.size(); ++c) {
      const double v = number_or_nan(e, s.cols[c]);
      os << (c ? " " : "") << (std::isfinite(v) ? gnuplot_number(v) : "NaN");
    }
    os << '\n';
  }
  os << "EOD\n";
  if (s.has_best)
    os << "$best" << i << " << EOD\n# examples_seen " << s.monitor << " step\n"
       << gnuplot_number(s.best_x) << ' ' << gnuplot_number(s.best_y) << ' ' << s.best_step << "\nEOD\n";
  return os.str();
}

std::size_t column(const Series& s, const std::string& name) {
  return std::size_t(std::find(s.cols.begin(), s.cols.end(), name) - s.cols.begin()) + 1;
}

// Short texts beside the vertical lines; the legend holds the details.
// Rotated, boxed on white so a curve crossing them cannot hide them.
std::string line_label(const std::string& text, double x, bool right_of_line, bool at_top, const std::string& colour) {
  return str_cat("set label ", gnuplot_quote(text), " at first ", gnuplot_number(x),
                 at_top ? ", graph 0.97 right" : ", graph 0.12 left", " rotate by 90 offset ",
                 right_of_line ? "1.3" : "-1.3", ",0 front boxed tc rgb '", colour, "'\n");
}

// Vertical lines (best, stops) for every panel, their labels where asked
// (stops in the upper panel, the best in the monitor's), and the checkpoint
// ticks along the bottom of the monitor's panel, one row per run.
std::string markers(const std::vector<Series>& series, double xmax, bool best_labels, bool stop_labels, bool ticks) {
  std::ostringstream os;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const std::string lc = " lc rgb '" + s.colour + "'";
    if (s.has_best) {
      os << "set arrow from first " << gnuplot_number(s.best_x) << ", graph 0 to first " << gnuplot_number(s.best_x)
         << ", graph 1 nohead dt 3 lw 1.5" << lc << "\n";
      // Left of the line unless that runs into the y tick labels; at the end
      // of the panel away from the best value (a maximum sits high).
      if (best_labels)
        os << line_label(str_cat("best, step ", s.best_step), s.best_x, s.best_x < 0.1 * xmax, s.mode == "min",
                         s.colour);
    }
    for (const Json& e : s.stops) {
      const double x = e["examples_seen"].get<double>();
      os << "set arrow from first " << gnuplot_number(x) << ", graph 0 to first " << gnuplot_number(x)
         << ", graph 1 nohead dt 2 lw 1.5" << lc << "\n";
      if (stop_labels) os << line_label(end_text(e["reason"]), x, x < 0.9 * xmax, true, s.colour);
    }
    if (ticks)
      for (const Json& c : s.ckpts) {
        const double x = c["examples_seen"].get<double>(), y0 = 0.045 * double(i);
        os << "set arrow from first " << gnuplot_number(x) << ", graph " << gnuplot_number(y0) << " to first "
           << gnuplot_number(x) << ", graph " << gnuplot_number(y0 + 0.04) << " nohead lw 2" << lc << "\n";
      }
  }
  return os.str();
}

std::string loss_plot(const std::vector<Series>& series) {
  std::ostringstream os;
  const bool one = series.size() == 1;
  os << "plot ";
  std::string sep;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const std::string prefix = one ? "" : s.label + " ";
    os << sep << "$run" << i << " using 1:" << column(s, "train_loss") << " with lines lw 2 dt 2 lc rgb '" << s.colour
       << "' title " << gnuplot_quote(prefix + "train loss");
    sep = ", \\\n     ";
    if (s.has_val_loss)
      os << sep << "$run" << i << " using 1:" << column(s, "val_loss") << " with linespoints lw 2 pt 7 ps 0.6 lc rgb '"
         << s.colour << "' title " << gnuplot_quote(prefix + "val loss");
  }
  return os.str();
}

// The best points, the checkpoint legend entry and (when the monitor is not
// a loss) the monitor curves, appended to a plot command.
std::string best_and_ticks(const std::vector<Series>& series, bool curves) {
  std::ostringstream os;
  const bool one = series.size() == 1;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    if (curves)
      os << ", \\\n     $run" << i << " using 1:" << column(s, s.monitor)
         << " with linespoints lw 2 pt 7 ps 0.6 lc rgb '" << s.colour << "' title "
         << gnuplot_quote(one ? s.monitor : s.label + " " + s.monitor);
    if (s.has_best) {
      const std::string text =
          str_cat(one ? "" : s.label + " ", "best: step ", s.best_step, ", ", s.monitor, " ", short_num(s.best_y));
      os << ", \\\n     $best" << i << " using 1:2 with points pt 7 ps 2.2 lc rgb '" << s.colour << "' title "
         << gnuplot_quote(text + (s.best_by.empty() ? "" : " (chosen by " + s.best_by + ")"));
    }
    for (const Json& e : s.stops)
      os << ", \\\n     NaN with lines dt 2 lw 1.5 lc rgb '" << s.colour << "' title "
         << gnuplot_quote(
                str_cat(one ? "" : s.label + ": ", end_text(e["reason"]), " at step ", e["step"].get<int64_t>()));
    if (!s.ckpts.empty())
      os << ", \\\n     NaN with impulses lw 2 lc rgb '" << s.colour << "' title "
         << gnuplot_quote(one ? "checkpoint written (ticks)" : s.label + " checkpoints (ticks)");
  }
  return os.str();
}

// One run's curves and marks; UsageError for a run without evaluations or
// without the metric to plot.
Series make_series(const RunSummary& r, const std::string& label, std::size_t i, const PlotOptions& o) {
  Series s;
  if (r.evals.empty())
    throw UsageError(str_cat("plot: ", r.dir, "/metrics.jsonl holds no evaluation yet: nothing to plot"));
  s.label = label;
  s.colour = plot_colour(i);
  s.cols = {"examples_seen"};
  for (const std::string& c : r.eval_columns())
    if (c != "examples_seen") s.cols.push_back(c);
  s.monitor = o.monitor.empty() ? r.monitor() : o.monitor;
  s.mode = r.mode();
  if (std::find(s.cols.begin(), s.cols.end(), s.monitor) == s.cols.end()) {
    std::string have;
    for (const std::string& c : s.cols)
      if (c.rfind("val_", 0) == 0 || c == "train_loss") have += (have.empty() ? "" : ", ") + c;
    throw UsageError(str_cat("plot: ", o.monitor.empty() ? "monitored metric '" : "--monitor '", s.monitor,
                             "' is not in ", r.dir, "/metrics.jsonl (it has: ", have, ")"));
  }
  if (s.monitor != r.monitor()) {  // --monitor other than the one best.h5 was chosen by
    s.best_by = r.monitor();
    s.mode = metric_mode_of(s.monitor);
  }
  s.has_val_loss = std::find(s.cols.begin(), s.cols.end(), "val_loss") != s.cols.end();
  s.has_best = best_point(r, s.monitor, s);
  for (const Json& e : r.events) {
    if (e["event"] == "checkpoint" && e.contains("examples_seen")) s.ckpts.push_back(e);
    if (e["event"] == "end" && e.contains("reason") && e.contains("examples_seen") && e.contains("step") &&
        end_text(e["reason"].get<std::string>()))
      s.stops.push_back(e);
  }
  return s;
}

// The epoch axis on top, linked to examples seen, with whole-epoch tics.
std::string epoch_axis(int64_t pass, double xmax, bool several) {
  const double epochs = xmax * 1.02 / double(pass);
  double every = 1;
  for (double nice : {1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0})
    if (epochs / nice <= 12) {
      every = nice;
      break;
    }
  if (epochs < 2) every = epochs < 0.8 ? 0.1 : 0.25;
  return str_cat(
      "set link x2 via x/", pass, ".0 inverse x*", pass, ".0\nset x2tics ", gnuplot_number(every),
      " nomirror\nset x2label ",
      gnuplot_quote(str_cat("epoch (passes over ", pass, " training examples", several ? ", first run" : "", ")")),
      "\n");
}

// Where panels and legend go, in screen coordinates, from what needs room
// in pixels: tic labels and axis labels around the panels, the longest
// legend entry on the right (so no entry is cut off at any picture size).
struct Layout {
  double left, right, key, top, upper_bottom, lower_top, bottom;
};

Layout make_layout(const PlotOptions& o, std::size_t legend_chars, bool epoch_axis, bool two_panels) {
  const double w = o.width, h = o.height;
  const double legend_px = 70 + 6.5 * double(legend_chars);  // line sample, gap, text at 10 pt
  Layout l;
  l.left = 80 / w;
  l.key = std::clamp(1 - (legend_px + 10) / w, 0.45, 0.85);
  l.right = l.key - 15 / w;
  l.top = 1 - (epoch_axis ? 80 : 45) / h;
  l.bottom = 55 / h;
  const double gap = 30 / h;  // the upper panel's x tic labels
  l.lower_top = l.bottom + (l.top - l.bottom - gap) / 2;
  l.upper_bottom = two_panels ? l.lower_top + gap : l.bottom;
  return l;
}

// The longest `title '...'` of some plot commands, in characters.
std::size_t longest_title(const std::string& plots) {
  std::size_t longest = 0;
  for (std::size_t at = plots.find("title '"); at != std::string::npos; at = plots.find("title '", at + 1)) {
    const std::size_t from = at + 7, to = plots.find("'\n", from) != std::string::npos
                                              ? std::min(plots.find("',", from), plots.find("'\n", from))
                                              : plots.find("',", from);
    if (to != std::string::npos) longest = std::max(longest, to - from);
  }
  return longest;
}

}  // namespace

std::string gnuplot_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string gnuplot_comment(std::string text) {
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return text;
}

std::string gnuplot_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\n' || c == '\r') c = ' ';
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

const char* plot_colour(std::size_t i) {
  static const char* const kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                         "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
  return kColours[i % 8];
}

std::string gnuplot_header(const PlotOptions& o) {
  return str_cat("set terminal pngcairo size ", o.width, ",", o.height, " font 'DejaVu Sans,10' noenhanced\n",
                 "set output ", gnuplot_quote(o.output), "\n", "set datafile missing 'NaN'\n",
                 "set grid lc rgb '#dddddd'\n");
}

std::string training_plot_script(const std::vector<RunSummary>& runs, const PlotOptions& o) {
  RT_CHECK(!runs.empty(), "training_plot_script without runs");
  const std::vector<std::string> labels = run_labels(runs);
  std::vector<Series> series(runs.size());
  double xmax = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    series[i] = make_series(runs[i], labels[i], i, o);
    for (const Json& e : runs[i].evals) xmax = std::max(xmax, e["examples_seen"].get<double>());
    for (const Json& e : series[i].stops) xmax = std::max(xmax, e["examples_seen"].get<double>());
  }
  for (const Series& s : series)
    if (s.monitor != series[0].monitor)
      throw UsageError(str_cat("plot: the runs monitor different metrics (", series[0].label, ": ", series[0].monitor,
                               ", ", s.label, ": ", s.monitor, "); choose the one to plot with --monitor"));
  const std::string monitor = series[0].monitor;
  const bool two_panels = !is_loss(monitor);
  xmax = std::max(xmax, 1.0);

  std::ostringstream os;
  os << "# ringtrain plot: " << runs.size() << " run(s); data inline\n" << gnuplot_header(o);
  for (std::size_t i = 0; i < runs.size(); ++i) os << data_blocks(runs[i], i, series[i]);
  const std::string title =
      !o.title.empty() ? o.title
      : runs.size() == 1
          ? str_cat("ringtrain run ", labels[0], ": best model by ", monitor, " (", series[0].mode, ")")
          : str_cat("ringtrain: ", runs.size(), " runs, best models by ", monitor, " (", series[0].mode, ")");
  // The plot commands first: the legend's width decides the margins.
  const std::string tick_room =  // below the curves, one row of checkpoint ticks per run
      str_cat("set offsets 0, 0, 0, graph ", gnuplot_number(0.045 * double(series.size()) + 0.02), "\n");
  const std::string upper = loss_plot(series) + (two_panels ? "" : best_and_ticks(series, false)) + "\n";
  const std::string lower = two_panels ? "plot NaN notitle" + best_and_ticks(series, true) + "\n" : "";
  const int64_t pass = runs[0].pass_examples();
  const Layout l = make_layout(o, std::max(longest_title(upper), longest_title(lower)), pass > 0, two_panels);
  os << "set title " << gnuplot_quote(title) << " font ',13'\n"
     << "set lmargin at screen " << gnuplot_number(l.left) << "\nset rmargin at screen " << gnuplot_number(l.right)
     << "\nset key at screen " << gnuplot_number(l.key) << ", graph 1 left top Left reverse samplen 3 spacing 1.15\n"
     << "set xrange [0:" << gnuplot_number(xmax * 1.02) << "]\nset format x '%.0s%c'\nset xtics nomirror\n";
  if (pass > 0) os << epoch_axis(pass, xmax, runs.size() > 1);
  // Upper panel: losses (and the monitor when it is one of them).
  os << "set tmargin at screen " << gnuplot_number(l.top) << "\nset bmargin at screen "
     << gnuplot_number(l.upper_bottom) << "\nset ylabel " << gnuplot_quote(loss_axis_label(runs)) << "\n"
     << (two_panels ? "set xlabel ''\n" : "set xlabel 'examples seen (training examples, all ranks)'\n")
     << "set style textbox opaque noborder\nset multiplot\n"
     << (two_panels ? "" : tick_room) << markers(series, xmax, !two_panels, true, !two_panels) << upper;
  if (two_panels) {
    os << "unset arrow\nunset label\nunset title\nunset x2tics\nunset x2label\nunset link x2\n"
       << "set tmargin at screen " << gnuplot_number(l.lower_top) << "\nset bmargin at screen "
       << gnuplot_number(l.bottom) << "\n"
       << tick_room << "set xlabel 'examples seen (training examples, all ranks)'\n"
       << "set ylabel " << gnuplot_quote(metric_axis_label(monitor, series[0].mode)) << "\n"
       << markers(series, xmax, true, false, true) << lower;
  }
  os << "unset multiplot\n";
  return os.str();
}

}  // namespace ringtrain
