#!/usr/bin/env python3
"""One client program that pushes and pulls the same documents through a Driftless server and a
CouchDB-protocol server (pouchdb-server), and prints documents per second for each, their ratio and
the goals of issue 15. Python 3 standard library only; bench/peers/pouchdb.sh starts the servers.

Phases, each on a fresh Space (Driftless) and a fresh database (CouchDB) per batch size:
  push batch 1     one request per document from `--pushers` threads at once, each with its own
                   keep-alive connection (Driftless: its own Client ID; CouchDB: PUT /db/id)
  push batch N     one thread, one keep-alive connection, N documents per request
                   (Driftless: POST /push with N put Mutations; CouchDB: POST /db/_bulk_docs)
  pull             a full read of the Space / database of the last push phase, as a fresh Client:
                   Driftless pages of `--page` Records until has_more is false; CouchDB
                   GET /db/_changes?include_docs=true&limit=PAGE, paging with `since`

Request bodies are encoded before a phase's clock starts, so the client's JSON encoding is not
timed; sending, waiting, reading and decoding every response are. Every phase is verified before
its figure counts: each answer says the document was written, and afterwards a full untimed read
of each server must hold exactly the documents sent (values compared). A mismatch exits 1.

Exit codes: 0 measured and verified (the verdict line says whether the goals were met); 1 a
server answered wrongly or lost a document; 2 usage error.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

# Goals of issue 15, as Driftless/PouchDB ratios measured in the same run.
GOALS = {"push-1": 2.0, "push-100": 3.0, "pull": 3.0}

COLLECTION = "docs"


class CheckFailed(Exception):
    """A server answered something other than success, or lost or changed a document."""


def documents(count):
    """The same small documents for both servers: (id, value), value about 80 bytes of JSON."""
    return [
        (
            "doc-%06d" % i,
            {"title": "Document number %d" % i, "n": i, "done": i % 2 == 0, "tags": ["peer", "bench"]},
        )
        for i in range(count)
    ]


class Conn:
    """One keep-alive HTTP/1.1 connection to a base URL, with JSON helpers."""

    def __init__(self, base, headers=None):
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.headers = dict(headers or {})

    def request(self, method, path, body=None, expect=(200,)):
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status not in expect:
            raise CheckFailed("%s %s answered %d: %s" % (method, path, resp.status, data[:300]))
        return json.loads(data) if data else None

    def close(self):
        self.conn.close()


class Hlc:
    """A Client's hybrid logical clock stamps, `[HLC-1]`: 12 hex ms, 4 hex counter, the node."""

    def __init__(self, node):
        self.node, self.ms, self.counter = node, 0, 0

    def next(self):
        now = int(time.time() * 1000)
        if now > self.ms:
            self.ms, self.counter = now, 0
        elif self.counter == 0xFFFF:
            self.ms, self.counter = self.ms + 1, 0
        else:
            self.counter += 1
        return "%012x-%04x-%s" % (self.ms, self.counter, self.node)


class Driftless:
    name = "driftless"

    def __init__(self, base, token, prefix, page, pushers):
        self.base, self.token, self.prefix, self.page, self.pushers = base, token, prefix, page, pushers

    def conn(self):
        return Conn(self.base, {"Authorization": "Bearer " + self.token})

    def target(self, batch):
        return "/v1/spaces/%s-b%d" % (self.prefix, batch)

    def prepare(self, docs, batch):
        """The push bodies, one list per pusher; batch 1 gets one Client per pusher."""
        senders = self.pushers if batch == 1 else 1
        bodies = [[] for _ in range(senders)]
        for s in range(senders):
            client_id = "peer-bench-client-%03d" % s
            clock, seq = Hlc(client_id), 0
            mine = docs[s::senders]
            for start in range(0, len(mine), batch):
                mutations = []
                for doc_id, value in mine[start : start + batch]:
                    seq += 1
                    mutations.append(
                        {
                            "op_id": str(uuid.uuid4()),
                            "seq": seq,
                            "collection": COLLECTION,
                            "record_id": doc_id,
                            "hlc": clock.next(),
                            "effect": {"kind": "put", "value": value},
                        }
                    )
                body = json.dumps({"client_id": client_id, "mutations": mutations})
                bodies[s].append((body.encode(), len(mutations)))
        return bodies

    def send(self, conn, batch, body, n):
        answer = conn.request("POST", self.target(batch) + "/push", body)
        results = answer.get("results", [])
        if len(results) != n or any(r.get("status") != "applied" for r in results):
            bad = [r for r in results if r.get("status") != "applied"][:1]
            raise CheckFailed("driftless push: %d results for %d Mutations, first not applied: %s" % (len(results), n, bad))

    def read_all(self, batch):
        """Pulls as a fresh Client (no Cursor) until has_more is false: {id: value}."""
        conn, out, cursor = self.conn(), {}, None
        try:
            while True:
                query = {"limit": self.page}
                if cursor is not None:
                    query["cursor"] = cursor
                page = conn.request("GET", self.target(batch) + "/pull?" + urllib.parse.urlencode(query))
                for rec in page["records"]:
                    if rec.get("deleted") or rec["collection"] != COLLECTION:
                        raise CheckFailed("driftless pull: unexpected record %r" % rec)
                    out[rec["id"]] = rec["value"]
                cursor = page["cursor"]
                if not page["has_more"]:
                    return out
        finally:
            conn.close()


class CouchDb:
    name = "pouchdb"

    def __init__(self, base, prefix, page, pushers):
        self.base, self.prefix, self.page, self.pushers = base, prefix, page, pushers

    def conn(self):
        return Conn(self.base)

    def target(self, batch):
        return "/%s-b%d" % (self.prefix, batch)

    def create(self, batch):
        c = self.conn()
        try:
            c.request("PUT", self.target(batch), expect=(201,))
        finally:
            c.close()

    def prepare(self, docs, batch):
        senders = self.pushers if batch == 1 else 1
        bodies = [[] for _ in range(senders)]
        for s in range(senders):
            mine = docs[s::senders]
            if batch == 1:
                for doc_id, value in mine:
                    bodies[s].append(((doc_id, json.dumps(value).encode()), 1))
            else:
                for start in range(0, len(mine), batch):
                    chunk = [dict(value, _id=doc_id) for doc_id, value in mine[start : start + batch]]
                    bodies[s].append(((None, json.dumps({"docs": chunk}).encode()), len(chunk)))
        return bodies

    def send(self, conn, batch, body, n):
        doc_id, data = body
        if doc_id is not None:
            answer = conn.request("PUT", "%s/%s" % (self.target(batch), doc_id), data, expect=(201,))
            if answer.get("ok") is not True or answer.get("id") != doc_id:
                raise CheckFailed("couchdb put %s: %r" % (doc_id, answer))
            return
        answer = conn.request("POST", self.target(batch) + "/_bulk_docs", data, expect=(201,))
        if len(answer) != n or any(r.get("ok") is not True for r in answer):
            bad = [r for r in answer if r.get("ok") is not True][:1]
            raise CheckFailed("couchdb _bulk_docs: %d answers for %d docs, first not ok: %s" % (len(answer), n, bad))

    def read_all(self, batch):
        """The changes feed with documents, `limit` per page, paging with `since`: {id: value}."""
        conn, out, since = self.conn(), {}, 0
        try:
            while True:
                query = urllib.parse.urlencode({"include_docs": "true", "limit": self.page, "since": since})
                page = conn.request("GET", self.target(batch) + "/_changes?" + query)
                for row in page["results"]:
                    doc = row["doc"]
                    if row.get("deleted") or doc.pop("_id") != row["id"]:
                        raise CheckFailed("couchdb changes: unexpected row %r" % row)
                    doc.pop("_rev")
                    out[row["id"]] = doc
                if not page["results"]:
                    return out
                since = page["last_seq"]
        finally:
            conn.close()


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far, from /proc (0 if unknown)."""
    if not pid:
        return 0.0
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    if not pid:
        return 0.0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fsyncs_per_s(folder, count=200):
    """How many 4 KiB write + fsync rounds a file in FOLDER takes per second: the disk's pace for
    a server that makes each acknowledged write durable."""
    path = os.path.join(folder, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        t0 = time.perf_counter()
        for i in range(count):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            os.fsync(fd)
        return count / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


class Measure:
    """Wall time, the server's CPU and this client's CPU over one timed section."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.t0, self.s0, self.c0 = time.perf_counter(), cpu_seconds(self.pid), sum(os.times()[:2])
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.server_cpu = cpu_seconds(self.pid) - self.s0
        self.client_cpu = sum(os.times()[:2]) - self.c0


def push(server, pid, docs, batch):
    """One timed push phase; returns its Measure. Raises CheckFailed on any wrong answer."""
    bodies = server.prepare(docs, batch)
    conns = [server.conn() for _ in bodies]
    errors = []

    def run(i):
        try:
            for payload, n in bodies[i]:
                server.send(conns[i], batch, payload, n)
        except Exception as e:  # reported below; one failed pusher fails the phase
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    try:
        with Measure(pid) as m:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for c in conns:
            c.close()
    if errors:
        raise CheckFailed("%s push batch %d: %s" % (server.name, batch, errors[0]))
    return m


def verify(server, batch, expected):
    got = server.read_all(batch)
    if got != expected:
        missing = len(set(expected) - set(got))
        changed = sum(1 for k in expected if k in got and got[k] != expected[k])
        raise CheckFailed(
            "%s after push batch %d holds %d documents (%d missing, %d changed, %d unexpected)"
            % (server.name, batch, len(got), missing, changed, len(set(got) - set(expected)))
        )
    return len(got)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--driftless", required=True, help="base URL of the Driftless server")
    p.add_argument("--token", required=True, help="a write Token for the Spaces PREFIX-bN")
    p.add_argument("--pouchdb", required=True, help="base URL of pouchdb-server")
    p.add_argument("--prefix", default="peer", help="Space / database name prefix (default peer)")
    p.add_argument("--docs", type=int, default=10000)
    p.add_argument("--pushers", type=int, default=50, help="concurrent pushers at batch 1")
    p.add_argument("--batches", default="1,100,1000", help="batch sizes, comma-separated")
    p.add_argument("--page", type=int, default=1000, help="documents per pull page")
    p.add_argument("--pull-rounds", type=int, default=5, help="timed full pulls; the median counts")
    p.add_argument("--driftless-pid", type=int, default=0, help="server process, for its CPU time")
    p.add_argument("--pouchdb-pid", type=int, default=0, help="server process, for its CPU time")
    p.add_argument("--fsync-probe", metavar="DIR", help="also measure write+fsync rounds/s of a file in DIR")
    a = p.parse_args()
    try:
        batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        p.error("--batches: not a comma-separated list of integers: %s" % a.batches)
    if a.docs < 1 or a.pushers < 1 or a.page < 1 or a.pull_rounds < 1 or any(b < 1 for b in batches):
        p.error("--docs, --pushers, --page, --pull-rounds and every batch must be at least 1")

    for base in (a.driftless, a.pouchdb):
        try:
            url = urllib.parse.urlsplit(base)
            ok = url.scheme == "http" and url.hostname and url.port
        except ValueError:
            ok = False
        if not ok:
            p.error("%s is not http://HOST:PORT" % base)

    drift = Driftless(a.driftless, a.token, a.prefix, a.page, a.pushers)
    couch = CouchDb(a.pouchdb, a.prefix, a.page, a.pushers)
    pids = {drift.name: a.driftless_pid, couch.name: a.pouchdb_pid}
    docs = documents(a.docs)
    expected = dict(docs)
    rows = []  # (phase, goal key, {server: Measure}, count)

    try:
        for i, batch in enumerate(batches):
            couch.create(batch)
            # Alternate which server goes first, so neither always meets the other's leftovers
            # (LevelDB compaction, SQLite checkpoints, a warm page cache).
            order = [drift, couch] if i % 2 == 0 else [couch, drift]
            measures = {}
            for server in order:
                measures[server.name] = push(server, pids[server.name], docs, batch)
                count = verify(server, batch, expected)
                print("  %s push batch %d: %d documents verified" % (server.name, batch, count), file=sys.stderr)
            phase = "push batch %d" % batch + (" (%d pushers)" % a.pushers if batch == 1 else "")
            rows.append((phase, "push-%d" % batch, measures, a.docs))

        last = batches[-1]
        rounds = {drift.name: [], couch.name: []}
        for r in range(a.pull_rounds):
            for server in ([drift, couch] if r % 2 == 0 else [couch, drift]):
                with Measure(pids[server.name]) as m:
                    got = server.read_all(last)
                if got != expected:
                    raise CheckFailed("%s pull: %d documents, not the %d sent" % (server.name, len(got), a.docs))
                rounds[server.name].append(m)
        median = {k: sorted(v, key=lambda m: m.wall)[len(v) // 2] for k, v in rounds.items()}
        rows.append(("pull (page %d, median of %d)" % (a.page, a.pull_rounds), "pull", median, a.docs))
        print("  both pulls: %d documents verified each round" % a.docs, file=sys.stderr)
    except (CheckFailed, OSError, http.client.HTTPException, ValueError, KeyError) as e:
        print("peer benchmark: %s" % e, file=sys.stderr)
        return 1

    print("%d documents of about %d bytes of JSON each; ratio = Driftless/PouchDB documents per second."
          % (a.docs, len(json.dumps(docs[0][1]))))
    head = "%-32s %14s %14s %8s %8s  %s" % ("phase", "driftless/s", "pouchdb/s", "ratio", "goal", "")
    print(head)
    print("-" * len(head))
    checks = []
    for phase, key, m, n in rows:
        d, q = n / m[drift.name].wall, n / m[couch.name].wall
        ratio = d / q
        goal = GOALS.get(key)
        verdict = "" if goal is None else ("PASS" if ratio >= goal else "FAIL")
        if goal is not None:
            checks.append(("%s >= %gx" % (phase.split(" (")[0], goal), ratio >= goal))
        print("%-32s %14.0f %14.0f %7.2fx %8s  %s"
              % (phase, d, q, ratio, "-" if goal is None else ">= %gx" % goal, verdict))
    print()
    # On a shared machine wall time includes waiting for a CPU; the servers' own CPU time is the
    # steadier figure, so its ratio is shown too (informative, not a goal).
    print("CPU seconds per phase (server process / this client), wall seconds, and server CPU")
    print("ratio PouchDB/Driftless (above 1: Driftless spends less CPU per document):")
    for phase, key, m, n in rows:
        d, q = m[drift.name], m[couch.name]
        # CPU time counts in clock ticks (10 ms); below 5 ticks a ratio says nothing.
        cpu = "%5.2fx" % (q.server_cpu / d.server_cpu) if min(d.server_cpu, q.server_cpu) >= 0.05 else "    -"
        print("  %-30s driftless %5.2f / %5.2f in %6.2f s   pouchdb %5.2f / %5.2f in %6.2f s   cpu %s"
              % (phase, d.server_cpu, d.client_cpu, d.wall, q.server_cpu, q.client_cpu, q.wall, cpu))
    if a.driftless_pid and a.pouchdb_pid:
        print("peak server RSS: driftless %.0f MB, pouchdb-server %.0f MB"
              % (peak_rss_mb(a.driftless_pid), peak_rss_mb(a.pouchdb_pid)))
    if a.fsync_probe:
        print("this disk: %.0f fsyncs/s (4 KiB write + fsync of one file, 200 times, after the phases)"
              % fsyncs_per_s(a.fsync_probe))
    print("note: pouchdb-server (LevelDB via leveldown) acknowledges writes without fsync;")
    print("      Driftless acknowledges a push only once it is durable (fsynced, [PUSH-2]).")
    missed = [g for g, ok in checks if not ok]
    if missed:
        print("FAIL: missed %s" % "; ".join(missed))
    else:
        print("PASS: %s" % "; ".join(g for g, _ in checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
