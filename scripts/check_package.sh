#!/usr/bin/env bash
# The wheel is the product: build it, install it into a fresh virtualenv (no source tree on the path), start
# `vpnshop demo` from an empty folder and check that pages (templates, locales), static files and the API docs'
# assets are served. Bounded in time; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
PORT=${CHECK_PACKAGE_PORT:-18931}
WORK=$(mktemp -d /tmp/vpnshop-package.XXXXXX)
DEMO_PID=
cleanup() {
  if [ -n "$DEMO_PID" ]; then kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; fi
  rm -rf "$WORK" "$ROOT/build"
}
trap cleanup EXIT

echo "building the wheel"
timeout 300 "$ROOT/.venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
echo "installing it into a fresh virtualenv"
"$PYTHON" -m venv "$WORK/venv"
timeout 600 "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" "$WORK"/dist/vpnshop-*.whl

mkdir "$WORK/run"
cd "$WORK/run"
# Imported from site-packages, not from a source tree.
"$WORK/venv/bin/python" -c "import app, sys; assert 'site-packages' in app.__file__, app.__file__"
echo "starting the demo from $WORK/run"
env -i PATH="$WORK/venv/bin:/usr/bin:/bin" HOME="$WORK" "$WORK/venv/bin/vpnshop" demo --port "$PORT" >"$WORK/demo.log" 2>&1 &
DEMO_PID=$!

BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 120); do
  if "$WORK/venv/bin/python" - "$BASE" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2)
PY
  if ! kill -0 "$DEMO_PID" 2>/dev/null; then echo "the demo exited:"; cat "$WORK/demo.log"; exit 1; fi
  sleep 1
done

"$WORK/venv/bin/python" - "$BASE" <<'PY' || { echo "demo log:"; cat "$WORK/demo.log"; exit 1; }
import sys, urllib.request

base = sys.argv[1]

def get(path: str, lang: str = "en") -> str:
    request = urllib.request.Request(base + path, headers={"Accept-Language": lang, "Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, (path, response.status)
        return response.read().decode()

landing = get("/")
assert "<html" in landing and "/static/app." in landing, "the landing page is not rendered from its template"
# Texts come from the message catalogs (app/locales); without them the page would show bare keys.
assert "vpnshop — demo" in landing and "vpnshop — демо" in get("/", "ru"), "the locale files are missing"
assert "htmx" in get("/static/htmx-2.0.11.min.js"), "static files are missing"
assert "SwaggerUIBundle" in get("/api/docs/assets/swagger-ui-bundle.js"), "Swagger UI's assets are missing"
assert "swagger-ui" in get("/api/docs")
print("the installed wheel serves pages, static files and the API docs")
PY
grep -q "Traceback" "$WORK/demo.log" && { echo "the demo logged a traceback:"; cat "$WORK/demo.log"; exit 1; }
echo "package check passed"
