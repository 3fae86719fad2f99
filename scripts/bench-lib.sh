# Shared by the benchmark scripts (sourced): release binaries on PATH, a scratch work dir that
# is cleaned up with every environment and nginx it started (scripts/stop-work-dir: the
# product's own stop, then a check that nothing is left), and small timing helpers.
# Expects $root and $runs to be set by the caller.
[[ $runs =~ ^[1-9][0-9]{0,3}$ ]] || { echo "$(basename "$0"): RUNS: expected a whole number from 1 to 9999, got '$runs'" >&2; exit 2; }
"$root/scripts/setup" >/dev/null
cargo build --release --bins --quiet --manifest-path "$root/Cargo.toml"
export PATH="$root/.venv/bin:$root/.tools/bin:$root/target/release:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/safedeploy-bench.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The product's own stop for every state dir of the work dir, then a check that nothing of
  # it is left running (it fails the script, naming what it had to kill).
  "$root/scripts/stop-work-dir" "$work" || status=1
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { python3 -c 'import sys,statistics; print("%.1f" % statistics.median(float(x) for x in sys.stdin.read().split()))'; }
time_ms() { local s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - s) / 1000000 )); }
repeat() { for _ in $(seq "$runs"); do time_ms "$@"; done | median; }

# example_app DIR STAGING_PORT PRODUCTION_PORT: the example app in a fresh git repo at v1,
# configured like the tests (the project's venv instead of a venv per version).
example_app() {
  cp -r "$root/examples/url-shortener" "$1"
  python3 - "$1/safedeploy.toml" "$root/.venv/bin" "$2" "$3" <<'PY'
import re, sys
path, venv, staging, production = sys.argv[1:]
t = open(path).read()
t = re.sub(r'(?m)^command = "python3 -m venv.*$', 'command = "true"', t)
t = t.replace('path = [".venv/bin"]', f'path = ["{venv}"]')
t = t.replace("127.0.0.1:8101", f"127.0.0.1:{staging}").replace("127.0.0.1:8102", f"127.0.0.1:{production}")
t = t.replace('["python3", "-m", "pytest"', f'["{venv}/python", "-m", "pytest"')
open(path, "w").write(t)
PY
  (cd "$1" && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@example.com commit -qm v1)
}
# sqlite3_ms DB SQL: one integer the query answers (python's sqlite3: no sqlite3 CLI needed).
sqlite3_ms() { python3 -c 'import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone(); print(r[0] if r and r[0] is not None else "nan")' "$1" "$2"; }
