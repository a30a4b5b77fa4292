#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. gcc build, warnings as errors, every unit and integration test;
#   2. clang build with AddressSanitizer + UBSan, the same suite;
#   3. formatting check (clang-format);
#   4. a quick benchmark run that prints figures (never a pass/fail timing).
# Set VIGIE_TEST_QUICK=1 to skip step 2 while iterating.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

"$here/scripts/deps.sh"

leftovers() {
  pgrep -a -x mosquitto || true
  pgrep -a -f 'build[^ ]*/bin/vigie-' || true
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
