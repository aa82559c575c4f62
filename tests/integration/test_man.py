"""The man pages (docs/man): each renders with man -l without a warning, and
each lists what it documents: every key of core/config.c's table in
pigeond.conf(5), every command of pigeonctl --help in pigeonctl(8), every
option of pigeon-loadgen --help in pigeon-loadgen(1), every option of
pigeond's usage in pigeond(8)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]
PAGES = ["pigeond.8", "pigeond.conf.5", "pigeonctl.8", "pigeon-loadgen.1"]

pytestmark = pytest.mark.skipif(shutil.which("man") is None or shutil.which("scdoc") is None,
                                reason="man (man-db) or scdoc not installed")


def page_path(name):
    p = helpers.build_dir() / "docs" / "man" / name
    assert p.is_file(), f"{p} was not built (meson: docs/man/meson.build needs scdoc)"
    return p


def render(name):
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    r = subprocess.run(["man", "--warnings", "-l", str(page_path(name))], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"{name}: {r.stderr}"
    # No backspace overstriking when not on a terminal; be sure either way.
    return re.sub(r".\x08", "", r.stdout)


@pytest.mark.parametrize("name", PAGES)
def test_renders_without_warnings(name):
    text = render(name)
    assert text.startswith(name.rsplit(".", 1)[0] + "(" + name.rsplit(".", 1)[1] + ")"), text[:80]
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), f"{name}: no {section}"


def config_keys():
    src = (REPO / "core" / "config.c").read_text()
    table = src[src.index("static const struct config_key keys[] = {"):]
    table = table[:table.index("};")]
    keys = re.findall(r'^\s*\{"([a-z0-9_.]+)",', table, re.M)
    assert len(keys) > 50, keys
    return keys


def test_every_config_key_in_pigeond_conf_5():
    text = render("pigeond.conf.5")
    keys_section = text[text.index("\nKEYS\n"):]
    missing = [k for k in config_keys()
               if not re.search(rf"^\s+{re.escape(k)} = ", keys_section, re.M)]
    assert missing == [], f"pigeond.conf(5) does not document {missing}"


def test_pigeonctl_8_lists_every_command():
    out = subprocess.run([str(helpers.binary("pigeonctl")), "--help"], capture_output=True,
                         text=True, timeout=30)
    commands = re.findall(r"^  pigeonctl ((?:[a-z]+ ?)+)", out.stdout + out.stderr, re.M)
    assert len(commands) >= 10, commands
    text = render("pigeonctl.8")
    for c in commands:
        assert re.search(rf"^\s+pigeonctl {re.escape(c.strip())}\b", text, re.M), c


def test_pigeon_loadgen_1_lists_every_option():
    out = subprocess.run([str(helpers.binary("pigeon-loadgen")), "--help"], capture_output=True,
                         text=True, timeout=30)
    options = set(re.findall(r"^  (--[a-z-]+)", out.stdout + out.stderr, re.M))
    assert len(options) >= 15, options
    text = render("pigeon-loadgen.1")
    for o in sorted(options):
        assert re.search(rf"^\s+{o}\b", text, re.M), o


def test_pigeond_8_lists_every_option():
    out = subprocess.run([str(helpers.binary("pigeond")), "-h"], capture_output=True, text=True,
                         timeout=30)
    options = re.findall(r"^  (-[a-zA-Z])\b", out.stdout, re.M)
    assert len(options) >= 4, out.stdout
    text = render("pigeond.8")
    opts = text[text.index("\nOPTIONS\n"):text.index("\nSIGNALS\n")]
    for o in options:
        assert re.search(rf"^\s+{o}\b", opts, re.M), o
