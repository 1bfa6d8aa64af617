#!/usr/bin/env bash
# Installs the Debian packages that the interop and browser suites use: Ruby with Sidekiq 6.4.1
# and ActiveJob (interop), Chromium (dashboard tests). Only runs as root with apt-get present;
# elsewhere it says which suites will be missing their tools.
set -euo pipefail
PKGS=(ruby ruby-sidekiq ruby-activejob ruby-rack ruby-webrick chromium chromium-driver redis-server tmux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing Debian packages: ${missing[*]} (not root or no apt-get; install them by hand)" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
