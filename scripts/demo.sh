#!/usr/bin/env bash
# `make demo`: the whole system on one machine with embedded defaults. Builds, starts
# tucdesk-standalone, enrolls an agent on this machine, logs in, runs commands and a shell
# through an end-to-end encrypted session, prints what happened (output, path, the agent's
# fingerprint, the audit events), then stops everything. Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tucdesk/target}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\ndemo failed: %s\n' "$*" >&2; exit 1; }

step "building tucdesk-standalone, tucdesk-agent and tucdesk"
cargo build --quiet -p tucdesk-standalone -p tucdesk-agent -p tucdesk-viewer
bin="$CARGO_TARGET_DIR/debug"

work=$(mktemp -d "${TMPDIR:-/tmp}/tucdesk-demo.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_DEMO:-}" = 1 ]; then echo "demo files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

step "starting the standalone stack (every service in one process, SQLite, in-process bus)"
"$bin/tucdesk-standalone" --data-dir "$work/data" --base-port 0 >"$work/standalone.out" 2>"$work/standalone.log" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -s "$work/data/setup-token" ] && grep -q '^  rendezvous ' "$work/standalone.out" && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/standalone.log" >&2; fail "tucdesk-standalone exited"; }
  sleep 0.1
done
[ -s "$work/data/setup-token" ] || fail "the stack did not bootstrap in 10 s"
auth=$(awk '$1 == "auth" && $2 == "gRPC" {print $3}' "$work/standalone.out")
rendezvous=$(awk '$1 == "rendezvous" && NF == 2 {print $2}' "$work/standalone.out")
audit=$(awk '$1 == "audit" && $2 == "gRPC" {print $3}' "$work/standalone.out")
recorder=$(awk '$1 == "recorder" && $2 == "gRPC" {print $3}' "$work/standalone.out")
audit_key=$(awk '$1 == "audit" && $2 == "public" {print $4}' "$work/standalone.out")
echo "auth:       $auth"
echo "rendezvous: $rendezvous"
echo "audit:      $audit (public key $audit_key)"

export TUCDESK_CONFIG_DIR="$work/viewer"
# Direct (peer-to-peer) sessions between two programs on this machine: bind loopback only.
export TUCDESK_ICE_BIND=127.0.0.1:0
step "tucdesk login (first login: the setup token sets the owner's password; a device key is made)"
password="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$password" | "$bin/tucdesk" login --auth "$auth" --rendezvous "$rendezvous" --audit "$audit" --recorder "$recorder" \
  --email admin@tucdesk.local --setup-token "$(cat "$work/data/setup-token")" --password-stdin

step "tucdesk enroll-token create, then tucdesk-agent enroll on this machine"
token=$("$bin/tucdesk" enroll-token create --tags demo 2>/dev/null)
"$bin/tucdesk-agent" --state-dir "$work/agent" enroll --server "$rendezvous" --token "$token" --name demo-host
fingerprint=$("$bin/tucdesk-agent" --state-dir "$work/agent" fingerprint)

step "tucdesk-agent run (dials out to rendezvous)"
"$bin/tucdesk-agent" --state-dir "$work/agent" run 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 1 100); do
  "$bin/tucdesk" agents | grep -q 'demo-host *online' && break
  sleep 0.1
done
"$bin/tucdesk" agents
"$bin/tucdesk" agents | grep -q 'demo-host *online' || fail "the agent did not come online"

step "tucdesk exec: commands through end-to-end encrypted sessions"
for cmd in "uname -sr" "id -un" "sh -c 'echo 6*7 = \$((6*7)); echo this line goes to stderr >&2'"; do
  echo "\$ tucdesk exec demo-host --accept-new -- $cmd"
  eval "\"$bin/tucdesk\" exec demo-host --accept-new -- $cmd"
done
set +e
"$bin/tucdesk" exec demo-host -- sh -c 'exit 3'
status=$?
set -e
echo "\$ tucdesk exec demo-host -- sh -c 'exit 3'   -> exit status $status"
[ "$status" = 3 ] || fail "the exit status did not come through (got $status)"

step "tucdesk connect: an interactive shell (keystrokes piped in here)"
printf 'echo "hello from $(hostname), in a PTY: $(tty)"\nexit 0\n' |
  "$bin/tucdesk" connect demo-host 2>"$work/connect.err" | tr -d '\r' |
  sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | grep -E '^hello from [^$]' || fail "no shell output"
path=$(sed -n 's/.* via \(.*\); end-to-end.*/\1/p' "$work/connect.err")
echo "path used:         ${path:-unknown}"
echo "\$ tucdesk exec demo-host --path ws --verbose -- echo forced through the WebSocket relay"
"$bin/tucdesk" exec demo-host --path ws --verbose -- echo forced through the WebSocket relay
echo "agent fingerprint: $fingerprint"

step "recordings: the auditors' age key, recording on, a recorded shell, verified and played back"
recipient=$("$bin/tucdesk" recordings keygen -o "$work/auditors.key" 2>/dev/null)
echo "auditors' recipient: $recipient (identity kept in $work/auditors.key, never uploaded)"
"$bin/tucdesk" recordings recipients add "$recipient" --label "demo auditors"
"$bin/tucdesk" recordings mode on
printf 'echo "this shell is recorded: $((6*7))"\nexit 0\n' |
  "$bin/tucdesk" connect demo-host 2>/dev/null | tr -d '\r' |
  sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | grep -E '^this shell is recorded: 42' || fail "no recorded shell output"
session=""
for _ in $(seq 1 150); do
  session=$("$bin/tucdesk" recordings list --json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
print(rows[0]["session_id"] if rows else "")' || true)
  [ -n "$session" ] && break
  sleep 0.2
done
[ -n "$session" ] || fail "the recording did not reach the recorder"
"$bin/tucdesk" recordings list
stored=$(find "$work/data/recordings" -name "$session.cast.age" | head -1)
echo "stored (encrypted, tenant prefix): ${stored#"$work/data/recordings/"}"
"$bin/tucdesk" recordings export "$session" -o "$work/session.cast" --identity "$work/auditors.key"
grep -q 'this shell is recorded: 42' "$work/session.cast" || fail "the exported recording lacks the shell's output"
echo "exported asciicast v2: $(head -c 120 "$work/session.cast")…"
if command -v age >/dev/null; then
  age --decrypt --identity "$work/auditors.key" "$stored" | grep -c 'this shell is recorded: 42' >/dev/null &&
    echo "the standard age tool decrypts the stored file too"
fi
echo "\$ tucdesk play $session --identity auditors.key --speed 20"
"$bin/tucdesk" play "$session" --identity "$work/auditors.key" --speed 20 | tr -d '\r' |
  sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | grep -E 'this shell is recorded: 42' || fail "playback lacks the shell's output"

step "the signed audit log: export it and verify it offline with the audit public key"
sleep 1
"$bin/tucdesk" audit export -o "$work/audit.ndjson"
"$bin/tucdesk" audit verify "$work/audit.ndjson" --key "$audit_key"
python3 - "$work/audit.ndjson" <<'PY'
import datetime, json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "checkpoint" in e:
        c = e["checkpoint"]
        print(f"   checkpoint: {c['tree_size']} entries, root {c['root_hash'][:16]}…, signed by {c['key_id'][:20]}…")
        continue
    ev = e["event"]
    actor = ev.get("actor", {})
    who = actor.get("display") or actor.get("id", "")[:16]
    ctx = ev.get("context", {})
    at = datetime.datetime.fromtimestamp(ev.get("occurred_at", 0) / 1000, datetime.timezone.utc)
    session = (ev.get("session_id") or "")[:8]
    decision = (ev.get("policy_result") or {}).get("decision", "")
    extra = " ".join(f"{k}={ctx[k]}" for k in ("path", "close_reason", "bytes_to_operator") if k in ctx)
    print(f"{e['seq']:4} {at:%H:%M:%S}", f"{ev.get('action', ''):27} {actor.get('kind', ''):7} {who:20} {session:8} {decision} {extra}")
PY
echo "\$ (someone edits one entry of the export, then verifies again)"
sed -i '5s/"occurred_at":1/"occurred_at":2/' "$work/audit.ndjson"
if "$bin/tucdesk" audit verify "$work/audit.ndjson" --key "$audit_key"; then
  fail "a tampered export verified"
fi

step "done: every step worked; stopping the agent and the stack"
