#!/usr/bin/env bash
# Start a private sshd on 127.0.0.1 for the SSH backend's tests (or to try the backend).
# Everything lives in $BATCHTOOLS_SSHD_DIR (default /tmp/batchtools-sshd): host key, client key,
# authorized_keys, sshd_config and a client config defining the hosts bt-node-a and bt-node-b
# (both 127.0.0.1). Nothing in ~/.ssh is touched. Prints the line to export:
#   export BATCHTOOLS_SSH_ARGS="-F $BATCHTOOLS_SSHD_DIR/ssh_config"
set -euo pipefail
DIR=${BATCHTOOLS_SSHD_DIR:-/tmp/batchtools-sshd}
PORT=${BATCHTOOLS_SSHD_PORT:-2222}
if ! command -v /usr/sbin/sshd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
  else
    echo "openssh-server is not installed (apt-get install openssh-server)" >&2; exit 1
  fi
fi
mkdir -p "$DIR" /run/sshd 2>/dev/null || mkdir -p "$DIR"
chmod 700 "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$DIR/host_ed25519"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$DIR/id_ed25519"
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $DIR/sshd.pid
AcceptEnv LANG LC_*
CONF
cat > "$DIR/ssh_config" <<CONF
Host bt-node-a bt-node-b 127.0.0.1
  HostName 127.0.0.1
  Port $PORT
  User $(id -un)
  IdentityFile $DIR/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
CONF
if [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then
  kill "$(cat "$DIR/sshd.pid")" && sleep 0.3
fi
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
for _ in $(seq 50); do
  if ssh -F "$DIR/ssh_config" bt-node-a true 2>/dev/null; then
    echo "export BATCHTOOLS_SSH_ARGS=\"-F $DIR/ssh_config\""
    exit 0
  fi
  sleep 0.1
done
echo "sshd did not answer; see $DIR/sshd.log" >&2
cat "$DIR/sshd.log" >&2 || true
exit 1
