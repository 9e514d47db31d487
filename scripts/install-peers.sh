#!/usr/bin/env bash
# Installs the third-party MQTT peers the interoperability suite talks to:
# Mosquitto (broker and clients, Debian), paho-mqtt 2.x (PyPI), MQTT.js (npm, tests/interop/js)
# and headless Chromium (Debian). Idempotent; needs root for apt.
set -euo pipefail

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # policy-rc.d keeps the package from starting a system mosquitto on port 1883
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

if ! python3 -c 'import paho.mqtt, sys; sys.exit(0 if paho.mqtt.__version__.startswith("2") else 1)' 2>/dev/null; then
  python3 -m pip install --quiet 'paho-mqtt>=2,<3'
fi
# MQTT.js for the WebSocket tests (Node and, from its browser bundle, headless Chromium): the
# versions pinned in tests/interop/js/package-lock.json; reinstalled only when the lock changes.
js_dir="$(dirname "$0")/../tests/interop/js"
if ! cmp -s "$js_dir/package-lock.json" "$js_dir/node_modules/.tern-installed-lock" 2>/dev/null; then
  (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error \
    && cp package-lock.json node_modules/.tern-installed-lock)
fi
echo "peers: $(mosquitto -h 2>/dev/null | head -1 || /usr/sbin/mosquitto -h | head -1); paho-mqtt $(python3 -c 'import paho.mqtt; print(paho.mqtt.__version__)')"
