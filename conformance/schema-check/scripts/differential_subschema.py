#!/usr/bin/env python3
"""Differential test of `driftless schema check` against the PyPI `subschema` prover.

Not run in CI (it needs Python and a network install). For every pair in the corpus
(conformance/schema-check/tests/fixtures/schema-check/<change>/{old,new}.json, plain JSON
Schemas only) and each direction, it asks both tools whether the change is compatible and
lists where they disagree, beside the corpus's own expected verdict (expected.json, whose
breaking directions carry a witness instance validated by the test suite).

    # subschema needs Python >= 3.12
    python3.12 -m venv /tmp/subschema-venv && /tmp/subschema-venv/bin/pip install subschema
    cargo build
    /tmp/subschema-venv/bin/python conformance/schema-check/scripts/differential_subschema.py

Exit code: 0 when every disagreement is one where `driftless` agrees with expected.json,
1 otherwise.
"""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
CORPUS = ROOT / "conformance/schema-check/tests/fixtures/schema-check"
BINARY = ROOT / "target/debug/driftless"


def subschema_verdict(wide, narrow):
    """True if every instance of `wide` is valid under `narrow`; None if declined."""
    try:
        from subschema import issubschema  # noqa: PLC0415 (optional dependency)
    except ImportError:
        sys.exit("install the PyPI package `subschema` first (see the module docstring)")
    try:
        return bool(issubschema(wide, narrow))
    except Exception:  # the prover declines what it does not support
        return None


def driftless_verdict(old, new, mode):
    out = subprocess.run(
        [str(BINARY), "schema", "check", str(old), str(new), "--mode", mode],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 2:
        return None
    if out.returncode == 1 and "error undecidable" in out.stdout and " error " not in out.stdout.replace("error undecidable", ""):
        return None
    return out.returncode == 0


def main():
    disagreements, bad = 0, 0
    for case in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        old_path, new_path = case / "old.json", case / "new.json"
        old, new = json.loads(old_path.read_text()), json.loads(new_path.read_text())
        if "collection" in old or "collection" in new:
            continue  # collection-schema documents are Driftless-specific
        expected = json.loads((case / "expected.json").read_text())
        for mode, wide, narrow in (("backward", old, new), ("forward", new, old)):
            ours = driftless_verdict(old_path, new_path, mode)
            theirs = subschema_verdict(wide, narrow)
            want = expected[mode]["compatible"]
            if ours != theirs:
                disagreements += 1
                right = ours == want
                bad += 0 if right else 1
                print(f"{case.name} {mode}: driftless {ours}, subschema {theirs}, expected {want}")
    print(f"{disagreements} disagreement(s), {bad} where driftless is not the expected answer")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
