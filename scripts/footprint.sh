#!/usr/bin/env bash
# Measures the footprint figures quoted in the README: RSS of a seed and of a peer with
# 4+ neighbours, and an idle peer's CPU time and wake-ups over one minute.
# Real processes on 127.0.0.1; stops everything it started (by PID) when done.
# Usage: scripts/footprint.sh [idle-seconds]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-60}
cargo build --release -q
bin=target/release/gossipd
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

base=$((20000 + RANDOM % 20000))
printf '127.0.0.1:%d\n127.0.0.1:%d\n' "$base" "$((base + 1))" > "$dir/config.txt"
for i in 0 1; do
  "$bin" seed --listen "127.0.0.1:$((base + i))" --log-dir "$dir/logs" >/dev/null 2>&1 &
  pids+=($!)
done
sleep 0.3
for i in $(seq 2 9); do
  "$bin" peer --listen "127.0.0.1:$((base + i))" --config "$dir/config.txt" --log-dir "$dir/logs" \
    --gossip-interval 1s --messages 5 --events "$dir/events-$i.jsonl" >/dev/null 2>&1 &
  pids+=($!)
done
sleep 10   # 5 messages at 1s each, then only liveness checks (every 13s) remain

field() { awk -v k="$2" '$1 == k {print $2}' "/proc/$1/status"; }
# 0 when the peer has not written its events file (yet).
neighbors() { local n; n=$(grep -c '"event":"neighbor_connected"' "$dir/events-$1.jsonl" 2>/dev/null); echo "${n:-0}"; }
seed_pid=${pids[0]}
echo "seed  pid $seed_pid: VmRSS $(field "$seed_pid" VmRSS:) KiB, VmHWM $(field "$seed_pid" VmHWM:) KiB"
best=2
for i in $(seq 2 9); do [ "$(neighbors "$i")" -gt "$(neighbors "$best")" ] && best=$i; done
peer_pid=${pids[$best]}
echo "peer  pid $peer_pid: $(neighbors "$best") neighbours, VmRSS $(field "$peer_pid" VmRSS:) KiB, VmHWM $(field "$peer_pid" VmHWM:) KiB, threads $(field "$peer_pid" Threads:)"

cpu() { awk '{print $1}' "/proc/$1/schedstat"; }   # nanoseconds on CPU
wakes() { field "$1" voluntary_ctxt_switches:; }
c0=$(cpu "$peer_pid"); w0=$(wakes "$peer_pid")
sleep "$idle"
c1=$(cpu "$peer_pid"); w1=$(wakes "$peer_pid")
echo "idle  peer over ${idle}s: CPU $(( (c1 - c0) / 1000 )) us, $((w1 - w0)) wake-ups (liveness every 13s)"
