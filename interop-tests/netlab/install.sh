#!/usr/bin/env bash
# install.sh - install what netlab.sh needs (Debian/Ubuntu, as root): iproute2, nftables,
# conntrack. Does nothing when they are all present; safe to run on every CI run.
set -euo pipefail

declare -A pkg_of=([ip]=iproute2 [nft]=nftables [conntrack]=conntrack)
missing=()
for tool in ip nft conntrack; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]}")
done
if [ ${#missing[@]} = 0 ]; then
  echo "netlab install: iproute2, nftables, conntrack present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "netlab install: missing ${missing[*]} and not root; skipping (the NAT lab will be skipped)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "netlab install: missing ${missing[*]} and no apt-get; install them by hand" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
echo "netlab install: installed ${missing[*]}"
