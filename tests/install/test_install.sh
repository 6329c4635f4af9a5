#!/usr/bin/env bash
# cmake --install of a build folder into a scratch prefix, then a downstream
# project built against the installed tree alone.
#   test_install.sh BUILD_DIR [CMAKE [CXX_COMPILER [C_COMPILER [FLAGS]]]]
# FLAGS go to the downstream project's compiler and linker: the sanitizer
# build passes -fsanitize=... (its static libraries need the runtimes). Checks:
# bin/ringtrain runs, every header, the layer libraries, the CMake package (and
# no build flag or build-tree path in it), the example configs, the Slurm
# scripts (executable) and the README; then tests/install/downstream is copied
# into the scratch folder (so it cannot see the source tree), configured with
# CMAKE_PREFIX_PATH=<prefix>, built and run. Exit 77 (skipped) without cmake.
set -euo pipefail
BUILD=$(readlink -f "${1:?usage: $0 BUILD_DIR [CMAKE [CXX_COMPILER [C_COMPILER [FLAGS]]]]}")
CMAKE=${2:-cmake}
CXX_COMPILER=${3:-}
C_COMPILER=${4:-}
FLAGS=${5:-}
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
START=$SECONDS

command -v "$CMAKE" >/dev/null || { echo "SKIP: no cmake ($CMAKE)"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
[ -f "$BUILD/cmake_install.cmake" ] || die "$BUILD is not a configured build folder"
[ -x "$BUILD/ringtrain" ] || die "$BUILD/ringtrain is not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-install-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
# Runs a step quietly; on failure shows its output and fails.
step() {
  local what=$1 rc=0; shift
  "$@" >"$WORK/step.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$WORK/step.log" >&2; die "$what (exit $rc): $*"; }
}

step "cmake --install" "$CMAKE" --install "$BUILD" --prefix "$PREFIX"
ok "cmake --install $BUILD --prefix $PREFIX"

[ -x "$PREFIX/bin/ringtrain" ] || die "no executable bin/ringtrain"
VERSION_OUT=$("$PREFIX/bin/ringtrain" --version) || die "bin/ringtrain --version exited $?"
VERSION_LINE=${VERSION_OUT%%$'\n'*}
[[ $VERSION_LINE == "ringtrain "* ]] || die "bin/ringtrain --version printed '$VERSION_LINE'"
BUILT_WITH=$(sed -n 2p <<<"$VERSION_OUT")
[[ $BUILT_WITH =~ ^built\ with:\ .*MPI\ standard\ [0-9]+\.[0-9]+\;\ HDF5\ [0-9]+\.[0-9]+\.[0-9]+.*\;\ Eigen\ [0-9]+\.[0-9]+\.[0-9]+\; ]] \
  || die "bin/ringtrain --version does not name the MPI, HDF5 and Eigen versions: '$BUILT_WITH'"
ok "bin/ringtrain --version: $VERSION_LINE; $BUILT_WITH"

diff <(cd "$SOURCE/include" && find ringtrain -name '*.hpp' | sort) \
     <(cd "$PREFIX/include" && find ringtrain -type f | sort) >"$WORK/headers.diff" \
  || { cat "$WORK/headers.diff" >&2; die "installed headers differ from include/ringtrain (< source, > installed)"; }
ok "headers: $(find "$PREFIX/include/ringtrain" -name '*.hpp' | wc -l) under include/ringtrain, the same as the source tree"

# lib/, or lib64/ or lib/<multiarch>/ where GNUInstallDirs chose so.
CORE=$(find "$PREFIX" -name libringtrain_core.a | head -n 1)
[ -n "$CORE" ] || die "no libringtrain_core.a installed"
LIBDIR=$(dirname "$CORE")
for layer in core comm io train app; do
  [ -f "$LIBDIR/libringtrain_$layer.a" ] || die "no ${LIBDIR#"$PREFIX"/}/libringtrain_$layer.a"
done
ok "libraries: libringtrain_{core,comm,io,train,app}.a in ${LIBDIR#"$PREFIX"/}"

PKG=$LIBDIR/cmake/ringtrain
for f in ringtrainConfig.cmake ringtrainConfigVersion.cmake ringtrainTargets.cmake; do
  [ -f "$PKG/$f" ] || die "no ${PKG#"$PREFIX"/}/$f"
done
# Build flags and paths into the build or source tree must not reach users.
if grep -nE -e '-march=|-fsanitize|-Wall|ringtrain_options' -e "$SOURCE/|$BUILD/" "$PKG"/*.cmake >"$WORK/leak.txt"; then
  cat "$WORK/leak.txt" >&2
  die "the CMake package carries build flags or build-tree paths"
fi
ok "CMake package: ${PKG#"$PREFIX"/}/ringtrainConfig.cmake, ConfigVersion, Targets (no build flags, no build-tree paths)"

[ -f "$PREFIX/share/ringtrain/configs/fashion_mnist.ini" ] || die "no share/ringtrain/configs/fashion_mnist.ini"
ok "configs: $(cd "$PREFIX/share/ringtrain/configs" && echo *.ini) in share/ringtrain/configs"
for script in "$SOURCE"/slurm/*.sbatch; do
  installed=$PREFIX/share/ringtrain/slurm/$(basename "$script")
  [ -f "$installed" ] || die "no share/ringtrain/slurm/$(basename "$script")"
  if [ -x "$script" ] && [ ! -x "$installed" ]; then die "share/ringtrain/slurm/$(basename "$script") lost its executable bit"; fi
done
[ -f "$PREFIX/share/ringtrain/slurm/README.md" ] || die "no share/ringtrain/slurm/README.md"
ok "Slurm: $(cd "$PREFIX/share/ringtrain/slurm" && echo *) in share/ringtrain/slurm (scripts executable)"
[ -f "$PREFIX/share/doc/ringtrain/README.md" ] || die "no share/doc/ringtrain/README.md"
ok "share/doc/ringtrain/README.md"

# The downstream project, from a copy outside the source tree.
cp -r "$HERE/downstream" "$WORK/downstream"
args=(-S "$WORK/downstream" -B "$WORK/downstream/build" -DCMAKE_BUILD_TYPE=Release
      "-DCMAKE_PREFIX_PATH=$PREFIX" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
      "-DCMAKE_CXX_FLAGS=$FLAGS" "-DCMAKE_C_FLAGS=$FLAGS")
[ -z "$CXX_COMPILER" ] || args+=("-DCMAKE_CXX_COMPILER=$CXX_COMPILER")
[ -z "$C_COMPILER" ] || args+=("-DCMAKE_C_COMPILER=$C_COMPILER")
step "configuring the downstream project" "$CMAKE" "${args[@]}"
FOUND=$(sed -n 's/^ringtrain_DIR:PATH=//p' "$WORK/downstream/build/CMakeCache.txt")
[ "$FOUND" = "$PKG" ] || die "downstream found ringtrain in '$FOUND', not in $PKG"
ok "downstream configured: find_package(ringtrain) from ${FOUND#"$PREFIX"/}${FLAGS:+ (flags: $FLAGS)}"
step "building the downstream project" "$CMAKE" --build "$WORK/downstream/build"
ok "downstream built against ringtrain::ringtrain"

rc=0
"$WORK/downstream/build/downstream" "$WORK" >"$WORK/run.log" 2>&1 || rc=$?
sed 's/^/  | /' "$WORK/run.log"
[ "$rc" = 0 ] || die "downstream exited $rc"
grep -qx "downstream: all checks passed" "$WORK/run.log" || die "downstream did not report all checks passed"
grep -qx "$VERSION_LINE" "$WORK/run.log" || die "downstream's RINGTRAIN_VERSION differs from '$VERSION_LINE'"
ok "downstream ran: model, model file and MPI checks passed, version as bin/ringtrain"

echo "install test passed in $((SECONDS - START)) s"
