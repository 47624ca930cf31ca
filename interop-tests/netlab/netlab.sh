#!/usr/bin/env bash
# netlab.sh - peerhost's NAT lab: a small simulated internet in Linux network namespaces.
# Needs root, iproute2, nftables and conntrack (install.sh installs them on Debian).
#
#   netlab.sh up                      build the lab (tears an old one down first)
#   netlab.sh down                    stop everything running inside it and delete it (idempotent)
#   netlab.sh exec HOST CMD...        run CMD inside HOST
#   netlab.sh nat nat1|nat2 TYPE      switch a router's NAT type (flushes its conntrack table)
#   netlab.sh status                  addresses, NAT type and mapping counts of each router
#   netlab.sh ip HOST                 print HOST's main address
#   netlab.sh selftest                classify both routers' behaviour for every NAT type with
#                                     probe.js (brings the lab up and down itself)
#
# Hosts (namespaces are named "ph-HOST"):
#
#   ph-boot  198.51.100.10-14 ─┐                     ┌─ 203.0.113.11 ph-nat1 10.1.0.1 ─┬─ 10.1.0.2 ph-peer1
#                              ├─ pub ─ ph-inet ─ isp ┤                                  └─ 10.1.0.3 ph-peer3
#   ph-relay 198.51.100.20 ────┤  .1            .1   └─ 203.0.113.12 ph-nat2 10.2.0.1 ─── 10.2.0.2 ph-peer2
#   ph-inst  198.51.100.30 ────┘
#
# ph-inet routes between the public segment (198.51.100.0/24, TEST-NET-2: DHT bootstrap nodes
# on ph-boot, one address per node, the blind relay on ph-relay, and an instance on ph-inst:
# STUN and the page for the WebRTC browser tests) and the ISP segment
# (203.0.113.0/24, TEST-NET-3: the routers' WAN sides). It does no NAT. Each router NATs its
# private LAN (10.1.0.0/24, 10.2.0.0/24) behind its one WAN address.
#
# NAT types (RFC 4787 terms; env NAT1 / NAT2 for `up`, default "port"):
#   full        endpoint-independent mapping and filtering ("full cone"): once a LAN host has
#               sent from a port, anyone may send to that mapped port.
#   restricted  endpoint-independent mapping, address-dependent filtering ("restricted cone"):
#               inbound is let in from any port of an address the LAN host has sent to.
#   port        endpoint-independent mapping, address-and-port-dependent filtering
#               ("port-restricted cone"): plain conntrack masquerade, what Linux routers do.
#   symmetric   endpoint-dependent mapping: every new destination gets a new random port.
#
# How: masquerade keeps the LAN host's source port when it is free (it always is with one
# host per port), so the mapped port equals the private one. "full" and "restricted" learn
# mappings in nftables dynamic maps from outbound packets (mapped port -> LAN host, resp.
# remote address . mapped port -> LAN host) and DNAT matching inbound packets; "symmetric"
# masquerades with `fully-random`. Every router drops unsolicited inbound silently (no ICMP),
# in its forward and input paths alike. Learned mappings expire after MAP_TIMEOUT (default
# 180 s, refreshed by outbound traffic); conntrack's UDP timeouts are the kernel's.
set -euo pipefail

# NETLAB_PREFIX names the namespaces (default "ph-"): two labs with different prefixes can
# run side by side (e.g. the WebRTC lab and the NAT matrix).
P=${NETLAB_PREFIX:-ph-}
HOSTS="inet boot relay inst nat1 nat2 peer1 peer2 peer3"
NAT1=${NAT1:-port}
NAT2=${NAT2:-port}
MAP_TIMEOUT=${MAP_TIMEOUT:-180s}

PUB_GW=198.51.100.1
BOOT_IPS="198.51.100.10 198.51.100.11 198.51.100.12 198.51.100.13 198.51.100.14"
RELAY_IP=198.51.100.20
INST_IP=198.51.100.30
ISP_GW=203.0.113.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "netlab: $*" >&2; exit 1; }
nsname() { echo "$P$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(nsname "$h")" "$@"; }
present() { [ -e "/run/netns/$(nsname "$1")" ]; }

wan_ip() { case $1 in nat1) echo 203.0.113.11;; nat2) echo 203.0.113.12;; *) die "no router $1";; esac; }
lan_net() { case $1 in nat1) echo 10.1.0;; nat2) echo 10.2.0;; *) die "no router $1";; esac; }

addr_of() {
  case $1 in
    inet) echo $PUB_GW;;
    boot) echo "${BOOT_IPS%% *}";;
    relay) echo $RELAY_IP;;
    inst) echo $INST_IP;;
    nat1|nat2) wan_ip "$1";;
    peer1) echo 10.1.0.2;;
    peer3) echo 10.1.0.3;;
    peer2) echo 10.2.0.2;;
    *) die "unknown host $1 (hosts: $HOSTS)";;
  esac
}

need_tools() {
  [ "$(id -u)" = 0 ] || die "needs root"
  local t
  for t in ip nft conntrack; do
    command -v "$t" >/dev/null || die "missing $t: run interop-tests/netlab/install.sh"
  done
}

new_host() {
  ip netns add "$(nsname "$1")"
  in_ns "$1" ip link set lo up
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# veth between two namespaces: wire HOST_A IF_A HOST_B IF_B (never visible in the root ns)
wire() { ip link add "$2" netns "$(nsname "$1")" type veth peer name "$4" netns "$(nsname "$3")"; }

set_nat() { # set_nat ROUTER TYPE
  local r=$1 type=$2 lan pre="" learn="" masq="masquerade"
  lan=$(lan_net "$r")
  case $type in
    full)
      learn="iifname \"lan\" meta l4proto udp update @by_port { udp sport : ip saddr }"
      pre="iifname \"wan\" meta l4proto udp dnat to udp dport map @by_port";;
    restricted)
      learn="iifname \"lan\" meta l4proto udp update @by_addr { ip daddr . udp sport : ip saddr }"
      pre="iifname \"wan\" meta l4proto udp dnat to ip saddr . udp dport map @by_addr";;
    port) ;;
    symmetric) masq="masquerade fully-random";;
    *) die "NAT type must be full|restricted|port|symmetric (got $type)";;
  esac
  in_ns "$r" nft delete table ip netlab 2>/dev/null || true
  in_ns "$r" nft -f - <<EOF
table ip netlab {
  comment "nat=$type"
  map by_port { type inet_service : ipv4_addr; flags dynamic,timeout; timeout $MAP_TIMEOUT; }
  map by_addr { type ipv4_addr . inet_service : ipv4_addr; flags dynamic,timeout; timeout $MAP_TIMEOUT; }
  chain learn { type filter hook prerouting priority raw; policy accept;
    $learn
  }
  chain dnat_in { type nat hook prerouting priority dstnat; policy accept;
    $pre
  }
  chain snat_out { type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr $lan.0/24 $masq
  }
  chain forward_f { type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname "wan" ct status dnat accept
    iifname "wan" drop
  }
  chain input_f { type filter hook input priority filter; policy accept;
    ct state established,related accept
    iifname "wan" icmp type echo-request accept
    iifname "wan" drop
  }
}
EOF
  in_ns "$r" conntrack -F >/dev/null 2>&1 || true
}

nat_type() { # the type a router is set to, read back from its ruleset
  in_ns "$1" nft list table ip netlab 2>/dev/null | sed -n 's/.*comment "nat=\([a-z]*\)".*/\1/p'
}

up() {
  need_tools
  down quiet
  local h ip r lan p
  for h in $HOSTS; do new_host "$h"; done

  in_ns inet sysctl -qw net.ipv4.ip_forward=1
  in_ns inet ip link add pub type bridge
  in_ns inet ip link add isp type bridge
  in_ns inet ip addr add $PUB_GW/24 dev pub
  in_ns inet ip addr add $ISP_GW/24 dev isp
  in_ns inet ip link set pub up
  in_ns inet ip link set isp up

  for h in boot relay inst; do
    wire "$h" eth0 inet "to-$h"
    in_ns inet ip link set "to-$h" master pub up
    if [ "$h" = boot ]; then
      for ip in $BOOT_IPS; do in_ns boot ip addr add "$ip/24" dev eth0; done
    else
      in_ns "$h" ip addr add "$(addr_of "$h")/24" dev eth0
    fi
    in_ns "$h" ip link set eth0 up
    in_ns "$h" ip route add default via $PUB_GW
  done

  for r in nat1 nat2; do
    lan=$(lan_net "$r")
    wire "$r" wan inet "to-$r"
    in_ns inet ip link set "to-$r" master isp up
    in_ns "$r" ip addr add "$(wan_ip "$r")/24" dev wan
    in_ns "$r" ip link set wan up
    in_ns "$r" ip route add default via $ISP_GW
    in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$r" ip link add lan type bridge
    in_ns "$r" ip addr add "$lan.1/24" dev lan
    in_ns "$r" ip link set lan up
  done
  for p in peer1 peer3 peer2; do
    case $p in peer2) r=nat2;; *) r=nat1;; esac
    wire "$p" eth0 "$r" "to-$p"
    in_ns "$r" ip link set "to-$p" master lan up
    in_ns "$p" ip addr add "$(addr_of "$p")/24" dev eth0
    in_ns "$p" ip link set eth0 up
    in_ns "$p" ip route add default via "$(lan_net "$r").1"
  done
  set_nat nat1 "$NAT1"
  set_nat nat2 "$NAT2"
}

down() {
  local h n pid
  for h in $HOSTS; do
    n=$(nsname "$h")
    [ -e "/run/netns/$n" ] || continue
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5; do
      [ -z "$(ip netns pids "$n" 2>/dev/null)" ] && break
      sleep 0.1
    done
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  [ "${1:-}" = quiet ] || echo "netlab: down"
}

status() {
  local h r
  for h in $HOSTS; do
    if ! present "$h"; then echo "$h: absent"; continue; fi
    printf '%-6s %s\n' "$h" "$(in_ns "$h" ip -br -4 addr | awk '$1 != "lo" {for (i = 3; i <= NF; i++) printf "%s:%s ", $1, $i}')"
  done
  for r in nat1 nat2; do
    present "$r" || continue
    echo "$r: nat=$(nat_type "$r") conntrack=$(in_ns "$r" conntrack -C 2>/dev/null || echo '?')" \
      "learned=$(in_ns "$r" nft list ruleset 2>/dev/null | grep -c ' expires ' || true)"
  done
}

# classify HOST: what probe.js in HOST sees of its router (one JSON line)
classify() {
  in_ns "$1" node "$HERE/probe.js" classify 198.51.100.10 198.51.100.11
}

selftest() {
  need_tools
  command -v node >/dev/null || die "selftest needs node"
  up
  trap 'down quiet' EXIT
  in_ns boot node "$HERE/probe.js" server 198.51.100.10 198.51.100.11 >/dev/null &
  local server=$!
  sleep 0.5
  local t r h got fails=0
  for t in full restricted port symmetric; do
    set_nat nat1 "$t"
    set_nat nat2 "$t"
    for r in nat1 nat2; do
      [ $r = nat1 ] && h=peer1 || h=peer2
      got=$(classify "$h" || true)
      if echo "$got" | grep -q "\"type\":\"$t\""; then
        echo "ok   $r=$t: $got"
      else
        echo "FAIL $r=$t: $got"
        fails=$((fails + 1))
      fi
    done
  done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  down quiet
  trap - EXIT
  if [ $fails = 0 ]; then echo "netlab selftest: 8 passed, 0 failed"; else echo "netlab selftest: $((8 - fails)) passed, $fails failed"; exit 1; fi
}

cmd=${1:-}
shift || true
case $cmd in
  up) up; echo "netlab: up (nat1=$NAT1, nat2=$NAT2)";;
  down) down;;
  exec)
    [ $# -ge 2 ] || die "usage: exec HOST CMD..."
    present "$1" || die "no host $1 (run up)"
    h=$1; shift
    exec ip netns exec "$(nsname "$h")" "$@";;
  nat)
    [ $# = 2 ] || die "usage: nat nat1|nat2 full|restricted|port|symmetric"
    present "$1" || die "no router $1 (run up)"
    set_nat "$1" "$2";;
  status) status;;
  ip) [ $# = 1 ] || die "usage: ip HOST"; addr_of "$1";;
  selftest) selftest;;
  *) sed -n '2,12p' "$0"; exit 2;;
esac
