#!/usr/bin/env python3
"""help-page.py: a man page from an scdoc template and the program's --help.

The template (NAME.N.scd) is written by hand; its line "@HELP@" is replaced
by the program's own --help text turned into scdoc(5): an indented "TERM
  description" line, or a TERM line followed by a more indented description,
becomes a term with an indented paragraph, and a "Heading:" line a
subsection.  So the commands and options the page lists are those the
binary takes: the page cannot drift from the program.

usage: help-page.py TEMPLATE.scd PROGRAM OUTPUT SCDOC
"""

import os
import re
import subprocess
import sys


def esc(text):
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def convert(help_text):
    out = []
    prose = False  # the last line out is a paragraph of plain text, which may go on
    lines = help_text.splitlines()
    if lines and lines[0].startswith("usage:"):
        lines = lines[1:]  # the template's SYNOPSIS says it
    for line in lines:
        if not line.strip():
            out.append("")
            prose = False
            continue
        if prose and not line.startswith(" "):
            out[-1] += " " + esc(line.strip())
            continue
        prose = False
        m = re.match(r"^ {2,4}(\S.*?)\s{2,}(\S.*)$", line)
        if m:  # "  --opt ARG    what it does"
            out += ["", "*" + esc(m.group(1)) + "*", "\t" + esc(m.group(2))]
            continue
        m = re.match(r"^ {5,}(\S.*)$", line)
        if m and out and out[-1].startswith("\t"):  # more of the description
            out[-1] += " " + esc(m.group(1))
            continue
        if m and out and out[-1].startswith("*"):  # the description under a term
            out.append("\t" + esc(m.group(1)))
            continue
        m = re.match(r"^ {2,4}(\S.*)$", line)
        if m:  # a term alone on its line
            out += ["", "*" + esc(m.group(1)) + "*"]
            continue
        m = re.match(r"^(\S[^:]*):$", line)
        if m and len(line) <= 40:
            out += ["", "## " + m.group(1).upper(), ""]
            continue
        out += ["", esc(line.strip())]
        prose = True
    return "\n".join(out)


def main():
    template, program, out_path, scdoc = sys.argv[1:5]
    r = subprocess.run([os.path.abspath(program), "--help"], capture_output=True, text=True, timeout=30)
    help_text = r.stdout or r.stderr
    if "usage" not in help_text:
        sys.exit(f"help-page.py: {program} --help printed no usage")
    scd = open(template, encoding="utf-8").read()
    if "@HELP@" not in scd:
        sys.exit(f"help-page.py: no @HELP@ line in {template}")
    scd = scd.replace("@HELP@", convert(help_text))
    roff = subprocess.run([scdoc], input=scd.encode(), capture_output=True)
    if roff.returncode != 0:
        sys.exit(f"help-page.py: scdoc failed on {template}: "
                 f"{roff.stderr.decode(errors='replace')}")
    with open(out_path, "wb") as f:
        f.write(roff.stdout)


if __name__ == "__main__":
    main()
