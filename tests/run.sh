#!/usr/bin/env bash
# run.sh: every test PigeonAir has, in one run, ending with "N passed, N failed".
#   unit tests (cmocka) on the normal build and again under ASan+UBSan,
#   then the integration tests (pytest, Debian's python3) against real clients.
# Exits non-zero on any failure, or when no test ran at all.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ASAN_BUILD=${2:-build-asan}
PY=/usr/bin/python3
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

echo "== integration tests (kernel backend, and the DPDK-only tests)"
PIGEON_BUILD="$PWD/$BUILD" timeout 1500 $PY -m pytest -q -p no:cacheprovider \
	--junitxml="$results/integration.xml" tests/integration
echo
# The foundation's SMTP tests, TLS and the control socket again over the DPDK
# backend (pigeond on a TAP in a namespace of each test's own).  Needs root.
if [ "$(id -u)" = 0 ]; then
	echo "== integration tests over the DPDK backend"
	PIGEON_BACKENDS=dpdk PIGEON_BUILD="$PWD/$BUILD" timeout 1500 $PY -m pytest -q \
		-p no:cacheprovider --junitxml="$results/integration-dpdk.xml" \
		tests/integration/test_swaks.py tests/integration/test_smtplib.py \
		tests/integration/test_smtp_source.py tests/integration/test_crash.py \
		tests/integration/test_relay.py tests/integration/test_sigterm.py \
		tests/integration/test_protocol.py tests/integration/test_reload.py \
		tests/integration/test_tls.py tests/integration/test_ctl.py
	echo
else
	echo "== integration tests over the DPDK backend: skipped, they need root"
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
xmls = ["integration.xml"] + (["integration-dpdk.xml"] if os.geteuid() == 0 else [])
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
