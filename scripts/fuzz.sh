#!/usr/bin/env bash
# Builds and runs every fuzz target in fuzz/ for a bounded time, one after another, then prints
# per target the number of inputs executed and whether anything crashed (docs/fuzzing.md).
#
#   scripts/fuzz.sh                        # every target, 60 s each
#   scripts/fuzz.sh 300                    # every target, 300 s each
#   FUZZ_SECONDS=30 scripts/fuzz.sh protocol_frame line_webhook
#
# Uses cargo-fuzz (libFuzzer) on the stable toolchain with `-s none` (no sanitizer: the gateway
# forbids unsafe code, and sanitizers need nightly), in release mode with debug assertions, so
# integer overflow panics too. Installs cargo-fuzz if it is missing. New interesting inputs go
# to fuzz/corpus/<target>/ (ignored by git); the checked-in seeds in fuzz/seeds/<target>/ are
# read, never written. A crashing input is saved in fuzz/artifacts/<target>/ and makes the
# script exit 1; replay it with `cd fuzz && cargo fuzz run -s none -a <target> <file>`.
# Not part of scripts/test.sh: fuzzing for minutes is not a CI step.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
# Largest websocket frame the gateway accepts (protocol::MAX_FRAME_BYTES); webhook bodies in the
# tests are smaller, so one bound serves every target.
max_len="${FUZZ_MAX_LEN:-16384}"
flags=(-s none -a)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> Installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi

echo "==> Building ${targets[*]}"
for t in "${targets[@]}"; do
  cargo fuzz build "${flags[@]}" "$t"
done

declare -A runs result
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  dict=()
  [[ -f "dicts/$t.dict" ]] && dict=(-dict="dicts/$t.dict")
  seeds=()
  [[ -d "seeds/$t" ]] && seeds=("seeds/$t")
  marker="artifacts/$t/.started"
  touch "$marker"
  echo "==> Fuzzing $t for ${seconds}s"
  set +e
  cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1 \
    "${dict[@]}" >"$log" 2>&1
  rc=$?
  set -e
  tail -n 3 "$log" | sed 's/^/    /'
  runs[$t]="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -n1 | awk '{print $2}')"
  [[ -n "${runs[$t]}" ]] || runs[$t]="$(grep -o '^Done [0-9]* runs' "$log" | awk '{print $2}')"
  crashes=$(find "artifacts/$t" -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
  if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
    result[$t]="CRASH (exit $rc, $crashes artifact(s) in fuzz/artifacts/$t, log $log)"
    status=1
  else
    result[$t]="no crash"
  fi
done

echo
echo "==> Summary (${seconds}s per target)"
printf '%-20s %15s  %s\n' target executions result
for t in "${targets[@]}"; do
  printf '%-20s %15s  %s\n' "$t" "${runs[$t]:-?}" "${result[$t]}"
done
exit $status
