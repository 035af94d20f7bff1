#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium when it is missing, so the behaviour report's
# rendering test runs instead of skipping. Safe to run repeatedly; a no-op when present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium.sh: /usr/bin/chromium is missing and this is not root; the render test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
