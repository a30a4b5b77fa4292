#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. gcc build, warnings as errors, every unit and integration test;
#   2. clang build with AddressSanitizer + UBSan, the same suite;
#   3. libFuzzer on every decoder of outside input (30 s each);
#      formatting check (clang-format);
#   4. a quick benchmark run that prints figures (never a pass/fail timing).
# Set VIGIE_TEST_QUICK=1 to skip step 2 while iterating.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

"$here/scripts/deps.sh"

leftovers() {
  pgrep -a -x mosquitto || true
  pgrep -a -f 'build[^ ]*/bin/vigie-' || true
  pgrep -a -x chromium || true
  pgrep -a -f 'dashboard/(serve|tests/driver)\.mjs' || true
}

step() { printf '\n=== %s\n' "$*"; }

step "gcc build (warnings are errors)"
CC=gcc "$here/scripts/build.sh" "$here/build-ci" -DVIGIE_WERROR=ON

step "test suite (gcc build)"
(cd "$here/build-ci" && ctest --output-on-failure -j2 --timeout 300)

if [ "${VIGIE_TEST_QUICK:-0}" != 1 ]; then
  step "clang build with AddressSanitizer and UBSan"
  CC=clang "$here/scripts/build.sh" "$here/build-asan" -DVIGIE_WERROR=ON -DVIGIE_SANITIZE=ON
  step "test suite (ASan + UBSan build)"
  (cd "$here/build-asan" &&
     ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j2 --timeout 600)
fi

if [ "${VIGIE_TEST_QUICK:-0}" != 1 ]; then
  fuzz_seconds=${VIGIE_FUZZ_SECONDS:-30}
  step "fuzzing every decoder of outside input (${fuzz_seconds} s each)"
  CC=clang cmake -S "$here" -B "$here/build-fuzz" -DVIGIE_FUZZ=ON >/dev/null
  mapfile -t fuzzers < <(cd "$here/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
  cmake --build "$here/build-fuzz" -j"$(nproc)" --target "${fuzzers[@]}" >/dev/null
  for f in "$here"/build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$f")
    corpus="$here/tests/fuzz/corpus/${name#fuzz_}"
    scratch=$(mktemp -d)
    # New inputs go to a scratch folder; the committed seeds stay as they are.
    if ! "$f" "$scratch" "$corpus" -max_total_time="$fuzz_seconds" \
         -artifact_prefix="$here/build-fuzz/" -print_final_stats=1 >"$here/build-fuzz/$name.log" 2>&1; then
      tail -40 "$here/build-fuzz/$name.log"
      echo "$name found a crash: see build-fuzz/ for the input"
      rm -rf "$scratch"
      exit 1
    fi
    echo "$name: $(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$here/build-fuzz/$name.log" | grep -Eo '[0-9]+$') runs, no crash"
    rm -rf "$scratch"
  done
fi

step "formatting (clang-format)"
mapfile -t sources < <(git ls-files '*.c' '*.h')
clang-format --dry-run -Werror "${sources[@]}"
echo "formatting ok (${#sources[@]} files)"

step "benchmark figures (quick run)"
"$here/build-ci/bin/vigie-bench" --quick || echo "vigie-bench failed (figures only, not a test)"

left=$(leftovers)
if [ -n "$left" ]; then
  echo "processes left behind by the tests:"
  echo "$left"
  exit 1
fi
echo "all tests passed"
