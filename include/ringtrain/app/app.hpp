// The ringtrain command line: subcommand dispatch and exit-code mapping.
#pragma once

namespace ringtrain {

// Runs `ringtrain <subcommand> ...`; returns the process exit code.
int run_app(int argc, char** argv);

}  // namespace ringtrain
