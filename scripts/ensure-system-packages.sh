#!/usr/bin/env bash
# Installs Debian's prometheus and prometheus-alertmanager when they are missing and we can (root + apt),
# and the node and Elasticsearch exporters the demo scrapes when present (issue 32).
# Never fails the build: without them the demo runs without alerts (or without host and store series)
# and the alerting tests skip, saying why.
set -u
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v prometheus-elasticsearch-exporter >/dev/null 2>&1 || need+=(prometheus-elasticsearch-exporter)
# docker-compose 1.29 validates docker-compose.yml without a Docker engine (tests/test_compose_stack.py skips without it)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${need[*]} not installed and cannot install here (needs root and apt-get);"
  echo "      alerting runs are skipped. Install with: sudo apt-get install ${need[*]}"
  exit 0
fi
echo "installing ${need[*]} from Debian packages"
daemons="prometheus prometheus-alertmanager prometheus-node-exporter prometheus-elasticsearch-exporter"
# by command line: `pgrep -x` compares the 15-character process name, which the exporters' names exceed
daemon_pids() { pgrep -f "^(/usr/bin/)?($(echo $daemons | tr ' ' '|'))( |$)" 2>/dev/null || true; }
before=$(daemon_pids | tr '\n' ' ')
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/ensure-system-packages.log 2>&1; then
  echo "note: apt-get install ${need[*]} failed (see /tmp/ensure-system-packages.log); alerting runs are skipped"
fi
# Debian's postinst may start daemons on the default ports; the stack runs its own instances.
# Stop only what this install started, never a Prometheus that was already running.
for pid in $(daemon_pids); do
  case " $before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
done
exit 0
