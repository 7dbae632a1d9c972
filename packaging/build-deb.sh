#!/bin/sh
# Build the Debian package from this source tree, as CI does:
#   packaging/build-deb.sh OUTDIR        (as root, on Debian 12)
#
# Installs the build dependencies with apt-get (Debian's own python3-*
# libraries), copies the source tree into a temporary directory with
# packaging/debian as debian/ (symlinks dereferenced), builds with
# `dpkg-buildpackage -us -uc -b` without network access, and copies the
# .deb into OUTDIR. The source tree itself is left untouched.
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

# A python3 ahead of /usr/bin on PATH (pyenv shims, an active virtualenv)
# would make pybuild build for the wrong interpreter: start over with a
# clean environment.
if [ -z "${SECAUTOD_BUILD_CLEAN_ENV:-}" ]; then
    exec env -i SECAUTOD_BUILD_CLEAN_ENV=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="${HOME:-/root}" LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        /bin/sh "$0" "$@"
fi

source_tree=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
# (dpkg-parsechangelog may not be installed yet on a fresh machine.)
version=$(sed -n '1s/^secautod (\([^)]*\)).*/\1/p' "$source_tree/packaging/debian/changelog")
workdir=$(mktemp -d /tmp/secautod-deb.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
build="$workdir/secautod-$version"

# The source tree without VCS data, virtualenvs, caches or build output.
mkdir "$build"
tar -C "$source_tree" \
    --exclude=./.git --exclude=./.venv --exclude=./debian --exclude=./build \
    --exclude=./dist --exclude=./data --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
    --exclude=.hypothesis --exclude='*.db' --exclude='*.db-*' \
    -cf - . | tar -C "$build" -xf -
cp -rL "$build/packaging/debian" "$build/debian"

# Build dependencies from debian/control; refresh the package lists only
# when something is missing from them (a fresh machine).
if ! apt-get build-dep -y -q --no-install-recommends "$build"; then
    apt-get update -q
    apt-get build-dep -y -q --no-install-recommends "$build"
fi

# Offline: in a network namespace with no interfaces, when allowed.
offline=""
if unshare --net true 2>/dev/null; then
    offline="unshare --net"
    echo "build-deb: building without network access"
else
    echo "build-deb: cannot create a network namespace; building with network access" >&2
fi
(cd "$build" && $offline dpkg-buildpackage -us -uc -b)

cp "$workdir"/secautod_"$version"_*.deb "$outdir"/
ls "$outdir"/secautod_"$version"_*.deb
