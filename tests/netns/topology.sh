#!/usr/bin/env bash
# A small Internet in network namespaces, for testing how sessions pick their path
# (`tests/tests/netns.rs`, docs/networking.md "Testing NAT traversal"). Needs root, `ip`
# (iproute2) and `iptables`. Nothing here touches the host's own interfaces, routes or
# firewall: every interface is created inside a namespace of this topology, and no
# namespace has a link to the host, so no packet can leave them.
#
#   <id>-pub   203.0.113.1/24 on a bridge: the "public Internet" and the server
#                 (tucdesk-standalone --turn) -- documentation addresses, namespaces only
#   <id>-nata  203.0.113.2 (wan) / 10.0.1.1 (lan): the agent's NAT router
#   <id>-lana  10.0.1.2: the agent's LAN
#   <id>-natb  203.0.113.3 (wan) / 10.0.2.1 (lan): the viewer's NAT router
#   <id>-lanb  10.0.2.2: the viewer's LAN
#
# The clients refuse plain-text gRPC to anything but loopback, so each LAN forwards
# 127.0.0.1:<ports> to 203.0.113.1:<ports> (DNAT in OUTPUT, route_localnet): they dial
# http://127.0.0.1:<port> and the connection still crosses their NAT router.
#
# Usage:
#   topology.sh up   <id> <first-port>:<last-port>   build it (loopback TCP ports forwarded)
#   topology.sh nat  <id> a|b <mode>                 set a NAT router's behaviour:
#       cone          MASQUERADE: endpoint-independent mapping (ports kept), replies only
#                     from where packets went (port-restricted filtering)
#       symmetric     MASQUERADE --random-fully: a new random port for every destination
#       udp-blocked   cone, and every UDP packet from the LAN dropped
#   topology.sh down <id>                            delete every namespace (idempotent)
set -euo pipefail

usage() { sed -n '2,27p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 id=$2
case "$id" in
  *[!a-z0-9]* | "" ) echo "topology.sh: the id must be lower-case letters and digits" >&2; exit 2 ;;
esac
[ ${#id} -le 12 ] || { echo "topology.sh: the id must be at most 12 characters" >&2; exit 2; }
namespaces=("$id-pub" "$id-nata" "$id-lana" "$id-natb" "$id-lanb")

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

up() {
  local ports=$1
  [[ "$ports" =~ ^[0-9]+:[0-9]+$ ]] || usage
  for ns in "${namespaces[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  local pub="$id-pub"
  ip -n "$pub" link add br0 type bridge
  ip -n "$pub" addr add 203.0.113.1/24 dev br0
  ip -n "$pub" link set br0 up
  local side n nat lan
  for side in a b; do
    if [ "$side" = a ]; then n=1; else n=2; fi
    nat="$id-nat$side" lan="$id-lan$side"
    # Both ends of each veth pair are created inside namespaces, never on the host.
    ip -n "$pub" link add "port$side" type veth peer name wan netns "$nat"
    ip -n "$pub" link set "port$side" master br0 up
    ip -n "$nat" addr add "203.0.113.$((n + 1))/24" dev wan
    ip -n "$nat" link set wan up
    ip -n "$nat" link add lan type veth peer name eth0 netns "$lan"
    ip -n "$nat" addr add "10.0.$n.1/24" dev lan
    ip -n "$nat" link set lan up
    in_ns "$nat" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$lan" addr add "10.0.$n.2/24" dev eth0
    ip -n "$lan" link set eth0 up
    ip -n "$lan" route add default via "10.0.$n.1"
    # gRPC to the server through loopback (see above).
    in_ns "$lan" sysctl -qw net.ipv4.conf.all.route_localnet=1
    in_ns "$lan" sysctl -qw net.ipv4.conf.eth0.route_localnet=1
    in_ns "$lan" iptables -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp --dport "$ports" \
      -j DNAT --to-destination 203.0.113.1
    in_ns "$lan" iptables -t nat -A POSTROUTING -s 127.0.0.0/8 -o eth0 \
      -j SNAT --to-source "10.0.$n.2"
    nat_mode "$side" cone
  done
}

nat_mode() {
  local side=$1 mode=$2 nat="$id-nat$1"
  case "$side" in a | b) ;; *) usage ;; esac
  in_ns "$nat" iptables -t nat -F POSTROUTING
  in_ns "$nat" iptables -F FORWARD
  in_ns "$nat" iptables -F INPUT
  # Unsolicited packets from outside are dropped before conntrack keeps them, as a home
  # router's firewall does. Otherwise the entry a peer's early hole-punching packet leaves
  # behind takes the port MASQUERADE would keep for the LAN host's reply, and the NAT
  # picks another one (the hole punch then fails even between two cone NATs).
  in_ns "$nat" iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  case "$mode" in
    cone) in_ns "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE ;;
    symmetric) in_ns "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully ;;
    udp-blocked)
      in_ns "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
      in_ns "$nat" iptables -A FORWARD -i lan -p udp -j DROP
      ;;
    *) usage ;;
  esac
}

down() {
  local ns pid
  for ns in "${namespaces[@]}"; do
    if ip netns list | grep -qw "^$ns"; then
      # Whatever still runs in the namespace was started there for this topology (e.g. a
      # coturn whose tucdesk-standalone was killed): end it, or the namespace lives on.
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$ns" || true
    fi
  done
}

case "$cmd" in
  up) [ $# -eq 3 ] || usage; up "$3" ;;
  nat) [ $# -eq 4 ] || usage; nat_mode "$3" "$4" ;;
  down) down ;;
  *) usage ;;
esac
