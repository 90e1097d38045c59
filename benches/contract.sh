#!/usr/bin/env bash
# The long contract run (issue 21): Schemathesis against a fresh demo pool, every operation, many more examples
# than the test command's (`tests/contract.rs`: 3 a phase), with the stateful phase (sequences of operations linked
# by the ids their answers give). Bounded in time. Prints the figures the README records.
#   EXAMPLES (default 50), MAX_TIME seconds (default 900), SEED (default 21)
set -euo pipefail
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
venv=target/tmp/contract-venv
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('schemathesis') == '4.32.5'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5 openapi-python-client==0.29.1
fi
start=$(date +%s)
status=0
"$venv/bin/python" scripts/contract.py --url "$EDGE" --examples "${EXAMPLES:-50}" --seed "${SEED:-21}" \
  --phases examples,coverage,fuzzing,stateful --max-time "${MAX_TIME:-900}" --report "$work/report.json" \
  >"$work/contract.log" 2>&1 || status=$?
tail -25 "$work/contract.log"
python3 - "$work/report.json" "$(($(date +%s) - start))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| operations | {r['operations']['tested']} |")
print(f"| test cases | {r['test_cases']['generated']} |")
print(f"| failures | {r['test_cases']['with_failures']} |")
print(f"| seconds | {sys.argv[2]} |")
PY
exit $status
