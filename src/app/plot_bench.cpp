// `ringtrain plot --bench` (see plot.hpp): pictures of the benchmark JSON.
//   "benchmark": "allreduce" (bench/bench_allreduce --json): bus bandwidth
//     against message size, one line per algorithm (every "<name>_busbw_gbs"
//     column: ringtrain's ring, MPI_Allreduce, ...), one set per file.
//   "benchmark": "train" (bench/bench_train.sh --output): weak-scaling
//     efficiency against world size per system, samples/s at p ranks over p
//     times its 1-rank baseline ("ranks" and "scaling_baseline" per config).
// With both kinds the picture has two panels side by side.
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <string>

#include "ringtrain/app/plot.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

using Json = nlohmann::ordered_json;

namespace {

std::string algorithm_title(const std::string& algo) {
  if (algo == "mpi") return "MPI_Allreduce (Open MPI)";
  return "ringtrain " + algo;
}

// Checked reads of a benchmark document: a missing field or one of another
// type is a usage error naming the file and the field.
double number(const Json& j, const std::string& key, const std::string& file) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number())
    throw UsageError(str_cat("plot: ", file, ": a record without a number \"", key, "\": ", j.dump()));
  return j[key].get<double>();
}

int positive_int(const Json& j, const std::string& key, const std::string& file) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 1 ||
      j[key].get<int64_t>() > 1000000)
    throw UsageError(str_cat("plot: ", file, ": \"", key, "\" is not a whole number >= 1 in ", j.dump()));
  return j[key].get<int>();
}

std::string text(const Json& j, const std::string& key, const std::string& file) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string())
    throw UsageError(str_cat("plot: ", file, ": \"", key, "\" is not a string in ", j.dump()));
  return j[key].get<std::string>();
}

// Data blocks and plot clauses of one all-reduce document.
void allreduce_series(const Json& doc, const std::string& file, std::size_t index, bool several,
                      std::ostringstream& data, std::vector<std::string>& clauses) {
  if (!doc.contains("results") || !doc["results"].is_array() || doc["results"].empty())
    throw UsageError(str_cat("plot: ", file, ": no \"results\" rows"));
  const int ranks = doc.contains("ranks") ? positive_int(doc, "ranks", file) : 0;
  std::vector<std::string> algos;
  for (const auto& [k, v] : doc["results"][0].items()) {
    const std::string suffix = "_busbw_gbs";
    if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        is_plain_name(k))  // the name goes into the script
      algos.push_back(k.substr(0, k.size() - suffix.size()));
  }
  if (algos.empty()) throw UsageError(str_cat("plot: ", file, ": no \"<algorithm>_busbw_gbs\" columns"));
  // Ours first, the reference (MPI_Allreduce) last, whatever the key order.
  std::stable_partition(algos.begin(), algos.end(), [](const std::string& a) { return a != "mpi"; });
  for (std::size_t a = 0; a < algos.size(); ++a) {
    const std::string block = str_cat("$ar", index, "_", a);
    data << block << " << EOD\n# bytes " << algos[a] << "_busbw_gbs (" << gnuplot_comment(file) << ")\n";
    int points = 0;
    for (const Json& row : doc["results"]) {
      const double bytes = number(row, "bytes", file);
      const double bw = number(row, algos[a] + "_busbw_gbs", file);
      if (bytes >= 1024 && std::isfinite(bw)) {  // below 1 KiB it is latency, not bandwidth
        data << gnuplot_number(bytes) << ' ' << gnuplot_number(bw) << '\n';
        ++points;
      }
    }
    data << "EOD\n";
    if (points == 0)
      throw UsageError(str_cat("plot: ", file, ": no message size of 1 KiB or more to draw for '", algos[a], "'"));
    const std::string title = algorithm_title(algos[a]) + (several && ranks ? str_cat(", ", ranks, " ranks") : "");
    clauses.push_back(str_cat(block, " using 1:2 with linespoints lw 2 pt ", 5 + 2 * int(a), " ps 0.8 lc rgb '",
                              plot_colour(clauses.size()), "'", algos[a] == "mpi" ? " dt 2" : "", " title ",
                              gnuplot_quote(title)));
  }
}

// Efficiency rows (ranks, percent) per system of one training document.
void scaling_series(const Json& doc, const std::string& file, std::size_t index, std::ostringstream& data,
                    std::vector<std::string>& clauses, int& max_ranks) {
  if (!doc.contains("configs") || !doc["configs"].is_object())
    throw UsageError(str_cat("plot: ", file, ": no \"configs\" object"));
  const Json& configs = doc["configs"];
  std::map<std::string, std::vector<std::pair<int, double>>> systems;
  std::vector<std::string> order;
  for (const auto& [id, c] : configs.items()) {
    if (!c.is_object() || !c.contains("ranks") || !c.contains("scaling_baseline"))
      throw UsageError(
          str_cat("plot: ", file, ": config '", id,
                  "' has no \"ranks\"/\"scaling_baseline\" (written by an older bench_train.sh? run it again)"));
    const std::string base = text(c, "scaling_baseline", file);
    if (!configs.contains(base))
      throw UsageError(str_cat("plot: ", file, ": baseline '", base, "' of '", id, "' missing"));
    const Json& b = configs[base];
    const int p = positive_int(c, "ranks", file), bp = positive_int(b, "ranks", file);
    // A failed configuration has null samples/s: left out.
    const auto rate = [&](const Json& j) {
      return j.contains("samples_per_s") && j["samples_per_s"].is_number() && j["samples_per_s"].get<double>() > 0;
    };
    if (!rate(c) || !rate(b)) continue;
    const double eff = 100.0 * c["samples_per_s"].get<double>() / (p * b["samples_per_s"].get<double>());
    const std::string system = c.contains("system") ? text(c, "system", file) : id;
    if (!systems.count(system)) order.push_back(system);
    auto& rows = systems[system];
    rows.emplace_back(p, eff);
    // A system measured against another's 1-rank run starts from that point.
    if (std::none_of(rows.begin(), rows.end(), [&](const auto& r) { return r.first == bp; }))
      rows.emplace_back(bp, 100.0);
    max_ranks = std::max(max_ranks, p);
  }
  if (order.empty()) throw UsageError(str_cat("plot: ", file, ": no configuration with a samples/s figure"));
  for (std::size_t s = 0; s < order.size(); ++s) {
    auto& rows = systems[order[s]];
    std::sort(rows.begin(), rows.end());
    const std::string block = str_cat("$sc", index, "_", s);
    data << block << " << EOD\n# ranks efficiency_percent (" << gnuplot_comment(file) << ")\n";
    for (const auto& [p, e] : rows) data << p << ' ' << gnuplot_number(e) << '\n';
    data << "EOD\n";
    clauses.push_back(str_cat(block, " using 1:2 with linespoints lw 2 pt 7 ps 1.2 lc rgb '",
                              plot_colour(clauses.size()), "' title ", gnuplot_quote(order[s])));
  }
}

std::string join_plot(const std::vector<std::string>& clauses) {
  std::string s = "plot ";
  for (std::size_t i = 0; i < clauses.size(); ++i) s += (i ? ", \\\n     " : "") + clauses[i];
  return s + "\n";
}

}  // namespace

std::string bench_plot_script(const std::vector<Json>& benches, const std::vector<std::string>& names,
                              const PlotOptions& o) {
  RT_CHECK(benches.size() == names.size() && !benches.empty(), "bench_plot_script: bad arguments");
  std::ostringstream data;
  std::vector<std::string> ar, sc;
  std::vector<std::string> kinds;
  for (const Json& d : benches)
    kinds.push_back(d.is_object() && d.contains("benchmark") && d["benchmark"].is_string() ? d["benchmark"] : "");
  const auto n_ar = std::size_t(std::count(kinds.begin(), kinds.end(), "allreduce"));
  int max_ranks = 1, ranks = 0;
  for (std::size_t i = 0; i < benches.size(); ++i) {
    const std::string& kind = kinds[i];
    if (kind == "allreduce" && benches[i].contains("ranks")) ranks = positive_int(benches[i], "ranks", names[i]);
    if (kind == "allreduce")
      allreduce_series(benches[i], names[i], i, n_ar > 1, data, ar);
    else if (kind == "train")
      scaling_series(benches[i], names[i], i, data, sc, max_ranks);
    else
      throw UsageError(str_cat("plot: ", names[i], ": not a ringtrain benchmark file (\"benchmark\" is neither ",
                               "\"allreduce\" nor \"train\")"));
  }
  std::ostringstream os;
  os << "# ringtrain plot --bench: " << benches.size() << " file(s); data inline\n" << gnuplot_header(o) << data.str();
  const bool both = !ar.empty() && !sc.empty();
  if (both)
    os << "set multiplot layout 1,2 title " << gnuplot_quote(o.title.empty() ? "ringtrain benchmarks" : o.title)
       << "\n";
  if (!ar.empty()) {
    const std::string t = n_ar > 1 || ranks == 0 ? std::string("All-reduce bus bandwidth")
                                                 : str_cat("All-reduce bus bandwidth, ", ranks, " ranks");
    os << "set title " << gnuplot_quote(both || o.title.empty() ? t : o.title) << "\n"
       << "set logscale x 2\nset format x '%.0b %BB'\nset xtics 4\n"
       << "set xlabel 'message size per rank (bytes, float32 sum)'\n"
       << "set ylabel 'bus bandwidth (GB/s, nccl-tests busbw)'\nset yrange [0:*]\nset key top left Left reverse\n"
       << join_plot(ar) << "unset logscale x\nset format x '%g'\nset xtics autofreq\nset yrange [*:*]\n";
  }
  if (!sc.empty()) {
    const std::string t = "Weak scaling (fixed batch per rank)";
    os << "set title " << gnuplot_quote(both || o.title.empty() ? t : o.title) << "\n"
       << "set xlabel 'world size (ranks or processes)'\nset ylabel 'scaling efficiency (% of ideal)'\n"
       << "set xrange [0.5:" << max_ranks << ".5]\nset xtics 1\nset yrange [0:110<*]\n"
       << "set key bottom left Left reverse\n"
       << "set arrow from 0.5, 100 to " << max_ranks << ".5, 100 nohead dt 2 lc rgb '#888888'\n"
       << "set label 'ideal' at " << max_ranks << ".4, 100 right offset 0,0.7 tc rgb '#888888'\n"
       << join_plot(sc);
  }
  if (both) os << "unset multiplot\n";
  return os.str();
}

}  // namespace ringtrain
