#!/usr/bin/env bash
# Runs the stress targets of issue 3 (`gossipd swarm` and `gossipd sim`, rng seed 1) and
# prints one Markdown table row per target, read from each run's --report JSON.
#
# Usage: scripts/bench-table.sh [--quick] [--timeout SECONDS] [--keep] [FILTER]
#   --quick      run every target with a tenth of its peers (a fast check, not the figures)
#   --timeout S  bound each run to S seconds (default 600); a run past it gets exit 124
#   --keep       keep the reports, logs and /usr/bin/time output (the directory is printed)
#   FILTER       run only targets whose name matches this bash regex (e.g. sim, swarm-1k$)
#
# The table goes to stdout, progress to stderr. A target whose command fails still gets a
# row with its exit code (1 from swarm/sim means "deliveries missing"; the report is then
# still read), and the script exits 1 once the table is printed. Every run is its own
# process group under `timeout`, and anything left in that group afterwards is killed,
# so no process outlives the script.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0"; }

quick=0
keep=0
limit=600
filter=''
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    --timeout)
      [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "bench-table: --timeout needs a number of seconds" >&2; exit 2; }
      limit=$2
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "bench-table: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      [[ -z $filter ]] || { echo "bench-table: one FILTER only" >&2; exit 2; }
      filter=$1
      ;;
  esac
  shift
done

cargo build --release -q
bin=$PWD/target/release/gossipd
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-table.XXXXXX")
manifest=$dir/manifest.tsv
: >"$manifest"
child=''
failed=0

# Ends what is left of a run's process group: members still dying from timeout's signal
# get a moment, stragglers (workers that outlived their supervisor) get TERM, then KILL.
reap_group() {
  local pgid=$1 signal tries
  for signal in '' TERM KILL; do
    if [[ -n $signal ]]; then
      echo "bench-table: processes left in group $pgid after the run; sending $signal" >&2
      kill "-$signal" -- "-$pgid" 2>/dev/null || true
    fi
    for ((tries = 0; tries < 20; tries++)); do
      kill -0 -- "-$pgid" 2>/dev/null || return 0
      sleep 0.1
    done
  done
}

cleanup() {
  if [[ -n $child ]]; then
    kill -TERM "$child" 2>/dev/null || true # timeout passes it on to its whole group
    wait "$child" 2>/dev/null || true
    reap_group "$child"
  fi
  if ((keep)); then
    echo "bench-table: reports kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# target NAME SUBCOMMAND ARGS...: runs `gossipd SUBCOMMAND ARGS... --rng-seed 1 --report
# FILE` (with --quick, a tenth of the peers) and records the outcome for the table.
target() {
  local name=$1
  shift
  if [[ -n $filter && ! $name =~ $filter ]]; then
    return 0
  fi
  local args=("$@") i
  if ((quick)); then
    for ((i = 0; i < ${#args[@]} - 1; i++)); do
      if [[ ${args[i]} == --peers ]]; then
        args[i + 1]=$((args[i + 1] / 10))
      fi
    done
  fi
  local report=$dir/$name.json
  echo "bench-table: $name: gossipd ${args[*]}" >&2
  # timeout makes itself a process-group leader and signals the whole group (the swarm's
  # workers included) on expiry or when it is itself terminated; KILL follows 15 s later.
  timeout --kill-after=15 "$limit" \
    /usr/bin/time -v -o "$dir/$name.time" \
    "$bin" "${args[@]}" --rng-seed 1 --report "$report" \
    >"$dir/$name.out" 2>"$dir/$name.err" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  reap_group "$child"
  child=''
  if ((rc != 0)); then
    echo "bench-table: $name: exit $rc; last lines of its stderr:" >&2
    tail -n 3 "$dir/$name.err" | sed 's/^/    /' >&2
  fi
  printf '%s\t%s\t%s\n' "$name" "$rc" "${args[*]}" >>"$manifest"
  ((rc == 0)) || failed=$((failed + 1))
}

target swarm-10k         swarm --seeds 3 --peers 10000 --originators 100 --messages 10 --gossip-interval 5s
target swarm-1k          swarm --seeds 3 --peers 1000 --messages 10 --liveness-interval 2s
target swarm-2k-failures swarm --seeds 3 --peers 2000 --originators 100 --messages 10 --gossip-interval 5s --kill 0.1@25s --freeze 0.05@25s
target sim-100k-lossy    sim --seeds 3 --peers 100000 --originators 100 --messages 1 --loss 0.01 --latency 1ms..20ms
target sim-1m            sim --seeds 3 --peers 1000000 --originators 10 --messages 1

if [[ ! -s $manifest ]]; then
  echo "bench-table: no target matches '$filter'" >&2
  exit 2
fi

if ((quick)); then
  printf '_Quick run: every target with a tenth of its peers._\n\n'
fi
python3 - "$dir" "$manifest" <<'PY'
"""Prints the Markdown table from the manifest (name, exit code, command) and the
reports and /usr/bin/time -v outputs beside it."""
import json
import math
import os
import sys

out_dir, manifest = sys.argv[1], sys.argv[2]

COLUMNS = [
    "target", "command", "exit", "peers", "coverage", "coverage after failures",
    "latency p50 / p99 ms", "last delivery after last creation ms", "false dead reports",
    "detection / removal max ms", "CPU µs per delivery", "frames per write",
    "RSS bytes per peer", "wall s", "peak RSS MiB",
]
DASH = "-"
TIME_MARK = " †"


def load_report(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except FileNotFoundError:
        return None, "no report"
    except (OSError, ValueError) as e:
        return None, f"unreadable report ({e.__class__.__name__})"


def load_time(path):
    """Peak RSS (KiB, of the largest single process) and wall seconds from time -v."""
    facts = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return facts
    for line in lines:
        key, _, value = line.strip().rpartition(": ")
        if key == "Maximum resident set size (kbytes)":
            facts["max_rss_kib"] = int(value)
        elif key in ("User time (seconds)", "System time (seconds)"):
            facts["cpu_s"] = facts.get("cpu_s", 0.0) + float(value)
        elif key.startswith("Elapsed (wall clock) time"):
            seconds = 0.0
            for part in value.split(":"):
                seconds = seconds * 60 + float(part)
            facts["wall_s"] = seconds
    return facts


def get(d, *path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def pct(x):
    """Truncated, so that anything short of every delivery never reads as 100%."""
    if x is None:
        return DASH
    if x >= 1.0:
        return "100%"
    return f"{math.floor(x * 100_000) / 1000:.3f}%"


def num(x, digits=0):
    if x is None:
        return DASH
    return f"{x:,.{digits}f}"


def exit_text(rc):
    return {"0": "0", "124": "124 (timeout)", "137": "137 (killed)"}.get(rc, rc)


def detection_removal(r):
    f = r.get("failures") or {}
    if not f.get("killed") and not f.get("frozen"):
        return DASH
    det = num(get(f, "detection_ms", "max"))
    rem = num(get(f, "removal_ms", "max"))
    text = f"{det} / {rem}"
    missed = [
        f"{f[k]} {label}"
        for k, label in (("not_detected", "undetected"), ("not_removed", "not removed"))
        if f.get(k)
    ]
    return text + (f" ({', '.join(missed)})" if missed else "")


def peak_rss(r, t):
    """The sum of the workers' peaks when the report has them (a swarm's processes),
    else the largest process's peak as /usr/bin/time saw it."""
    workers = (r or {}).get("peak_rss_per_worker_kib") or []
    if len(workers) > 1:
        return f"{num(sum(workers) / 1024)} ({len(workers)} workers)"
    if workers:
        return num(workers[0] / 1024)
    if "max_rss_kib" in t:
        return num(t["max_rss_kib"] / 1024) + TIME_MARK
    return DASH


def measured(value, fallback, digits=0):
    """The report's figure; when it is missing or 0 (not measured), /usr/bin/time's."""
    if value:
        return num(value, digits)
    if fallback is not None:
        return num(fallback, digits) + TIME_MARK
    return num(value, digits)


def single_process(r):
    return (r.get("workers") or 1) <= 1


def cpu_fallback(r, t):
    firsts = r.get("gossip_first_receipts") or r.get("deliveries_made")
    if "cpu_s" in t and firsts and single_process(r):
        return t["cpu_s"] * 1e6 / firsts
    return None


def rss_fallback(r, t):
    if "max_rss_kib" in t and r.get("peers") and single_process(r):
        return t["max_rss_kib"] * 1024 / r["peers"]
    return None


def row(name, rc, command):
    r, problem = load_report(os.path.join(out_dir, name + ".json"))
    t = load_time(os.path.join(out_dir, name + ".time"))
    cells = [name, f"`gossipd {command}`", exit_text(rc)]
    if r is None:
        cells.append(problem)
        cells += [DASH] * (len(COLUMNS) - len(cells) - 2)
        cells += [measured(None, t.get("wall_s"), 1), peak_rss(None, t)]
        return cells
    lat = r.get("latency_ms") or {}
    cells += [
        num(r.get("peers")),
        pct(r.get("coverage")),
        pct(r.get("coverage_after_failures")),
        f"{num(lat.get('p50'))} / {num(lat.get('p99'))}",
        num(r.get("last_delivery_after_last_creation_ms")),
        num(r.get("false_dead_reports")),
        detection_removal(r),
        measured(r.get("cpu_us_per_delivery"), cpu_fallback(r, t), 2),
        num(r.get("frames_per_write"), 2),
        measured(r.get("rss_per_peer_bytes"), rss_fallback(r, t)),
        measured(r.get("wall_s"), t.get("wall_s"), 1),
        peak_rss(r, t),
    ]
    return cells


def main():
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" if i < 2 else "--:" for i in range(len(COLUMNS))) + "|")
    with open(manifest) as f:
        for line in f:
            name, rc, command = line.rstrip("\n").split("\t")
            cells = [c.replace("|", "\\|") for c in row(name, rc, command)]
            print("| " + " | ".join(cells) + " |")
    print()
    print(
        "Coverage is truncated, never rounded up to 100%. Peak RSS is the sum over a"
        " swarm's workers. †: not in the report (missing or 0), taken from /usr/bin/time -v"
        " instead: the whole process's CPU per first receipt, its peak RSS per peer."
    )


main()
PY

if ((failed)); then
  echo "bench-table: $failed target(s) exited non-zero (see the exit column)" >&2
  exit 1
fi
