// `ringtrain train` options: defaults, INI + command line precedence, and
// errors that name the key.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "ringtrain/app/options.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;

TEST_CASE("defaults match the README's options table") {
  const TrainConfig c = parse_train_args({}).config;
  CHECK(c.batch_per_rank == 64);
  CHECK(c.ref_batch == 256);
  CHECK(c.hidden == std::vector<int>{256, 128});
  CHECK(c.comm_algorithm == "auto");
  CHECK(c.optim.name == "sgd");
  CHECK(c.shuffle);
  for (const char* algo : {"auto", "ring", "shm", "hierarchical", "mpi"})
    CHECK(parse_train_args({std::string("--comm.algorithm=") + algo}).config.comm_algorithm == algo);
  CHECK(c.comm_compression == "none");
  CHECK(c.comm_bucket_mb == 4);
  CHECK_FALSE(c.comm_overlap);
  CHECK(c.comm_shard_optimizer);
  CHECK(c.trace_steps == 0);
  const TrainConfig o = parse_train_args({"--comm.compression=bf16", "--comm.overlap=true", "--comm.bucket_mb=0.5",
                                          "--run.trace=10", "--run.profile=true", "--comm.shard_optimizer=false"})
                            .config;
  CHECK_FALSE(o.comm_shard_optimizer);
  CHECK(o.comm_compression == "bf16");
  CHECK(o.comm_overlap);
  CHECK(o.comm_bucket_mb == 0.5);
  CHECK(o.trace_steps == 10);
  CHECK(o.profile);
}

TEST_CASE("INI file and command line; the command line wins") {
  test::TempDir dir;
  const std::string ini = dir.file("c.ini");
  std::ofstream(ini) << "task = classification\n[optim]\nlr = 0.3\nname = adamw\n[train]\nbatch_per_rank = 16\n"
                        "[model]\nhidden = 32,16,8\n# a comment\n";
  const TrainConfig c = parse_train_args({"--config", ini, "--train.batch_per_rank=8"}).config;
  CHECK(c.lr == doctest::Approx(0.3));
  CHECK(c.optim.name == "adamw");
  CHECK(c.batch_per_rank == 8);
  CHECK(c.hidden == std::vector<int>{32, 16, 8});
  // The effective INI holds every key and parses back to the same config.
  std::ofstream(dir.file("eff.ini")) << c.effective_ini;
  const TrainConfig again = parse_train_args({"--config", dir.file("eff.ini")}).config;
  CHECK(again.effective_ini == c.effective_ini);
  CHECK(c.effective_ini.find("batch_per_rank = 8") != std::string::npos);
}

TEST_CASE("a config file may start with a UTF-8 byte-order mark") {
  test::TempDir dir;
  std::ofstream(dir.file("bom.ini")) << "\xEF\xBB\xBF[model]\nhidden = 32,16\n[optim]\nlr = 0.3\n";
  const TrainConfig c = parse_train_args({"--config", dir.file("bom.ini")}).config;
  CHECK(c.hidden == std::vector<int>{32, 16});
  CHECK(c.lr == doctest::Approx(0.3));
  // Only at the very start: anywhere else the bytes are part of a line.
  std::ofstream(dir.file("mid.ini")) << "[model]\n\xEF\xBB\xBFhidden = 32\n";
  CHECK_THROWS_AS(parse_train_args({"--config", dir.file("mid.ini")}), UsageError);
}

TEST_CASE("bad options are usage errors naming the key") {
  test::TempDir dir;
  auto fails_with = [](std::vector<std::string> args, const std::string& needle) {
    CAPTURE(needle);
    CHECK_THROWS_WITH_AS(parse_train_args(args), doctest::Contains(needle.c_str()), UsageError);
  };
  fails_with({"--train.batch_per_rnak=3"}, "train.batch_per_rnak");
  fails_with({"--train.batch_per_rank=abc"}, "train.batch_per_rank");
  fails_with({"--train.batch_per_rank=0"}, "train.batch_per_rank");
  fails_with({"--train.epochs=-1"}, "train.epochs");
  fails_with({"--optim.lr=fast"}, "optim.lr");
  fails_with({"--optim.lr=nan"}, "optim.lr");
  fails_with({"--train.shuffle=maybe"}, "train.shuffle");
  fails_with({"--model.hidden=256,,128"}, "model.hidden");
  fails_with({"--model.activation=gelu"}, "model.activation");
  fails_with({"--optim.decay=linear"}, "optim.decay");
  fails_with({"--comm.algorithm=tree"}, "comm.algorithm");
  fails_with({"--comm.compression=fp8"}, "comm.compression");
  fails_with({"--comm.compression=bf16", "--comm.algorithm=shm"}, "comm.compression=bf16 needs comm.algorithm=ring");
  fails_with({"--comm.compression=fp16", "--comm.algorithm=mpi"}, "comm.compression=fp16 needs");
  fails_with({"--comm.bucket_mb=-1"}, "comm.bucket_mb");
  fails_with({"--comm.overlap=sometimes"}, "comm.overlap");
  fails_with({"--comm.shard_optimizer=maybe"}, "comm.shard_optimizer");
  fails_with({"--run.trace=-5"}, "run.trace");
  fails_with({"--run.profile=yes please"}, "run.profile");
  fails_with({"--comm.timeout_seconds=-1"}, "comm.timeout_seconds");
  fails_with({"--comm.timeout_seconds=soon"}, "comm.timeout_seconds");
  fails_with({"--train.requeue=please"}, "train.requeue");
  fails_with({"--comm.timeout_seconds=0.01"}, "comm.timeout_seconds");
  fails_with({"--train.requeue=true", "--checkpoint.keep_last=0"}, "train.requeue=true needs checkpoints");
  // Values config.ini could not give back as they are.
  fails_with({"--run.dir=runs/a#b"}, "run.dir: a value with '#'");
  fails_with({"--optim.name=sgd\nlr = 3"}, "optim.name: a value with");
  fails_with({"--run.dir= runs/x"}, "run.dir");
  fails_with({std::string("--optim.name=sgd\0x", 18)}, "optim.name: a value with");
  fails_with({"--data.val_fraction=1.5"}, "data.val_fraction");
  fails_with({"--optim.lr=0x10"}, "optim.lr");  // strtod's hexadecimal: 16
  fails_with({"--optim.lr=1e400"}, "optim.lr");
  fails_with({"--task=ranking"}, "task");
  fails_with({"--config", dir.file("missing.ini")}, "missing.ini");
  std::ofstream(dir.file("u.ini")) << "[optim]\nlearning_rate = 0.1\n";
  fails_with({"--config", dir.file("u.ini")}, "optim.learning_rate");
  std::ofstream(dir.file("m.ini")) << "[optim\nlr = 0.1\n";
  fails_with({"--config", dir.file("m.ini")}, "config");
}

TEST_CASE("--help lists every option with its default") {
  const ParsedTrainArgs a = parse_train_args({"--help"});
  CHECK(a.help);
  CHECK(a.help_text.find("--optim.lr arg (=0.1)") != std::string::npos);
  CHECK(a.help_text.find("--train.batch_per_rank arg (=64)") != std::string::npos);
  // Every key of the effective configuration, with its default, is in the help.
  std::istringstream ini(parse_train_args({}).config.effective_ini);
  std::string line, section;
  int keys = 0;
  while (std::getline(ini, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.size() - 2) + ".";
      continue;
    }
    const auto eq = line.find(" = ");
    REQUIRE(eq != std::string::npos);
    const std::string key = section + line.substr(0, eq), value = line.substr(eq + 3);
    CAPTURE(key);
    const std::string shown = value.empty() ? "--" + key + " arg" : "--" + key + " arg (=" + value + ")";
    CHECK(a.help_text.find(shown) != std::string::npos);
    ++keys;
  }
  CHECK(keys >= 30);
}

TEST_CASE("abbreviated keys and bare words are refused, not guessed or ignored") {
  CHECK_THROWS_WITH_AS(parse_train_args({"--optim.l=0.3"}), doctest::Contains("--optim.l"), UsageError);
  CHECK_THROWS_WITH_AS(parse_train_args({"--train.ep=1"}), doctest::Contains("--train.ep"), UsageError);
  CHECK_THROWS_WITH_AS(parse_train_args({"my.ini", "--train.epochs=2"}), doctest::Contains("'my.ini'"), UsageError);
  // A value given as the next word is still fine.
  CHECK(parse_train_args({"--optim.lr", "0.3"}).config.lr == doctest::Approx(0.3));
}

TEST_CASE("integer options that do not fit are refused, not wrapped") {
  CHECK_THROWS_WITH_AS(parse_train_args({"--train.batch_per_rank=4294967297"}),
                       doctest::Contains("train.batch_per_rank"), UsageError);
  CHECK_THROWS_WITH_AS(parse_train_args({"--eval.batch_size=99999999999"}), doctest::Contains("eval.batch_size"),
                       UsageError);
  CHECK_THROWS_WITH_AS(parse_train_args({"--optim.warmup_epochs=1e300"}), doctest::Contains("optim.warmup_epochs"),
                       UsageError);
  CHECK_FALSE(parse_train_args({"--run.progress=false"}).config.progress);
  CHECK(parse_train_args({"--run.progress=true"}).config.progress);
}

// Found by fuzz/fuzz_ini: Boost.Program_options' what() replaces %placeholders%
// until none is left, so a key or line holding one looped forever.
TEST_CASE("keys and lines that hold a Boost message placeholder are refused, not looped on") {
  test::TempDir dir;
  auto fails_with = [](std::vector<std::string> args, const std::string& needle) {
    CAPTURE(needle);
    CHECK_THROWS_WITH_AS(parse_train_args(args), doctest::Contains(needle.c_str()), UsageError);
  };
  std::ofstream(dir.file("k.ini")) << "[x]\n%canonical_option% = 1\n";
  fails_with({"--config", dir.file("k.ini")}, "x.%canonical_option%");
  std::ofstream(dir.file("l.ini")) << "%invalid_line%\n";
  fails_with({"--config", dir.file("l.ini")}, "'%invalid_line%'");
  fails_with({"--%canonical_option%=1"}, "--%canonical_option%");
  fails_with({"--%option%"}, "'--%option%'");
  // Other messages read as Boost writes them.
  CHECK_THROWS_WITH_AS(parse_train_args({"--train.batch_per_rnak=3"}),
                       "options: unrecognised option '--train.batch_per_rnak=3'", UsageError);
}
