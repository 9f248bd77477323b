#!/usr/bin/env bash
# The deployment files are checked like code: compose.yml against the compose-spec schema, the Caddyfile by
# Caddy itself, Prometheus' configuration and alert rules by promtool, and every query of the Grafana dashboards
# parsed as PromQL. (tests/test_deploy.py checks that every metric they name exists in a real scrape.)
# Debian's docker-compose 1.x rejects today's compose files (`name:`), and the compose plugin needs Docker's own
# repository, hence the schema check from check-jsonschema (a dev dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

if { ! command -v caddy >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; } \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's caddy and prometheus (promtool) for the deployment checks"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends caddy prometheus >/dev/null
fi

"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec compose.yml

DOMAIN=localhost CADDY_TLS=internal caddy validate --config deploy/caddy/Caddyfile --adapter caddyfile 2>/dev/null
# What Caddy makes of it in production mode: /metrics answered 404 before anything reaches the app, the bot's
# webhook path to the bot, the rest to web, and secret paths filtered out of its access log.
DOMAIN=shop.example.com CADDY_TLS=ops@example.com caddy adapt --config deploy/caddy/Caddyfile --adapter caddyfile \
  | "$BIN/python" -c '
import json, sys
config = json.load(sys.stdin)
[site] = config["apps"]["http"]["servers"]["srv0"]["routes"]
routes = site["handle"][0]["routes"]
def route_for(path):
    return next(r for r in routes if any(path in m.get("path", []) for m in r.get("match", [{}])))
def handlers(route):
    return [h for sub in route["handle"] for r in sub.get("routes", [sub]) for h in r.get("handle", [r])]
metrics = handlers(route_for("/metrics"))
assert any(h.get("handler") == "static_response" and h.get("status_code") == 404 for h in metrics), metrics
webhook = handlers(route_for("/telegram/webhook"))
assert any(u["dial"] == "bot:8081" for h in webhook for u in h.get("upstreams", [])), webhook
assert routes.index(route_for("/metrics")) < len(routes) - 1, "the catch-all must come after /metrics"
fields = json.dumps(config["logging"]["logs"])
assert "request>uri" in fields and "Authorization" in fields, fields
assert site["match"] == [{"host": ["shop.example.com"]}], site["match"]
print("Caddy: /metrics closed, webhook to the bot, secrets filtered from its log")
'

promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml

# Each dashboard query as a recording rule, so promtool parses it.
RULES=$(mktemp /tmp/vpnshop-dashboards.XXXXXX.yml)
trap 'rm -f "$RULES"' EXIT
"$BIN/python" - "$RULES" deploy/grafana/dashboards/*.json <<'PY'
import json, sys

out, *dashboards = sys.argv[1:]
rules = []
for path in dashboards:
    for panel in json.load(open(path))["panels"]:
        for target in panel.get("targets", []):
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": target["expr"]})
json.dump({"groups": [{"name": "dashboards", "rules": rules}]}, open(out, "w"))
print(f"{len(rules)} dashboard queries")
PY
promtool check rules "$RULES"
echo "deployment files check passed"
