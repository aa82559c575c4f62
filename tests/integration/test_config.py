"""Configuration: INI file, -o overrides, and refusal of unknown keys and bad values."""

import socket
import subprocess

import pytest

import helpers


def run_pigeond(server, overrides, timeout=10):
    """Runs pigeond expecting it to exit by itself; kills it (and fails) if it stays up."""
    server.spool_dir.mkdir(parents=True, exist_ok=True)
    server.write_config(server.settings)
    cmd = server.command({"listen": f"127.0.0.1:{helpers.free_port()}", **overrides})
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"pigeond {overrides} still running after {timeout}s; stderr: {err[-2000:]!r}")
    return p.returncode, err.decode(errors="replace")


def names_key(stderr, key):
    if key in stderr:
        return True
    if "." in key:
        sec, k = key.split(".", 1)
        return sec in stderr and k in stderr
    return False


BAD_VALUES = [
    ("spool.shards", "0"),
    ("spool.shards", "many"),
    ("spool.shards", "-4"),
    ("listen", "garbage"),
    ("listen", "127.0.0.1:99999"),
    ("listen", "127.0.0.1"),
    ("workers", "0"),
    ("workers", "two"),
    ("backend", "carrier-pigeon"),
    ("smtp.bare_lf", "maybe"),
    ("smtp.max_message_size", "huge"),
    ("smtp.command_timeout", "soon"),
]


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_bad_value_on_command_line(pigeond_factory, key, value):
    rc, err = run_pigeond(pigeond_factory(), {key: value})
    assert rc != 0, err
    assert names_key(err, key), f"stderr does not name {key}: {err!r}"
    assert "ready listen=" not in err


@pytest.mark.parametrize("key,value", [("spool.shards", "0"), ("listen", "garbage")])
def test_bad_value_in_file(pigeond_factory, key, value):
    server = pigeond_factory(**{key.replace(".", "__"): value})
    server.spool_dir.mkdir(parents=True, exist_ok=True)
    server.write_config(server.settings)
    cmd = server.command()  # no -o at all: the bad value comes from the file
    p = helpers.run_bounded(cmd, timeout=10)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0, err
    assert names_key(err, key), f"stderr does not name {key}: {err!r}"


@pytest.mark.parametrize("key", ["no_such_key", "spool.bogus", "smtp.frobnicate", "nosection.key"])
def test_unknown_key_on_command_line(pigeond_factory, key):
    rc, err = run_pigeond(pigeond_factory(), {key: "1"})
    assert rc != 0, err
    assert names_key(err, key), f"stderr does not name {key}: {err!r}"


@pytest.mark.parametrize("key", ["colour", "smtp.frobnicate"])
def test_unknown_key_in_file(pigeond_factory, key):
    server = pigeond_factory(**{key.replace(".", "__"): "blue"})
    rc, err = run_pigeond(server, {})
    assert rc != 0, err
    assert names_key(err, key), f"stderr does not name {key}: {err!r}"


def test_missing_config_file(pigeond_factory, workdir):
    cmd = [str(helpers.binary("pigeond")), "-c", str(workdir / "does-not-exist.ini")]
    p = helpers.run_bounded(cmd, timeout=10)
    assert p.returncode != 0
    assert "does-not-exist.ini" in p.stderr.decode(errors="replace")


def test_override_beats_file(pigeond_factory):
    file_port = helpers.free_port()
    server = pigeond_factory(listen=f"127.0.0.1:{file_port}", hostname="from-file.test")
    server.start(hostname="from-cli.test", workers=2)  # listen also comes with -o
    assert f"ready listen=127.0.0.1:{server.port} backend=kernel workers=2" in server.log()
    with server.raw() as c:
        banner, _ = c.greet()
        assert banner == ["from-cli.test ESMTP PigeonAir"]
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", file_port)) != 0, "listening on the file's port too"
    assert server.stop() == 0


def test_second_instance_on_a_served_port_fails(pigeond_factory):
    """A second pigeond on a port already served must exit non-zero, not share the
    port (SO_REUSEPORT) with the first and split its clients between two spools."""
    first = pigeond_factory("first").start()
    second = pigeond_factory("second")
    second.spool_dir = first.workdir / "spool2"
    second.settings["spool.dir"] = str(second.spool_dir)
    rc, err = run_pigeond(second, {"listen": f"{first.host}:{first.port}"})
    assert rc != 0, f"second instance on {first.port} exited {rc}: {err[-1000:]}"
    assert first.running()
    with first.raw() as c:
        c.greet()
    assert first.stop() == 0


def test_config_check_loads_the_route_map(binaries, workdir):
    # -t checks relay.routes as the hand-off engine would load it, naming the bad line.
    routes = workdir / "routes"
    pigeond = [str(helpers.binary("pigeond")), "-t", "-o", f"relay.routes={routes}",
               "-o", "spool.shards=4"]

    def check():
        r = subprocess.run(pigeond, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    routes.write_text("shards 0-1 smtp:127.0.0.1:25\nshards 2-3 lmtp:127.0.0.1:24\n")
    rc, out, err = check()
    assert rc == 0 and "configuration ok" in out, err
    routes.write_text("shards 0-1 smtp:127.0.0.1:25\nshard 1 smtp:127.0.0.1:26\n")
    rc, out, err = check()
    assert rc == 2 and f"{routes}: line 2: shard 1 is already routed on line 1" in err, err
    routes.write_text("shard 7 smtp:127.0.0.1:25\n")  # only shards 0-3 exist
    rc, out, err = check()
    assert rc == 2 and f"{routes}: line 1:" in err, err
    routes.unlink()
    rc, out, err = check()
    assert rc == 2 and str(routes) in err, err


def test_config_check_idna_domains_and_postmaster(binaries, workdir):
    # `domains` and `postmaster` take either form of an internationalized domain;
    # -t refuses, naming the key, what IDNA2008 refuses.
    conf = workdir / "idna.ini"

    def check(text):
        conf.write_text(text, encoding="utf-8")
        r = subprocess.run([str(helpers.binary("pigeond")), "-t", "-c", str(conf)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return r.returncode, r.stdout.decode(), r.stderr.decode(errors="replace")

    for text in ("domains = müller.example, example.com\n",
                 "domains = xn--mller-kva.example, MÜLLER.example\n",
                 "domains = example.com\npostmaster = hostmaster@bücher.example\n",
                 "domains =\npostmaster = hostmaster@example.net\n"):
        rc, out, err = check(text)
        assert rc == 0 and "configuration ok" in out, (text, err)
    for text, key in (("domains = ☃.example\n", "domains"),
                      ("domains = xn--garbage.example\n", "domains"),
                      ("domains = mü_ller.example\n", "domains"),
                      ("postmaster = nobody\n", "postmaster"),
                      ("postmaster = pm@☃.example\n", "postmaster")):
        rc, out, err = check(text)
        assert rc == 2 and f"config key '{key}'" in err, (text, rc, err)
