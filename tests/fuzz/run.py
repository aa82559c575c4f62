#!/usr/bin/python3
"""run.py: runs the libFuzzer harnesses of a -Dfuzz=true build.

    tests/fuzz/run.py BUILD_DIR [--seconds N] [--keep] [--junit FILE] [TARGET...]

For each harness (all of them by default):
  1. replay: every file of tests/fuzz/corpus/TARGET/ (seeds and regress-*
     crash reproducers) is run once; any crash, sanitizer report, leak or
     timeout fails it;
  2. fuzz: libFuzzer mutates from that corpus for N seconds (0: skip), with
     tests/fuzz/TARGET.dict when there is one.  New inputs go to a scratch
     directory (with --keep: BUILD_DIR/fuzz-corpus/TARGET, kept between runs),
     never into the repository; a crash leaves its input in
     BUILD_DIR/fuzz-artifacts/TARGET/ and fails the step.  A crash becomes a
     regression seed by copying it to tests/fuzz/corpus/TARGET/regress-NAME
     once the bug is fixed.
Prints one line per step and "N passed, N failed"; --junit writes the steps
as JUnit XML for tests/run.sh's count.  Exit status 1 on any failure.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["smtp_session", "tcp_input", "tls_filter", "proxy_header", "config", "route_map",
           "directory_file", "spool_record", "seglog", "dns_packet",
           "milter_reply"]
# Sanitizer reports end the run with a distinct status; libFuzzer prints the input.
ENV = dict(os.environ,
           ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:symbolize=1",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def run(cmd, log, timeout):
    start = time.monotonic()
    with open(log, "w") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return rc, time.monotonic() - start


def tail(log, n=25):
    with open(log, errors="replace") as f:
        lines = f.readlines()
    keep = [l for l in lines if "ERROR" in l or "SUMMARY" in l or "runtime error" in l
            or l.lstrip().startswith("#") and " in " in l]
    return "".join((keep or lines)[-n:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--junit")
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    targets = args.targets or TARGETS
    logs = os.path.join(build, "fuzz-logs")
    os.makedirs(logs, exist_ok=True)
    cases = []  # (name, seconds, failure message or None)

    for t in targets:
        exe = os.path.join(build, "tests", "fuzz", "fuzz_" + t)
        seeds = sorted(glob.glob(os.path.join(HERE, "corpus", t, "*")))
        if not os.access(exe, os.X_OK):
            cases.append((t + ".replay", 0, f"{exe} not built (ninja -C {args.build} fuzz)"))
            continue
        if not seeds:
            cases.append((t + ".replay", 0, f"no seeds in tests/fuzz/corpus/{t}"))
            continue
        log = os.path.join(logs, t + ".replay.log")
        rc, secs = run([exe, "-timeout=25"] + seeds, log, 600)
        cases.append((t + ".replay", secs,
                      None if rc == 0 else f"rc={rc}, log {log}:\n{tail(log)}"))
        if args.seconds <= 0:
            continue
        if args.keep:
            work = os.path.join(build, "fuzz-corpus", t)
            os.makedirs(work, exist_ok=True)
        else:
            work = tempfile.mkdtemp(prefix=f"pa-fuzz-{t}.")
        art = os.path.join(build, "fuzz-artifacts", t) + "/"
        os.makedirs(art, exist_ok=True)
        cmd = [exe, f"-max_total_time={args.seconds}", "-timeout=10", "-rss_limit_mb=2048",
               "-print_final_stats=1", f"-artifact_prefix={art}", work,
               os.path.join(HERE, "corpus", t)]
        d = os.path.join(HERE, t + ".dict")
        if os.path.exists(d):
            cmd.insert(1, f"-dict={d}")
        log = os.path.join(logs, t + ".fuzz.log")
        rc, secs = run(cmd, log, args.seconds + 120)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        msg = None
        if rc != 0:
            found = sorted(glob.glob(art + "*"), key=os.path.getmtime)
            msg = (f"rc={rc}, input {found[-1] if found else '(none)'}, log {log}:\n"
                   f"{tail(log)}\nreproduce: {exe} INPUT; once fixed, copy INPUT to "
                   f"tests/fuzz/corpus/{t}/regress-NAME")
        cases.append((t + ".fuzz", secs, msg))

    passed = failed = 0
    for name, secs, msg in cases:
        print(f"fuzz {name}: {'ok' if msg is None else 'FAILED'} ({secs:.1f} s)")
        if msg:
            print("  " + msg.replace("\n", "\n  "))
            failed += 1
        else:
            passed += 1
    print(f"{passed} passed, {failed} failed")
    if args.junit:
        suite = ET.Element("testsuite", name="fuzz", tests=str(len(cases)),
                           failures=str(failed), errors="0", skipped="0")
        for name, secs, msg in cases:
            c = ET.SubElement(suite, "testcase", classname="fuzz", name=name,
                              time=f"{secs:.3f}")
            if msg:
                ET.SubElement(c, "failure", message=msg.splitlines()[0]).text = msg
        ET.ElementTree(suite).write(args.junit, encoding="utf-8", xml_declaration=True)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
