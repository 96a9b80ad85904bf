#!/bin/sh
# Alertmanager's entrypoint in compose: refuse to start when a secret file that alertmanager.yml
# names (every `*_file:` field) is missing or empty, naming the file; otherwise exec the command.
# Same check as demo/alerting_stack.py's render step for the embedded stack and the tests.
#   entrypoint: [/bin/sh, /etc/alertmanager/check-secret-files.sh]
#   command:    [/bin/alertmanager, --config.file=/etc/alertmanager/alertmanager.yml, ...]
set -eu
config=/etc/alertmanager/alertmanager.yml
for arg in "$@"; do
  case "$arg" in --config.file=*) config="${arg#--config.file=}" ;; esac
done
status=0
for file in $(sed -n 's/^[[:space:]-]*[a-z_]*_file:[[:space:]]*\([^[:space:]#]*\).*$/\1/p' "$config" | sort -u); do
  if [ ! -e "$file" ]; then
    echo "alertmanager: secret file $file (named in $config) does not exist; \`make compose-env\` writes it" >&2
    status=2
  elif [ -z "$(tr -d ' \t\r\n' < "$file")" ]; then
    echo "alertmanager: secret file $file (named in $config) is empty" >&2
    status=2
  fi
done
[ "$status" -eq 0 ] || exit "$status"
exec "$@"
