#!/usr/bin/env bash
# Debian packages for the browser and container tests. Installs only what is
# missing, and only where it can (root with apt); elsewhere those tests skip.
set -euo pipefail
want=()
command -v chromium >/dev/null || want+=(chromium)
# Apache Velocity 1.7 (API Gateway's template engine) for the template parity test.
[ -f /usr/share/java/velocity.jar ] || want+=(velocity libcommons-lang-java)
command -v javac >/dev/null || want+=(default-jdk-headless)
# Container tests (scripts/podman-setup.sh configures these and makes the base image).
for tool in podman buildah runc mmdebstrap; do
    command -v "$tool" >/dev/null || want+=("$tool")
done
command -v podman >/dev/null || want+=(fuse-overlayfs uidmap slirp4netns ca-certificates)
if [ ${#want[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: missing ${want[*]}; browser/container tests will be skipped" >&2
    exit 0
fi
echo "system-deps: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
