#!/usr/bin/env bash
# Podman for CI: builds and runs docker/Dockerfile without a Docker engine or Docker Hub.
#
# Idempotent; safe to run before every test session. It
#   1. installs podman, buildah, runc and mmdebstrap from Debian when missing (as root);
#   2. writes a containers.conf (runc, cgroupfs, lowered ulimits) and a storage.conf
#      (overlay) to $CONTAINERS_CONF / $CONTAINERS_STORAGE_CONF, by default under .run/podman/;
#   3. makes, once, a local stand-in for python:3.11-slim, $PODMAN_BASE_IMAGE
#      (default localhost/python:3.11-slim): Debian bookworm's python3 (3.11) via mmdebstrap,
#      with this machine's CA certificates, so that pip inside a build can reach PyPI through
#      the HTTPS proxy. The CA lives only in this local stand-in, never in docker/Dockerfile.
#
# Use the same environment for podman afterwards:
#   export CONTAINERS_CONF=.run/podman/containers.conf CONTAINERS_STORAGE_CONF=.run/podman/storage.conf
#   podman build --format docker --network host \
#       --build-arg PYTHON_IMAGE=localhost/python:3.11-slim -f docker/Dockerfile -t worker .
# Optional: PODMAN_GRAPHROOT / PODMAN_RUNROOT choose where images live (a fresh directory
# gives a clean storage state); PODMAN_DEBIAN_MIRROR the Debian mirror for the base image.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
conf_dir="$root/.run/podman"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$conf_dir/containers.conf}"
export CONTAINERS_STORAGE_CONF="${CONTAINERS_STORAGE_CONF:-$conf_dir/storage.conf}"
base_image="${PODMAN_BASE_IMAGE:-localhost/python:3.11-slim}"
graphroot="${PODMAN_GRAPHROOT:-/var/lib/containers/storage}"
runroot="${PODMAN_RUNROOT:-/run/containers/storage}"
mirror="${PODMAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "podman-setup: $*" >&2; }

# 1. Packages.
want=()
for tool in podman buildah runc mmdebstrap; do
    command -v "$tool" >/dev/null || want+=("$tool")
done
if [ ${#want[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing ${want[*]} and cannot install them (needs root and apt-get)"
        exit 3
    fi
    log "installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # uidmap/slirp4netns/fuse-overlayfs: what podman expects beside it, even when run as root.
    apt-get install -y -qq --no-install-recommends "${want[@]}" \
        uidmap slirp4netns fuse-overlayfs ca-certificates >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    # Rootless podman needs subuid ranges and a user namespace; this recipe is for root CI.
    log "warning: not root; rootless podman may need more setup than this script does"
fi

# 2. Configuration. The VM's default limits (nofile in the millions) make runc fail,
# there is no systemd (cgroupfs, file events), and overlay is the fast driver here.
write_if_changed() {  # path, content: rewrite only on change, so reruns touch nothing
    local path="$1" content="$2"
    mkdir -p "$(dirname "$path")"
    if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
        printf '%s\n' "$content" >"$path"
        log "wrote $path"
    fi
}
write_if_changed "$CONTAINERS_CONF" '[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
write_if_changed "$CONTAINERS_STORAGE_CONF" "[storage]
driver = \"overlay\"
graphroot = \"$graphroot\"
runroot = \"$runroot\""

# 3. The stand-in base image, made once per storage.
if podman image exists "$base_image"; then
    log "$base_image present"
    exit 0
fi
log "building $base_image with mmdebstrap (once per storage)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
cas=(/usr/local/share/ca-certificates/*.crt)
hooks=()
if [ ${#cas[@]} -gt 0 ]; then
    hooks+=(--customize-hook="cp ${cas[*]} \"\$1/usr/local/share/ca-certificates/\"")
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null')
fi
# No docs, man pages or locales: smaller and faster, like the slim image.
mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "${hooks[@]}" \
    bookworm "$work/rootfs.tar" "$mirror"
# Match python:3.11-slim where the Dockerfile can tell: `python3` on PATH, UTF-8, and
# pip trusting the system bundle (which here holds the proxy's CA).
podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$base_image" >/dev/null
log "built $base_image"
