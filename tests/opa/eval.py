"""Evaluates warden's policy bundle with real OPA (the opa-golib-python-bindings
package, which embeds OPA as a library): the oracle `tests/policy_opa.rs`
compares warden's regorus decisions with.

usage: eval.py BUNDLE_DIR < inputs.jsonl > decisions.jsonl

Each input line is a Rego input document; each output line is
{"result": <data.warden.authz.decision>}, {"undefined": true} or {"error": "..."}.
"""

import json
import pathlib
import sys

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError


def main() -> int:
    bundle = pathlib.Path(sys.argv[1])
    engine = OpaEngine()
    modules = sorted(p for p in bundle.rglob("*.rego"))
    for path in modules:
        engine.add_policy(str(path.relative_to(bundle)), path.read_text())
    for data in sorted(bundle.rglob("data.json")):
        prefix = ".".join(data.relative_to(bundle).parts[:-1])
        engine.add_data(json.loads(data.read_text()), prefix)
    for line in sys.stdin:
        if not line.strip():
            continue
        document = json.loads(line)
        try:
            out = {"result": engine.eval_document("warden.authz.decision", document)}
        except OpaUndefinedError:
            out = {"undefined": True}
        except OpaError as e:
            out = {"error": str(e)}
        print(json.dumps(out, sort_keys=True), flush=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
