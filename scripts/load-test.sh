#!/usr/bin/env bash
# Load test of the HTTP collector with wrk: the accepted events/s one core of
# collector sustains, then the latency at half that load.
#
# The collector is pinned to CPU 0 (taskset), the embedded broker and wrk to
# the other CPUs, so "per core" is literal; the collector's own CPU time is
# read from /proc as well. Events are batched as the browser tracker batches
# them (BATCH per request, default 20); every accepted event was acknowledged
# by the broker before its 202.
#
# Usage: scripts/load-test.sh path/to/activity-tracker [--quick]
#   --quick: 3 s per phase (CI smoke); default 20 s per phase.
# Env: BATCH (events per request, default 20), CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "$1")"
SECONDS_PER_PHASE=20
[ "${2:-}" = "--quick" ] && SECONDS_PER_PHASE=3
BATCH="${BATCH:-20}"
CONNECTIONS="${CONNECTIONS:-32}"
KEY="load-test-key-$$"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
CPUS="$(nproc)"
if [ "$CPUS" -lt 2 ]; then echo "needs at least 2 CPUs (collector on one, broker and wrk on the rest)" >&2; exit 1; fi
OTHERS="1-$((CPUS - 1))"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
accepted() { curl -s "http://$ADDR/metrics" | awk '/^activity_collector_events_accepted_total/ {print $2}'; }

LOG_LEVEL=WARNING taskset -c "$OTHERS" "$BIN" broker >"$WORK/broker.out" 2>"$WORK/broker.err" &
PIDS+=($!)
wait_for "the embedded broker" 60 grep -q KAFKA_BOOTSTRAP_SERVERS "$WORK/broker.out"
BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP_SERVERS=//p' "$WORK/broker.out")"

ADDR="127.0.0.1:$(free_port)"
KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" HTTP_ADDR="$ADDR" COLLECT_WRITE_KEYS="$KEY" COLLECT_RATE_LIMIT=0 \
    LOG_LEVEL=WARNING taskset -c 0 "$BIN" collect >"$WORK/collect.out" 2>"$WORK/collect.err" &
COLLECTOR=$!
PIDS+=("$COLLECTOR")
wait_for "the collector to be ready" 60 curl -sf "http://$ADDR/readyz"

# One phase of wrk; prints the WRK_RESULT line with the collector's accepted
# events/s and CPU cores used appended.
phase() { # seconds delay_ms
    local before_ticks before_events after_ticks after_events line
    before_ticks="$(cpu_ticks "$COLLECTOR")"
    before_events="$(accepted)"
    line="$(WRITE_KEY="$KEY" BATCH="$BATCH" DELAY_MS="$2" taskset -c "$OTHERS" \
        wrk -t1 -c"$CONNECTIONS" -d"$1"s --timeout 10s -s scripts/load/post-events.lua "http://$ADDR" | grep '^WRK_RESULT')"
    after_ticks="$(cpu_ticks "$COLLECTOR")"
    after_events="$(accepted)"
    python3 - "$line" "$before_ticks" "$after_ticks" "$before_events" "$after_events" "$(getconf CLK_TCK)" <<'PY'
import sys
line, t0, t1, e0, e1, hz = sys.argv[1:]
fields = dict(kv.split("=") for kv in line.split()[1:])
seconds = float(fields["seconds"])
cores = (int(t1) - int(t0)) / int(hz) / seconds
events = (float(e1) - float(e0)) / seconds
print(f"{line} events_per_s={events:.0f} collector_cores={cores:.2f} events_per_core_s={events / max(cores, 0.01):.0f}")
PY
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "collector load test: ${SECONDS_PER_PHASE}s per phase, $BATCH events per request, $CONNECTIONS connections, collector pinned to CPU 0 of $CPUS"
phase 2 0 >/dev/null # warm-up: connections, metadata, page cache
MAX="$(phase "$SECONDS_PER_PHASE" 0)"
echo "max:  $MAX"
RATE="$(field "$MAX" events_per_s)"
[ "$(field "$MAX" non2xx)" = 0 ] || { echo "non-2xx answers at full load" >&2; exit 1; }
[ "${RATE%.*}" -gt 0 ] || { echo "nothing accepted" >&2; exit 1; }
# Half load: each connection pauses after each answer so that CONNECTIONS
# connections offer RATE/2 events/s. A 2 s calibration run measures the
# answer time at that load, which the pause then leaves out.
HALF_REQ_PER_S="$(python3 -c "print(max(1, $RATE / 2 / $BATCH))")"
DELAY="$(python3 -c "print(max(1, round($CONNECTIONS * 1000 / $HALF_REQ_PER_S)))")"
CALIBRATION="$(phase 2 "$DELAY")"
DELAY="$(python3 -c "
cycle_ms = $CONNECTIONS * 1000 / max(1, $(field "$CALIBRATION" requests) / $(field "$CALIBRATION" seconds))
print(max(1, round($DELAY - (cycle_ms - $DELAY))))")"
HALF="$(phase "$SECONDS_PER_PHASE" "$DELAY")"
echo "half: $HALF"
[ "$(field "$HALF" non2xx)" = 0 ] || { echo "non-2xx answers at half load" >&2; exit 1; }
printf 'collector: %s events/s accepted per core (%s events/s on %s cores); at %s events/s (half): p50 %s ms, p99 %s ms, p99.9 %s ms\n' \
    "$(field "$MAX" events_per_core_s)" "$(field "$MAX" events_per_s)" "$(field "$MAX" collector_cores)" \
    "$(field "$HALF" events_per_s)" "$(field "$HALF" p50_ms)" "$(field "$HALF" p99_ms)" "$(field "$HALF" p999_ms)"
