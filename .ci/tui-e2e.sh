#!/usr/bin/env bash
# End-to-end run of the console in a real terminal: start the server, drive
# latchkey-admin under tmux (log in, create a user), read the screen with
# capture-pane, and check through the API that the user exists.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tmux >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq tmux >/dev/null
fi
BIN=${BIN:-target/debug}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export LATCHKEY_LISTEN="127.0.0.1:$PORT" LATCHKEY_PUBLIC_URL="$BASE"
export LATCHKEY_DATABASE_URL="sqlite://$WORK/db.sqlite?mode=rwc" LATCHKEY_MASTER_KEY_FILE="$WORK/master.key"
export LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB=4096 LATCHKEY_PASSWORDS__ARGON2_ITERATIONS=1 RUST_LOG=warn
SESSION="latchkey-e2e-$$"
cleanup() {
  tmux kill-session -t "$SESSION" >/dev/null 2>&1 || true
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "console password 1" | "$BIN/latchkey" user create --username operator --role admin >/dev/null
"$BIN/latchkey" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
. .ci/lib.sh
wait_ready "$BASE" "$WORK/server.log"

screen() { tmux capture-pane -p -t "$SESSION"; }
wait_for() {
  for _ in $(seq 1 100); do screen | grep -q "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for: $1"; screen; return 1
}

tmux new-session -d -s "$SESSION" -x 100 -y 30 \
  "$BIN/latchkey-admin --server $BASE --username operator; echo CONSOLE-EXITED; sleep 5"
wait_for "Log in"
tmux send-keys -t "$SESSION" "console password 1" Enter
# The table's title appears only once the users are loaded (the login form shows neither).
wait_for "Users — 1 total"
tmux send-keys -t "$SESSION" c
wait_for "New user"
tmux send-keys -t "$SESSION" "tmux-made-user" Enter
wait_for "Email"
tmux send-keys -t "$SESSION" "tmux@example.com" Enter
wait_for "Password (empty"
tmux send-keys -t "$SESSION" Enter
wait_for "One-time password"
screen | tee "$WORK/screen.txt"
# Colours are on by default: the key bar's keys are drawn in yellow.
# A foreground colour (30–38, 90–97; 39 is "default", which tmux writes either way).
COLOUR=$'\e''\[([0-9]+;)*(3[0-8]|9[0-7])(;[0-9]+)*m'
tmux capture-pane -e -p -t "$SESSION" | grep -Eq "$COLOUR" || { echo "no colours in the console"; exit 1; }
tmux send-keys -t "$SESSION" Escape
# The popup is gone and the list was reloaded: only the table can show two users.
wait_for "Users — 2 total"
tmux send-keys -t "$SESSION" q
wait_for "CONSOLE-EXITED"
tmux kill-session -t "$SESSION"
# A session of its own name: one being killed may still hold the old one's pane.
SESSION="$SESSION-plain"

# NO_COLOR drops every colour, and Ctrl-C gives the terminal back as it was: out of raw
# mode (stty shows icanon and echo again) and off the alternate screen.
tmux new-session -d -s "$SESSION" -x 100 -y 30 \
  "NO_COLOR=1 $BIN/latchkey-admin --server $BASE --username operator; echo CONSOLE-EXITED; stty -a; sleep 5"
wait_for "Log in"
tmux send-keys -t "$SESSION" "console password 1" Enter
wait_for "Users — 2 total"
if tmux capture-pane -e -p -t "$SESSION" | grep -Eq "$COLOUR"; then
  echo "colours drawn despite NO_COLOR"; screen; exit 1
fi
tmux send-keys -t "$SESSION" C-c
wait_for "CONSOLE-EXITED"
wait_for "baud" # stty -a's first line: it has run
screen | grep -q -- "-icanon" && { echo "the terminal was left in raw mode"; screen; exit 1; }
screen | grep -qw "icanon" || { echo "stty printed nothing"; screen; exit 1; }
screen | grep -q "Users — 2 total" && { echo "the alternate screen was not left"; screen; exit 1; }

TOKEN=$(curl -fs "$BASE/oauth2/token" -d grant_type=password -d client_id=latchkey-admin \
  -d username=operator --data-urlencode "password=console password 1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
TOTAL=$(curl -fs "$BASE/admin/users?q=tmux-made-user" -H "authorization: Bearer $TOKEN" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
if [ "$TOTAL" != "1" ]; then echo "the user made in the console is not on the server"; exit 1; fi
echo "tui e2e: 2 passed, 0 failed"
