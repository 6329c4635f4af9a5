// Option parsing shared by the one-process subcommands (see command_line.hpp).
#include "ringtrain/app/command_line.hpp"

#include <cstdio>
#include <sstream>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace po = boost::program_options;

std::vector<std::string> positional_words(const po::variables_map& vm) {
  return vm.count("positional") ? vm["positional"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

bool parse_command(const std::string& name, const std::string& usage, const po::options_description& visible,
                   const std::vector<std::string>& args, std::size_t max_positional,
                   const std::vector<std::string>& required, po::variables_map& vm,
                   const std::string& positional_name) {
  po::options_description all;
  all.add(visible).add_options()("help,h", "show this help")("positional", po::value<std::vector<std::string>>(), "");
  po::positional_options_description pos;
  pos.add("positional", -1);
  try {
    namespace style = po::command_line_style;
    po::store(po::command_line_parser(args)
                  .options(all)
                  .style(style::default_style & ~style::allow_guessing)
                  .positional(pos)
                  .run(),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(str_cat(name, ": ", e.what(), " (usage: ", usage, ")"));
  }
  if (vm.count("help")) {
    std::ostringstream os;
    os << "usage: " << usage << "\n\n" << visible;
    std::printf("%s", os.str().c_str());
    return false;
  }
  const std::vector<std::string> words = positional_words(vm);
  if (words.size() > max_positional)
    throw UsageError(str_cat(name, ": unexpected argument '", words[max_positional], "' (usage: ", usage, ")"));
  std::string missing;
  for (const std::string& r : required)
    if (!vm.count(r)) missing += (missing.empty() ? "" : ", ") + (r == "positional" ? positional_name : "--" + r);
  if (!missing.empty()) throw UsageError(str_cat(name, ": missing ", missing, " (usage: ", usage, ")"));
  return true;
}

nlohmann::ordered_json attr_json(const AttrValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::get<std::string>(v);
}

nlohmann::ordered_json attrs_json(const Attrs& attrs) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [k, v] : attrs) j[k] = attr_json(v);
  return j;
}

}  // namespace ringtrain
