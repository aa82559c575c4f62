#!/usr/bin/env bash
# run.sh: every test PigeonAir has, in one run, ending with "N passed, N failed".
#   unit tests (cmocka) on the normal build and again under ASan+UBSan,
#   then the integration tests (pytest, Debian's python3) against real clients.
#   The libFuzzer harnesses (tests/fuzz/run.py, clang build $3): every corpus
#   replayed and a few seconds of fuzzing each.
# Exits non-zero on any failure, or when no test ran at all.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ASAN_BUILD=${2:-build-asan}
FUZZ_BUILD=${3:-build-fuzz}
PY=/usr/bin/python3
# --durations: the slowest tests of each run are printed, to keep make test
# under 20 minutes on 2 cores (DEVELOPERS.md).
# Every tool a test needs was installed by tools/setup-deps.sh (make test runs
# it first): a test skipped as "not installed" fails (conftest.py).
export PIGEON_REQUIRE_TOOLS=1
results=$(mktemp -d "${TMPDIR:-/tmp}/pigeon-results.XXXXXX")
trap 'rm -rf "$results"' EXIT

run_unit() { # build-dir label
	local dir=$1 label=$2
	echo "== unit tests ($label)"
	meson test -C "$dir" --suite unit --print-errorlogs --num-processes 2 >"$results/$label.out" 2>&1
	tail -n 15 "$results/$label.out"
	cp "$dir/meson-logs/testlog.json" "$results/$label.json" 2>/dev/null || true
}

run_unit "$BUILD" unit
run_unit "$ASAN_BUILD" unit-asan

# Seeds and regress-* crash reproducers replayed, then FUZZ_TEST_SECONDS of
# fuzzing per harness (11 harnesses: about 1.5 minutes); `make fuzz` goes longer.
echo "== fuzz harnesses (corpora replayed, ${FUZZ_TEST_SECONDS:-4} s of fuzzing each)"
timeout 900 $PY tests/fuzz/run.py "$FUZZ_BUILD" --seconds "${FUZZ_TEST_SECONDS:-4}" \
	--junit "$results/fuzz.xml" | tail -n 40

# Again with the ASan+UBSan pigeond ($ASAN_BUILD): conftest.py fails any test
# during which a sanitized process wrote a report (LeakSanitizer's at exit
# included).  A subset, for time: the whole suite takes about 8 min under ASan
# on 2 cores, this about 3 (kernel 1.8, DPDK 1.4, measured in one make test).
# Kept: the files that feed pigeond hostile or unusual input (protocol,
# smuggling, TLS, limits, PROXY), drive its control socket, reload (runtime
# reference counts), SIGTERM (shutdown paths, then the leak check), hand-off,
# directory and spool faults, JSON logs (network bytes escaped by the log
# thread), screening (DNS answers from the network; connections held until
# their lookups are answered, then freed), content filters (a filter's bytes;
# connections held until the verdict).  Left out: kill -9 tests (a SIGKILLed process
# reports nothing), load tests (smtp_source, loadgen, netem: the same code,
# slower), the DPDK-only TCP tests (tests/fuzz/fuzz_tcp_input runs that stack
# under ASan).  EAL with --no-huge, on a TAP or net_ring, works under ASan
# (checked with the whole suite, DPDK-only tests included); DPDK's own
# libraries are not instrumented, so ASan does not see inside rte_malloc'ed
# memory (mbufs, rings, hashes).
ASAN_KERNEL="test_protocol.py test_smtplib.py test_tls.py test_limits.py test_proxy.py
	test_ctl.py test_ctl_counters.py test_reload.py test_sigterm.py test_handoff.py test_directory.py test_faults.py
	test_json_logs.py test_screen.py test_milter.py test_milter_failures.py"
ASAN_DPDK="test_protocol.py test_smtplib.py test_tls.py test_limits.py test_proxy.py
	test_sigterm.py test_screen.py"

# The integration runs in two streams at once, for time (DEVELOPERS.md: make
# test under 20 minutes on 2 cores): most of a test's time is spent waiting
# on its peers and timers, not on a CPU.  Stream A: every test on the kernel
# backend and the DPDK-only tests.  Stream B: the both_backends tests over
# DPDK, then the ASan subsets.  Each test owns its ports (bound to port 0),
# namespaces and EAL prefixes (named after its pytest's PID), temporary
# directories and peers' configurations, so the two streams never share one.
# Stream B's output is printed after stream A's.  PIGEON_TEST_STREAMS=1 runs
# them one after the other instead.
stream_a() {
	echo "== integration tests (kernel backend, and the DPDK-only tests)"
	PIGEON_BUILD="$PWD/$BUILD" timeout 1500 $PY -m pytest -q --durations=8 -p no:cacheprovider \
		--junitxml="$results/integration.xml" tests/integration
	echo
}
stream_b() {
	# Every test file marked `pytestmark = pytest.mark.both_backends`
	# (conftest.py) again over the DPDK backend (pigeond on a TAP in a
	# namespace of each test's own), and the few also marked dpdk_ipv6 over
	# IPv6 there too (dpdk6: swaks, smtplib, smtp-source -6, STARTTLS; about
	# 15 s).  Needs root.
	if [ "$(id -u)" = 0 ]; then
		echo "== integration tests over the DPDK backend"
		PIGEON_BACKENDS=dpdk,dpdk6 PIGEON_BUILD="$PWD/$BUILD" timeout 1500 $PY -m pytest -q --durations=8 \
			-p no:cacheprovider --junitxml="$results/integration-dpdk.xml" \
			-m both_backends tests/integration
		echo
	else
		echo "== integration tests over the DPDK backend: skipped, they need root"
	fi
	echo "== integration tests under ASan+UBSan (kernel backend, a subset)"
	PIGEON_BUILD="$PWD/$ASAN_BUILD" timeout 900 $PY -m pytest -q --durations=8 -p no:cacheprovider \
		--junitxml="$results/integration-asan.xml" $(printf 'tests/integration/%s ' $ASAN_KERNEL)
	echo
	if [ "$(id -u)" = 0 ]; then
		echo "== integration tests under ASan+UBSan over the DPDK backend (a subset)"
		PIGEON_BACKENDS=dpdk PIGEON_BUILD="$PWD/$ASAN_BUILD" timeout 900 $PY -m pytest -q --durations=8 \
			-p no:cacheprovider --junitxml="$results/integration-asan-dpdk.xml" \
			-m both_backends $(printf 'tests/integration/%s ' $ASAN_DPDK)
		echo
	fi
}
if [ "${PIGEON_TEST_STREAMS:-2}" = 1 ]; then
	stream_a
	stream_b
else
	start=$SECONDS
	stream_b >"$results/stream-b.out" 2>&1 &
	stream_b_pid=$!
	stream_a
	echo "== (stream A done after $((SECONDS - start)) s; waiting for stream B)"
	wait "$stream_b_pid"
	cat "$results/stream-b.out"
	echo "== (both streams done after $((SECONDS - start)) s)"
fi

$PY - "$results" <<'PYEOF'
import json, os, re, sys
import xml.etree.ElementTree as ET
d = sys.argv[1]
passed = failed = skipped = 0
for label in ("unit", "unit-asan"):
    path = os.path.join(d, label + ".json")
    if not os.path.exists(path):
        print(f"{label}: no results (build failed?)"); failed += 1; continue
    for line in open(path):
        t = json.loads(line)
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        # cmocka prints its own per-case totals; count cases, not executables.
        p = re.findall(r"\[  PASSED  \] (\d+) test", out)
        f = re.findall(r"\[  FAILED  \] (\d+) test", out)
        if t["result"] == "OK" and p:
            passed += int(p[-1])
        elif t["result"] == "OK":
            passed += 1
        else:
            failed += max(1, int(f[-1]) if f else 1)
            passed += int(p[-1]) if p else 0
            print(f"{label}: FAILED {t['name']}")
xmls = ["fuzz.xml", "integration.xml", "integration-asan.xml"] + (
    ["integration-dpdk.xml", "integration-asan-dpdk.xml"] if os.geteuid() == 0 else [])
for name in xmls:
    path = os.path.join(d, name)
    if not os.path.exists(path):
        print(f"{name}: no results"); failed += 1; continue
    root = ET.parse(path).getroot()
    for s in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        n, fl, er, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        passed += n - fl - er - sk; failed += fl + er; skipped += sk
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
PYEOF
