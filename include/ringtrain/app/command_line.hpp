// Option parsing shared by the one-process subcommands (evaluate, predict,
// inspect, plot, report): Boost.Program_options without abbreviations, bare
// words collected as "positional" so errors can name them, --help printed
// from the options' own descriptions. `train` has its own parser (options.hpp)
// because it also reads INI files.
#pragma once

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/io/hdf5.hpp"

namespace ringtrain {

// Parses `args` for subcommand `name`. Returns false (after printing the
// help) for --help. UsageError naming the command and its usage for unknown
// options, more than `max_positional` bare words, or a missing `required`
// option ("positional": at least one bare word, named `positional_name`).
bool parse_command(const std::string& name, const std::string& usage,
                   const boost::program_options::options_description& visible, const std::vector<std::string>& args,
                   std::size_t max_positional, const std::vector<std::string>& required,
                   boost::program_options::variables_map& vm, const std::string& positional_name = "FILE");
std::vector<std::string> positional_words(const boost::program_options::variables_map& vm);

// HDF5 attributes as JSON (ints stay ints).
nlohmann::ordered_json attr_json(const AttrValue& v);
nlohmann::ordered_json attrs_json(const Attrs& attrs);

}  // namespace ringtrain
