"""`pigeond -U`: a version-1 spool made by pigeond becomes format 2 with nothing lost
(issue 13; docs/spool-format.md, "Upgrading a version-1 spool").

pigeond (spool.format = 1) takes messages with recipients in every shard
and stops; every copy is read offline (`pigeonctl spool ls/show --dir`).
`pigeond -U` with the same configuration moves every body into the shards'
segment logs; the offline reader then lists the same copies and shows every
one of them byte for byte from the log, and so does pigeond, started again,
which then takes new mail.
"""

import base64
import json
import socket
import subprocess

import helpers


def ctl(path, **req):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(helpers.CTL_TIMEOUT)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 20)
            assert chunk, "control socket closed"
            buf += chunk
    reply = json.loads(buf.split(b"\n", 1)[0])
    assert reply.get("ok"), f"{req}: {reply}"
    return reply["result"]


def send(p, rcpts, count, tag):
    ids = []
    with p.raw() as c:
        c.greet("upgrade.example.org")
        for n in range(count):
            to = [rcpts[n % len(rcpts)], rcpts[(n + 1) % len(rcpts)]]
            content = f"Subject: {tag} {n}\r\n\r\n{tag} body {n}\r\n".encode() * (n + 1)
            head, data = helpers.smtp_message_bytes("old@example.org", to, content)
            c.send(head)
            assert [r[0] for r in c.replies(len(to) + 2)] == [250] * (len(to) + 1) + [354]
            c.send(data)
            code, text = c.reply()
            assert code == 250, text
            ids.append(helpers.queue_id_of(text[-1]))
    return ids


def test_upgrade_to_format_2_keeps_every_copy(pigeond_factory, workdir):
    sock = workdir / "upgrade.sock"
    p = pigeond_factory(ctl__socket=str(sock), spool__format="1")
    spool = p.settings["spool.dir"]
    rcpts = [a for s, addrs in helpers.addresses_in_shards(per_shard=1).items() for a in addrs]
    p.start()
    ids = send(p, rcpts, 8, "before")
    assert p.stop() == 0
    before = {(e["id"], e["shard"]): e for e in helpers.spool_ls(spool)}
    assert {qid for qid, _ in before} == set(ids)
    data = {key: helpers.spool_show(spool, key[0], key[1]) for key in before}

    r = subprocess.run(p.command() + ["-U"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    lines = r.stdout.decode().splitlines()
    assert len(lines) == helpers.SHARDS and all("format 2" in l for l in lines), lines
    moved = sum(int(l.split(", ")[1].split()[0]) for l in lines)
    assert moved == len(before), lines
    offline = {(e["id"], e["shard"]): e for e in helpers.spool_ls(spool)}
    assert sorted(offline) == sorted(before)
    for key in offline:
        assert helpers.spool_show(spool, key[0], key[1]) == data[key], f"{key}: not the bytes"

    p.restart()
    after = {(e["id"], e["shard"]): e for e in ctl(sock, cmd="spool.ls", limit=1000)["entries"]}
    assert sorted(after) == sorted(before)
    for key, e in after.items():
        assert sorted(e["rcpt"]) == sorted(before[key]["rcpt"])
        shown = ctl(sock, cmd="spool.show", id=key[0], shard=key[1])
        assert base64.b64decode(shown["data_base64"]) == data[key], f"{key}: not the bytes"
    new = send(p, rcpts, 2, "after")
    listed = {e["id"] for e in ctl(sock, cmd="spool.ls", limit=1000)["entries"]}
    assert set(new) <= listed
    assert p.stop() == 0
