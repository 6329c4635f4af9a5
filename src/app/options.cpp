// Option table and parsing for `ringtrain train` (see options.hpp).
#include "ringtrain/app/options.hpp"

#include <boost/program_options.hpp>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "ringtrain/app/config_file.hpp"
#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace po = boost::program_options;

namespace {


struct OptionDef {
  const char* key;
  const char* default_value;
  const char* help;
};

// The one list of training options; the README's options table documents them.
const OptionDef kOptions[] = {
    {"task", "classification", "classification | regression"},
    {"resume", "none", "none | auto (newest valid checkpoint of run.dir; start fresh if there is none) | "
                       "PATH of a checkpoint file"},
    {"run.dir", "runs/default", "run directory (created if missing)"},
    {"run.progress", "auto", "live progress bar: auto (when stdout is a terminal and no MPI launcher is "
                             "in between: mpirun hands ranks a pseudo-terminal even when its own output is a "
                             "file) | true | false"},
    {"run.trace", "0", "write trace.json (Chrome trace: chrome://tracing, ui.perfetto.dev) of every rank's "
                       "phases during the first N steps (0: off)"},
    {"run.profile", "false", "split the all-reduce's time into waiting for the slowest rank and communication "
                             "(a barrier before the all-reduce; without comm.overlap) in the step-time breakdown"},
    {"data.train", "", "training data: HDF5 file, or IDX images file with its labels file beside it"},
    {"data.val", "", "validation data file (same formats); empty: hold out data.val_fraction"},
    {"data.test", "", "test data file, evaluated once after training"},
    {"data.val_fraction", "0.1", "share of the training rows held out for validation when data.val "
                                 "is empty (seeded); 0: no validation"},
    {"data.max_rows", "0", "use only the first N rows of each data file (0: all); for quick runs"},
    {"data.x_name", "X", "HDF5 dataset of the features, float [N, D]"},
    {"data.y_name", "y", "HDF5 dataset of the labels int [N] or targets float [N, K]"},
    {"model.hidden", "256,128", "hidden layer sizes, comma-separated (empty: linear model)"},
    {"model.activation", "relu", "relu | tanh"},
    {"model.dropout", "0", "dropout probability of hidden layers, in [0, 1)"},
    {"optim.name", "sgd", "sgd | adamw"},
    {"optim.lr", "0.1", "base learning rate at the reference batch optim.ref_batch"},
    {"optim.ref_batch", "256", "reference batch: lr = optim.lr * global_batch / ref_batch"},
    {"optim.momentum", "0.9", "SGD momentum"},
    {"optim.nesterov", "false", "SGD Nesterov momentum"},
    {"optim.weight_decay", "0", "SGD: L2 added to the gradient; AdamW: decoupled decay"},
    {"optim.beta1", "0.9", "AdamW beta1"},
    {"optim.beta2", "0.999", "AdamW beta2"},
    {"optim.eps", "1e-8", "AdamW epsilon"},
    {"optim.warmup_steps", "0", "linear warm-up from optim.lr to the scaled lr, in steps"},
    {"optim.warmup_epochs", "0", "the same warm-up in epochs (give one of the two)"},
    {"optim.decay", "none", "none | step | cosine, after the warm-up"},
    {"optim.decay_every_epochs", "30", "step decay: multiply by optim.decay_gamma this often"},
    {"optim.decay_gamma", "0.1", "step decay factor"},
    {"optim.min_lr_factor", "0", "cosine decay floor as a fraction of the scaled lr"},
    {"train.batch_per_rank", "64", "batch per rank; global batch = batch_per_rank * ranks"},
    {"train.accumulate", "1", "micro-batches of batch_per_rank rows per step, gradients summed before the "
                              "all-reduce: global batch = batch_per_rank * accumulate * ranks; activations "
                              "are held for one micro-batch"},
    {"train.epochs", "10", "passes over the training data (unless train.examples is given)"},
    {"train.examples", "0", "training length in examples instead of passes: a count (600000) or passes' "
                            "worth (14.3x); independent of batch and world size (0: use train.epochs)"},
    {"train.evals", "0", "evaluation + checkpoint points spread evenly over the training length "
                         "(virtual epochs; 0: one per pass over the data)"},
    {"train.max_steps", "0", "cap on the planned steps (0: no limit); shortens the schedule too"},
    {"train.stop_after_steps", "0", "end this invocation after N steps in all, with a checkpoint, as a "
                                    "pre-emption would; the schedule still plans the whole run (0: off)"},
    {"train.requeue", "false", "after a pre-emption checkpoint inside a Slurm allocation, rank 0 asks Slurm "
                               "to requeue the job (scontrol requeue $SLURM_JOB_ID)"},
    {"train.init_from", "", "start from the weights of this model or checkpoint file (fresh optimizer)"},
    {"train.freeze", "", "layers to keep fixed, comma-separated (dense_0,dense_1)"},
    {"train.new_head", "false", "with train.init_from: a fresh output layer when the output size differs"},
    {"train.allow_reshape", "false", "resume with another world size or batch per rank (same examples seen, "
                                     "lr rescaled; not bit-exact)"},
    {"train.seed", "42", "seed of initialisation, shuffling, dropout and the validation split"},
    {"train.shuffle", "true", "reshuffle each rank's rows every epoch"},
    {"eval.every_steps", "0", "evaluate every N steps (0: at every (virtual) epoch boundary)"},
    {"eval.batch_size", "1024", "rows per forward pass during evaluation"},
    {"eval.monitor", "auto", "metric that picks the best model: val_loss, val_accuracy, val_error, val_mcc, "
                             "val_macro_f1, val_mse, val_mae, train_loss (auto: val_loss, or train_loss "
                             "without validation data)"},
    {"eval.mode", "auto", "auto (from the metric) | min | max"},
    {"eval.min_delta", "0", "smallest change that counts as a new best: absolute (0.001) or relative (0.5%)"},
    {"eval.keep_best", "1", "keep the k best models as best-step<N>.h5 besides best.h5 (1: best.h5 only)"},
    {"checkpoint.every_steps", "0", "also checkpoint every N steps (0: off)"},
    {"checkpoint.every_seconds", "0", "also checkpoint when this many seconds passed since the last (0: off)"},
    {"checkpoint.keep_last", "2", "checkpoints kept (0: write none)"},
    {"early_stop.patience", "0", "stop after this many evaluations without improvement (0: off)"},
    {"early_stop.min_delta", "0", "smallest improvement that resets the patience: absolute or relative (1%)"},
    {"early_stop.baseline", "", "stop unless the monitor beats this value within the patience (empty: none)"},
    {"early_stop.divergence", "", "stop at once when the monitor is worse than this (empty: none)"},
    {"early_stop.restore_best", "false", "end with the best weights as the final model, whatever stopped it"},
    {"comm.algorithm", "auto",
     "gradient all-reduce: auto (by size: recursive doubling for small buffers, then shm on one node, "
     "hierarchical across nodes) | ring (over messages) | shm (all ranks on one node, shared memory) | "
     "hierarchical (shared memory in each node, one ring between nodes) | mpi (MPI_Allreduce)"},
    {"comm.compression", "none",
     "gradients on the wire: none | bf16 | fp16 (16 bits per value, fp32 accumulation and weights; between "
     "nodes with auto and hierarchical, every message with ring; not with shm or mpi)"},
    {"comm.bucket_mb", "4",
     "all-reduce the gradients in buckets of at least this many MiB, cut at layer boundaries (0: one bucket)"},
    {"comm.overlap", "false",
     "all-reduce each bucket on a communication thread while backward computes the earlier layers "
     "(same result bit for bit)"},
    {"comm.shard_optimizer", "true",
     "each rank updates its shard of the parameters and the ranks exchange parameters instead of the "
     "reduced gradients (same result bit for bit; with shm and the uncompressed ring, without comm.overlap)"},
    {"comm.timeout_seconds", "300", "watchdog: a rank that waits this long in a collective without progress "
                                    "names the ranks that are missing and ends the job (0: wait forever)"},
};

using Values = std::map<std::string, std::string>;

[[noreturn]] void bad_value(const std::string& key, const std::string& v, const char* expected) {
  throw UsageError(str_cat(key, ": expected ", expected, ", got '", v, "'"));
}

int64_t to_int(const Values& vals, const std::string& key, int64_t min = INT64_MIN,
               int64_t max = INT64_MAX) {
  const std::string& v = vals.at(key);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE) bad_value(key, v, "an integer");
  if (x < min) throw UsageError(str_cat(key, ": must be >= ", min, ", got ", x));
  if (x > max) throw UsageError(str_cat(key, ": must be <= ", max, ", got ", x));
  return x;
}

constexpr int64_t kMaxInt = INT32_MAX;


double to_double(const Values& vals, const std::string& key) {
  const std::string& v = vals.at(key);
  char* end = nullptr;
  // Decimal only: strtod also takes hexadecimal ("0x10" is 16) and
  // leading spaces, which no one means in a config file.
  const bool decimal = !v.empty() && v.find_first_not_of("0123456789+-.eE") == std::string::npos;
  const double x = decimal ? std::strtod(v.c_str(), &end) : 0.0;
  if (!decimal || *end != '\0' || !std::isfinite(x)) bad_value(key, v, "a finite number");
  return x;
}

bool to_bool(const Values& vals, const std::string& key) {
  const std::string& v = vals.at(key);
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  bad_value(key, v, "true or false");
}

// auto: a live bar only on a terminal that is ours. Under mpirun/srun the
// rank's stdout may be a pseudo-terminal whatever the user's stdout is.
bool progress_wanted(const Values& vals) {
  const std::string& v = vals.at("run.progress");
  if (v != "auto") return to_bool(vals, "run.progress");
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") ||
                        std::getenv("PMI_RANK") || std::getenv("SLURM_STEP_ID");
  return !launched && ::isatty(STDOUT_FILENO);
}

std::vector<int> to_int_list(const Values& vals, const std::string& key) {
  std::vector<int> out;
  std::stringstream ss(vals.at(key));
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long x = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || x <= 0 || x > (1 << 24))
      bad_value(key, vals.at(key), "a comma-separated list of positive layer sizes");
    out.push_back(int(x));
  }
  return out;
}

std::vector<std::string> to_name_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

TrainConfig to_config(const Values& v) {
  TrainConfig c;
  c.task = parse_task(v.at("task"));
  c.run_dir = v.at("run.dir");
  if (c.run_dir.empty()) throw UsageError("run.dir: must not be empty");
  c.progress = progress_wanted(v);
  c.train_path = v.at("data.train");
  c.val_path = v.at("data.val");
  c.test_path = v.at("data.test");
  c.val_fraction = to_double(v, "data.val_fraction");
  if (c.val_fraction < 0 || c.val_fraction >= 1)
    throw UsageError(str_cat("data.val_fraction: expected a value in [0, 1), got ", c.val_fraction));
  c.max_rows = to_int(v, "data.max_rows", 0);
  c.x_name = v.at("data.x_name");
  c.y_name = v.at("data.y_name");
  c.hidden = to_int_list(v, "model.hidden");
  c.activation = parse_activation(v.at("model.activation"));
  c.dropout = float(to_double(v, "model.dropout"));
  c.optim.name = v.at("optim.name");
  c.lr = to_double(v, "optim.lr");
  c.ref_batch = to_int(v, "optim.ref_batch", 1);
  c.optim.momentum = to_double(v, "optim.momentum");
  c.optim.nesterov = to_bool(v, "optim.nesterov");
  c.optim.weight_decay = to_double(v, "optim.weight_decay");
  c.optim.beta1 = to_double(v, "optim.beta1");
  c.optim.beta2 = to_double(v, "optim.beta2");
  c.optim.eps = to_double(v, "optim.eps");
  if (c.optim.beta1 < 0 || c.optim.beta1 >= 1 || c.optim.beta2 < 0 || c.optim.beta2 >= 1)
    throw UsageError("optim.beta1, optim.beta2: expected values in [0, 1)");
  if (c.optim.eps <= 0) throw UsageError("optim.eps: must be positive");
  c.warmup_steps = to_int(v, "optim.warmup_steps", 0);
  c.warmup_epochs = to_double(v, "optim.warmup_epochs");
  if (c.warmup_epochs < 0 || c.warmup_epochs > 1e6)
    throw UsageError(str_cat("optim.warmup_epochs: expected a value in [0, 1e6], got ", c.warmup_epochs));
  c.decay = parse_decay(v.at("optim.decay"));
  c.decay_every_epochs = to_double(v, "optim.decay_every_epochs");
  if (c.decay_every_epochs <= 0 || c.decay_every_epochs > 1e6)
    throw UsageError(str_cat("optim.decay_every_epochs: expected a value in (0, 1e6], got ", c.decay_every_epochs));
  c.decay_gamma = to_double(v, "optim.decay_gamma");
  c.min_lr_factor = to_double(v, "optim.min_lr_factor");
  c.batch_per_rank = int(to_int(v, "train.batch_per_rank", 1, kMaxInt));
  c.accumulate = int(to_int(v, "train.accumulate", 1, kMaxInt));
  c.epochs = to_int(v, "train.epochs", 1, kMaxInt);
  c.max_steps = to_int(v, "train.max_steps", 0);
  c.seed = uint64_t(to_int(v, "train.seed", 0));
  c.shuffle = to_bool(v, "train.shuffle");
  c.eval_every_steps = to_int(v, "eval.every_steps", 0);
  c.eval_batch = int(to_int(v, "eval.batch_size", 1, kMaxInt));
  c.examples = v.at("train.examples");
  c.evals = to_int(v, "train.evals", 0);
  c.stop_after_steps = to_int(v, "train.stop_after_steps", 0);
  c.init_from = v.at("train.init_from");
  c.freeze = to_name_list(v.at("train.freeze"));
  c.new_head = to_bool(v, "train.new_head");
  c.allow_reshape = to_bool(v, "train.allow_reshape");
  c.monitor = v.at("eval.monitor");
  c.mode = v.at("eval.mode");
  if (c.mode != "auto" && c.mode != "min" && c.mode != "max") bad_value("eval.mode", c.mode, "auto, min or max");
  c.min_delta = v.at("eval.min_delta");
  c.keep_best = int(to_int(v, "eval.keep_best", 1, 1000));
  c.checkpoint_every_steps = to_int(v, "checkpoint.every_steps", 0);
  c.checkpoint_every_seconds = to_double(v, "checkpoint.every_seconds");
  if (c.checkpoint_every_seconds < 0)
    throw UsageError(str_cat("checkpoint.every_seconds: must be >= 0, got ", c.checkpoint_every_seconds));
  c.checkpoint_keep_last = int(to_int(v, "checkpoint.keep_last", 0, 1000000));
  c.patience = to_int(v, "early_stop.patience", 0);
  c.es_min_delta = v.at("early_stop.min_delta");
  c.baseline = v.at("early_stop.baseline");
  c.divergence = v.at("early_stop.divergence");
  c.restore_best = to_bool(v, "early_stop.restore_best");
  c.resume = v.at("resume");
  if (c.resume.empty()) bad_value("resume", c.resume, "none, auto or a checkpoint path");
  c.comm_algorithm = v.at("comm.algorithm");
  if (!is_algorithm(c.comm_algorithm)) bad_value("comm.algorithm", c.comm_algorithm, kAlgorithms);
  c.comm_compression = v.at("comm.compression");
  if (c.comm_compression != "none" && c.comm_compression != "bf16" && c.comm_compression != "fp16")
    bad_value("comm.compression", c.comm_compression, "none, bf16 or fp16");
  if (c.comm_compression != "none" && (c.comm_algorithm == "shm" || c.comm_algorithm == "mpi"))
    throw UsageError(str_cat("comm.compression=", c.comm_compression,
                             " needs comm.algorithm=ring, hierarchical or auto (got ", c.comm_algorithm, ")"));
  c.comm_bucket_mb = to_double(v, "comm.bucket_mb");
  if (c.comm_bucket_mb < 0 || c.comm_bucket_mb > 1e6)
    throw UsageError(str_cat("comm.bucket_mb: expected a value in [0, 1e6], got ", v.at("comm.bucket_mb")));
  c.comm_overlap = to_bool(v, "comm.overlap");
  c.comm_shard_optimizer = to_bool(v, "comm.shard_optimizer");
  c.trace_steps = to_int(v, "run.trace", 0, 1000000);
  c.profile = to_bool(v, "run.profile");
  c.comm_timeout_seconds = to_double(v, "comm.timeout_seconds");
  if (c.comm_timeout_seconds != 0 && (c.comm_timeout_seconds < 1 || c.comm_timeout_seconds > 1e7))
    throw UsageError(str_cat("comm.timeout_seconds: expected 0 (off) or a value in [1, 1e7], got ",
                             v.at("comm.timeout_seconds")));
  c.requeue = to_bool(v, "train.requeue");
  if (c.requeue && c.checkpoint_keep_last == 0)
    throw UsageError("train.requeue=true needs checkpoints (checkpoint.keep_last=0): a requeued job would "
                     "start over, again and again");
  return c;
}

// The message of a Boost.Program_options error. Its what() replaces each
// %placeholder% until none is left, so a key, word or line that holds one
// ("--%canonical_option%") would make it loop forever: this fills the
// template's placeholders in one pass and never rescans the text it inserts.
struct PoMessage : po::error_with_option_name {
  static std::string of(const po::error& err) {
    const auto* e = dynamic_cast<const po::error_with_option_name*>(&err);
    if (!e) return err.what();
    std::map<std::string, std::string> subs = e->*&PoMessage::m_substitutions;
    subs["canonical_option"] = (e->*&PoMessage::get_canonical_option_name)();
    subs["prefix"] = (e->*&PoMessage::get_canonical_option_prefix)();
    std::string tmpl = e->m_error_template;
    for (const auto& [name, from_to] : e->*&PoMessage::m_substitution_defaults) {
      if (!subs[name].empty()) continue;
      for (auto pos = tmpl.find(from_to.first); pos != std::string::npos; pos = tmpl.find(from_to.first, pos))
        tmpl.replace(pos, from_to.first.size(), from_to.second);
    }
    std::string msg;
    for (std::size_t i = 0; i < tmpl.size();) {
      const auto end = tmpl[i] == '%' ? tmpl.find('%', i + 1) : std::string::npos;
      const auto it = end == std::string::npos ? subs.end() : subs.find(tmpl.substr(i + 1, end - i - 1));
      if (it == subs.end()) {
        msg += tmpl[i++];
      } else {
        msg += it->second;
        i = end + 1;
      }
    }
    return msg;
  }
};

// Effective INI: top-level keys first, then one [section] per prefix, in
// table order.
std::string effective_ini(const Values& v) {
  std::ostringstream os;
  os << kRunConfigMarker << ": every key, as used\n";
  std::string section;
  for (const auto& def : kOptions) {
    const std::string key = def.key;
    const auto dot = key.find('.');
    const std::string sec = dot == std::string::npos ? "" : key.substr(0, dot);
    if (sec != section) os << "\n[" << sec << "]\n";
    section = sec;
    os << key.substr(dot == std::string::npos ? 0 : dot + 1) << " = " << v.at(key) << "\n";
  }
  return os.str();
}

}  // namespace

ParsedTrainArgs parse_train_args(const std::vector<std::string>& args) {
  po::options_description general("General");
  general.add_options()("help,h", "show this help")(
      "config", po::value<std::string>(), "INI file with any of the options below");
  po::options_description train("Training options (INI: [section] key = value; command line: "
                                "--section.key=value)");
  for (const auto& def : kOptions)
    train.add_options()(def.key, po::value<std::string>()->default_value(def.default_value), def.help);
  po::options_description all;
  all.add(general).add(train);

  ParsedTrainArgs out;
  po::variables_map vm;
  try {
    // No abbreviations (--optim.l is not --optim.lr) and no bare words (a
    // config file named without --config must not be silently ignored).
    namespace style = po::command_line_style;
    po::store(po::command_line_parser(args)
                  .options(all)
                  .style(style::default_style & ~style::allow_guessing)
                  .positional(po::positional_options_description())
                  .run(),
              vm);
    if (vm.count("help")) {
      std::ostringstream os;
      os << "usage: ringtrain train [--config FILE] [--section.key=value ...]\n\n" << all;
      out.help = true;
      out.help_text = os.str();
      return out;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      // Without the UTF-8 byte-order mark that some editors put first: it
      // is not part of the first line.
      std::string text = read_config_text(path);
      if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
      std::istringstream body(text);
      po::store(po::parse_config_file(body, train, /*allow_unregistered=*/false), vm);
    }
    po::notify(vm);
  } catch (const po::too_many_positional_options_error&) {
    std::string word;
    for (std::size_t i = 0; i < args.size() && word.empty(); ++i)
      if (!args[i].empty() && args[i][0] != '-' && (i == 0 || args[i - 1].rfind("--", 0) != 0 ||
                                                    args[i - 1].find('=') != std::string::npos))
        word = args[i];
    throw UsageError(str_cat("options: unexpected argument '", word,
                             "' (options are --section.key=value; a config file is --config FILE)"));
  } catch (const po::error& e) {
    throw UsageError(str_cat(vm.count("config") ? "options/config: " : "options: ", PoMessage::of(e)));
  }
  Values vals;
  for (const auto& def : kOptions) {
    const std::string& v = vals[def.key] = vm[def.key].as<std::string>();
    // config.ini must give back exactly this run: an INI value cannot hold
    // '#' (a comment), a line break, a NUL or blanks at either end.
    const bool blank_end = !v.empty() && (std::isspace((unsigned char)v.front()) || std::isspace((unsigned char)v.back()));
    static const std::string kUnrecordable("#\r\n\0", 4);
    if (v.find_first_of(kUnrecordable) != std::string::npos || blank_end)
      throw UsageError(str_cat(def.key, ": a value with '#', a line break, a NUL or blanks at either end cannot "
                               "be recorded in config.ini, got '", v, "'"));
  }
  out.config = to_config(vals);
  out.config.effective_ini = effective_ini(vals);
  if (vm.count("config")) out.config.config_path = vm["config"].as<std::string>();
  return out;
}

}  // namespace ringtrain
