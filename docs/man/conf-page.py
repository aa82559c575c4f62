#!/usr/bin/env python3
"""conf-page.py: pigeond.conf(5) from docs/configuration.md, through scdoc.

The man page and docs/configuration.md are one text: the introduction, the
example and the key table (every key of core/config.c's table: the unit test
test_config checks the markdown, tests/integration/test_man.py the rendered
page) are taken from the markdown and written as scdoc(5), which scdoc turns
into roff.

usage: conf-page.py CONFIGURATION.md OUTPUT.5 SCDOC
"""

import re
import subprocess
import sys

INLINE = re.compile(r"`([^`]*)`|\[([^\]]*)\]\([^)]*\)|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*")


def esc(text):
    """Plain text for scdoc: its markup characters taken literally."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def inline(md):
    """Markdown spans to scdoc: `code` and **strong** bold, *em* underlined, links as text."""
    out, pos = [], 0
    md = md.replace("\\|", "|")
    for m in INLINE.finditer(md):
        out.append(esc(md[pos:m.start()]))
        code, link, strong, em = m.groups()
        if code is not None:
            out.append("*" + esc(code) + "*" if code.strip() else esc(code))
        elif link is not None:
            out.append(inline(link))
        elif strong is not None:
            out.append("*" + esc(strong) + "*")
        else:
            out.append("_" + esc(em) + "_")
        pos = m.end()
    out.append(esc(md[pos:]))
    return "".join(out)


def cells(row):
    """The cells of a markdown table row; '\\|' is a '|' inside a cell."""
    parts = re.split(r"(?<!\\)\|", row.strip())
    return [c.strip() for c in parts[1:-1]]


def paragraphs(lines):
    """Markdown prose and ``` blocks to scdoc, paragraph by paragraph."""
    out, in_code = [], False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
            out.append("```")
            continue
        out.append(line if in_code else inline(line))
    return out


def main():
    md_path, out_path, scdoc = sys.argv[1:4]
    lines = open(md_path, encoding="utf-8").read().splitlines()
    sections, name = {}, "intro"
    for line in lines:
        m = re.match(r"^(#+) (.*)", line)
        if m and not line.startswith("#!"):
            name = m.group(2).strip().lower()
            sections[name] = []
            continue
        sections.setdefault(name, []).append(line)

    page = ["pigeond.conf(5)", "",
            "# NAME", "", "pigeond.conf - configuration file of pigeond(8), the PigeonAir SMTP "
            "ingest daemon", "",
            "# SYNOPSIS", "", "*/etc/pigeonair/pigeond.conf*", "",
            "# DESCRIPTION", ""]
    page += paragraphs(sections["configuration"])
    page += ["", "# EXAMPLE", ""] + paragraphs(sections["example"])
    page += ["", "# KEYS", "",
             "Each key with its default, and whether a reload (SIGHUP) may change it "
             "(_reload_) or it needs a restart (_restart_).", ""]
    nkeys = 0
    for line in sections["keys"]:
        if not line.startswith("| `"):
            continue
        key, default, change, meaning = cells(line)
        page.append(f"{inline(key)} = {inline(default)} ({esc(change)})")
        page.append("\t" + inline(meaning))
        page.append("")
        nkeys += 1
    if nkeys == 0:
        sys.exit(f"conf-page.py: no key found in {md_path}")
    page += ["# FILES", "",
             "_/etc/pigeonair/pigeond.conf_", "\tThe configuration the packaged service reads "
             "(pigeond.service runs *pigeond -t* on it before every start).", "",
             "# SEE ALSO", "", "*pigeond*(8), *pigeonctl*(8), *pigeon-loadgen*(1)", ""]
    scd = "\n".join(page) + "\n"
    roff = subprocess.run([scdoc], input=scd.encode(), capture_output=True, check=False)
    if roff.returncode != 0:
        sys.exit(f"conf-page.py: scdoc failed: {roff.stderr.decode(errors='replace')}")
    with open(out_path, "wb") as f:
        f.write(roff.stdout)


if __name__ == "__main__":
    main()
