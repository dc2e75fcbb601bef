#!/usr/bin/env python3
"""A minimal, complete client-kit adapter (spec/13-client-adapter.md) in Python.

It wraps a Client that has a command line -- here `driftless client` -- to show the whole
protocol in one page: read one JSON request per line, answer one JSON line with the same id.
A team with a Swift or Kotlin Client writes the same loop around its library calls instead of
subprocess calls. Run it with:

    driftless conformance client --adapter 'python3 examples/client-adapter/adapter.py'
"""
import json
import subprocess
import sys

session = {}


def client(*args):
    """One `driftless client` command on the open store; (exit code, stdout)."""
    s = session
    cmd = ["driftless", "client", "--store", s["store"], "--server", s["server"],
           "--token", s["token"], "--space", s["space"], "--format", "json",
           "--retry", "announced", *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr.strip()


def write_args(req):
    e, c, i = req["effect"], req["collection"], req["record_id"]
    kind = e["kind"]
    if kind == "put":
        return ["put", c, i, json.dumps(e["value"]), "--priority", str(req.get("priority", 0))]
    if kind == "patch":
        return ["patch", c, i, json.dumps(e.get("set", {}))] + \
            [a for f in e.get("unset", []) for a in ("--unset", f)]
    if kind == "delete":
        return ["delete", c, i]
    if kind == "increment":
        return ["increment", c, i, e["field"], str(e["by"])]
    if kind in ("set_add", "set_remove"):
        return [kind.replace("_", "-"), c, i, e["field"]] + [json.dumps(x) for x in e["elements"]]
    if kind == "resolve":
        return ["resolve", c, i, e["field"], json.dumps(e["value"])]
    raise ValueError(f"unknown effect kind {kind}")


def handle(req):
    op = req.get("op")
    if op == "open":
        session.update({k: req[k] for k in ("store", "server", "token", "space")})
        code, out, err = client("status")
        if code != 0:
            return None, ("failed", err)
        return {"client_id": json.loads(out)["client_id"]}, None
    if not session:
        return None, ("invalid", "send open first")
    if op == "write":
        code, out, err = client(*write_args(req))
        if code != 0:
            return None, ("invalid" if code == 2 else "failed", err)
        return {"op_id": json.loads(out)["op_id"]}, None
    if op == "sync":
        if req.get("mode", "until_done") != "until_done":
            return None, ("unsupported", "only sync until done")
        code, _, err = client("sync")
        return ({"done": True}, None) if code == 0 else (None, ("failed", err))
    if op == "get":
        code, out, _ = client("get", req["collection"], req["record_id"])
        return {"value": json.loads(out) if code == 0 else None}, None
    if op == "list":
        _, out, _ = client("list", req["collection"])
        return {"records": [json.loads(line) for line in out.splitlines() if line]}, None
    if op == "status":
        _, out, _ = client("status")
        return {"pending": json.loads(out)["pending"], "receipts": {}}, None
    if op == "dead_letters":
        _, out, _ = client("dead-letters")
        rows = [json.loads(line) for line in out.splitlines() if line]
        return {"dead_letters": [{"op_id": r["op_id"], "problem": r["problem"], "mutation": {
            "collection": r["collection"], "record_id": r["record_id"], "effect": r["effect"]}}
            for r in rows]}, None
    if op == "close":
        return {}, None
    return None, ("unsupported" if op == "update" else "invalid", f"op {op!r} is not supported")


for line in sys.stdin:
    if not line.strip():
        continue
    try:
        req = json.loads(line)
        result, error = handle(req)
    except (ValueError, KeyError) as e:
        req, result, error = {}, None, ("invalid", str(e))
    answer = {"id": req.get("id", 0), "ok": error is None}
    if error is None:
        answer["result"] = result
    else:
        answer["error"] = {"kind": error[0], "message": error[1]}
    print(json.dumps(answer), flush=True)
    if req.get("op") == "close":
        break
