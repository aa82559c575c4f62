"""A small milter (the filter side of the Sendmail/Postfix milter protocol,
version 6) for the tests: it records what pigeond sends and answers at end
of message as the test tells it, so that every verdict and edit pigeond must
handle can be produced on demand.  rspamd is the real peer (test_rspamd.py);
this one does what rspamd will not do on request: discard, tempfail, a
multi-line reply, answering every step, a slow answer, a broken packet.

    with MilterPeer() as m:                  # 127.0.0.1, a free port
        m.on_eom = lambda msg: [("h", b"X-A\\0v\\0"), ("c", b"")]
        ... pigeond with milter.servers=inet:127.0.0.1:{m.port} ...
        m.messages[0]["headers"], m.messages[0]["body"], m.messages[0]["macros"]

One thread accepts, one thread per connection; every socket has a timeout,
so nothing here can hang a test; close() stops it all.
"""

import socket
import struct
import threading
import time

import helpers

# SMFIP_NR_* for every step but end of message: rspamd's choice.
NR_ALL = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x80 | 0x40000 | 0x80000
ACTIONS = 0x01 | 0x10 | 0x20  # add and change headers, quarantine


def packet(code, data=b""):
    return struct.pack(">I", len(data) + 1) + code.encode() + data


def header(name, value, index=None):
    data = (struct.pack(">I", index) if index is not None else b"") + \
        name.encode() + b"\0" + value.encode() + b"\0"
    return data


class MilterPeer:
    def __init__(self, host="127.0.0.1", protocol=NR_ALL, actions=ACTIONS):
        self.host = host
        self.port = helpers.free_port(host)
        self.protocol = protocol
        self.actions = actions
        self.messages = []     # one dict per end of message
        self.connections = 0   # accepted
        self.on_eom = None     # msg -> [(code, data)...]; default: continue
        self.eom_delay = 0.0   # seconds before answering end of message
        self.on_command = None  # (cmd, msg) -> (delay, [(code, data)...]) or None: continue
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, self.port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.threads = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        self.accepter.join(timeout=5)
        for t in self.threads:
            t.join(timeout=5)

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _recv(self, c, n):
        out = b""
        while len(out) < n:
            try:
                chunk = c.recv(n - len(out))
            except socket.timeout:
                if self.stopping:
                    return None
                continue
            if not chunk:
                return None
            out += chunk
        return out

    def _serve(self, c):
        c.settimeout(0.5)
        msg = self._new()
        try:
            while not self.stopping:
                head = self._recv(c, 4)
                if head is None:
                    return
                (n,) = struct.unpack(">I", head)
                body = self._recv(c, n)
                if body is None:
                    return
                cmd, data = chr(body[0]), body[1:]
                reply = self._handle(msg, cmd, data)
                if cmd == "K":
                    msg = self._new()
                if cmd == "Q":
                    return
                if reply:
                    c.sendall(reply)
        finally:
            c.close()

    @staticmethod
    def _new():
        return {"macros": {}, "connect": None, "helo": None, "mail": None, "rcpt": [],
                "headers": [], "body": b"", "commands": []}

    def _needs_reply(self, cmd):
        nr = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "T": 0x10000,
              "L": 0x80, "N": 0x40000, "B": 0x80000}
        return cmd in nr and not (self.protocol & nr[cmd])

    def _handle(self, msg, cmd, data):
        msg["commands"].append(cmd)
        if cmd == "O":
            version, actions, protocol = struct.unpack(">III", data[:12])
            msg["offered"] = (version, actions, protocol)
            return packet("O", struct.pack(">III", 6, self.actions, self.protocol))
        if cmd == "D":
            parts = data[1:].split(b"\0")
            for k, v in zip(parts[0::2], parts[1::2]):
                msg["macros"][k.decode()] = v.decode()
        elif cmd == "C":
            msg["connect"] = data
        elif cmd == "H":
            msg["helo"] = data.rstrip(b"\0").decode()
        elif cmd == "M":
            msg["mail"] = data.split(b"\0")[0].decode()
        elif cmd == "R":
            msg["rcpt"].append(data.split(b"\0")[0].decode())
        elif cmd == "L":
            name, value = data.split(b"\0")[:2]
            msg["headers"].append((name.decode(), value.decode()))
        elif cmd == "B":
            msg["body"] += data
        elif cmd == "E":
            with self.lock:
                self.messages.append(dict(msg))
            if self.eom_delay:
                time.sleep(self.eom_delay)
            actions = self.on_eom(msg) if self.on_eom else [("c", b"")]
            return b"".join(packet(code, d) for code, d in actions)
        if self._needs_reply(cmd):
            early = self.on_command(cmd, msg) if self.on_command else None
            if early:
                time.sleep(early[0])
                return b"".join(packet(code, d) for code, d in early[1])
            return packet("c")
        return b""
