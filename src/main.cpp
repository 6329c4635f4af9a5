// ringtrain executable: everything lives in app/.
#include "ringtrain/app/app.hpp"

int main(int argc, char** argv) { return ringtrain::run_app(argc, argv); }
