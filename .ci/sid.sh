#!/usr/bin/env bash
# A Debian sid chroot with CPython 3.14 and 3.15 (release and debug builds),
# for running fastco (or anything else) on the interpreters Debian stable
# does not ship.  Needs root.
#
#   .ci/sid.sh create          make ROOT unless a previous run left it
#   .ci/sid.sh run CMD ARG...  run CMD in ROOT, in this checkout, which is
#                              bind-mounted at its own path (creates ROOT first)
#   .ci/sid.sh root            print ROOT
#
# CMD runs as `chroot ROOT env -i PATH=/usr/bin:/bin HOME=/root CMD ARG...`
# from the checkout's directory: no variable of the caller gets in, so pass
# them through env, e.g.
#   .ci/sid.sh run env FASTCO_BACKEND=ucontext .ci/venv-3.14/bin/python -m pytest -q
#
# Environment:
#   FASTCO_SID_ROOT    where the chroot lives (default /var/tmp/fastco-sid;
#                      outside the checkout, reused across runs and clones)
#   FASTCO_SID_MIRROR  the Debian mirror (default: the one this machine's apt
#                      uses, read from /etc/apt/sources.list.d/*.sources or
#                      /etc/apt/sources.list)
#   FASTCO_SID_BIND    more host directories, colon-separated, bind-mounted
#                      at their own paths (e.g. a git worktree's common dir)
#
# Mounts (proc, /dev, the checkout) are made in a private mount namespace
# (unshare -m) that dies with the command: they never show outside it and
# are gone when it ends, however it ends.  Nothing here ever deletes ROOT;
# only a half-made ROOT.new from a failed create is removed, and only once
# nothing is mounted under it.
set -euo pipefail

ROOT=${FASTCO_SID_ROOT:-/var/tmp/fastco-sid}
ROOT=${ROOT%/}
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SELF=$CHECKOUT/.ci/sid.sh
# What the chroot holds.  g++ and libffi-dev: greenlet and cffi build from
# source on the debug interpreters (no wheels for their ABI); redis-server,
# postgresql and openssl: the servers of the integration tests.
PACKAGES=python3.14-dev,python3.14-venv,python3.14-dbg,python3.15-dev,python3.15-venv,python3.15-dbg,gcc,g++,libc6-dev,libffi-dev,pkg-config,make,git,ca-certificates,redis-server,postgresql,openssl
READY=.fastco-sid-ready     # marker in ROOT: the package list it was made with

die() { echo "sid.sh: $*" >&2; exit 1; }

# The mirror this machine's apt uses (the first non-security URI).
host_mirror() {
    local uri
    if [ -n "${FASTCO_SID_MIRROR:-}" ]; then echo "$FASTCO_SID_MIRROR"; return; fi
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
          | grep -v -- '-security' | head -n 1 || true)
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
              /etc/apt/sources.list | grep -v -- '-security' | head -n 1 || true)
    fi
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt; set FASTCO_SID_MIRROR"
    echo "$uri"
}

# Whether anything is mounted at or under directory $1 (in this namespace).
mounted_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' \
        /proc/self/mountinfo
}

# The host's CA bundle (pip in the chroot needs it) and resolver.
copy_host_files() {
    local r=$1
    mkdir -p "$r/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/.ca.$$"
    mv -f "$r/etc/ssl/certs/.ca.$$" "$r/etc/ssl/certs/ca-certificates.crt"
    cp -L /etc/resolv.conf "$r/etc/.resolv.$$"
    mv -f "$r/etc/.resolv.$$" "$r/etc/resolv.conf"
}

create() {
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock 9                          # one creator at a time; others wait
    if [ -f "$ROOT/$READY" ]; then
        if [ "$(cat "$ROOT/$READY")" != "$PACKAGES" ]; then
            echo "sid.sh: $ROOT: installing the current package list"
            # The mirror may serve a snapshot whose Release file has expired.
            unshare --mount --propagation private -- bash "$SELF" _chroot \
                apt-get -o Acquire::Check-Valid-Until=false update -q
            unshare --mount --propagation private -- bash "$SELF" _chroot \
                env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends ${PACKAGES//,/ }
            rm -f "$ROOT"/var/cache/apt/archives/*.deb
            echo "$PACKAGES" > "$ROOT/$READY"
        fi
        exec 9>&-
        return
    fi
    [ ! -e "$ROOT" ] || die "$ROOT exists but is not a finished chroot (no $READY): remove it by hand"
    command -v debootstrap >/dev/null || {
        command -v apt-get >/dev/null || die "debootstrap is missing and apt-get too"
        apt-get install -y -q debootstrap >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
    }
    local new=$ROOT.new mirror
    mirror=$(host_mirror)
    if [ -e "$new" ]; then
        # Left by a create that failed: its mounts died with its namespace.
        mounted_under "$new" && die "$new has mounts under it: unmount them, then remove it"
        rm -rf --one-file-system -- "$new"
    fi
    echo "sid.sh: debootstrap sid into $new from $mirror"
    # debootstrap mounts proc and sys in the target: in a namespace of its
    # own, so that they go away with it even if it fails.
    unshare --mount --propagation private -- \
        debootstrap --variant=minbase --include="$PACKAGES" sid "$new" "$mirror" \
        > "$ROOT.log" 2>&1 || { tail -n 30 "$ROOT.log" >&2; die "debootstrap failed (log: $ROOT.log)"; }
    rm -f "$new"/var/cache/apt/archives/*.deb    # 360 MB of downloaded packages
    copy_host_files "$new"
    echo "$PACKAGES" > "$new/$READY"
    mv -T -- "$new" "$ROOT"
    exec 9>&-
}

# In a private mount namespace: mount what the chroot needs, then chroot.
# (`_chroot` runs as root in ROOT with no checkout; `_run` in the checkout.)
inside() {
    local mode=$1 d
    shift
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    copy_host_files "$ROOT"
    if [ "$mode" = _chroot ]; then
        exec chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
    fi
    local IFS=:
    for d in $CHECKOUT ${FASTCO_SID_BIND:-}; do
        [ -d "$d" ] || die "cannot bind $d: not a directory"
        mkdir -p "$ROOT$d"
        mount --bind "$d" "$ROOT$d"
    done
    unset IFS
    exec chroot "$ROOT" env -i PATH=/usr/bin:/bin HOME=/root \
        /bin/sh -c 'cd "$0" && exec "$@"' "$CHECKOUT" "$@"
}

case ${1:-} in
    create) create ;;
    run)
        shift
        [ $# -gt 0 ] || die "run what?"
        create
        exec unshare --mount --propagation private -- bash "$SELF" _run "$@" ;;
    root) echo "$ROOT" ;;
    _run|_chroot) inside "$@" ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
