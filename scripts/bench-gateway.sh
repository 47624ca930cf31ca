#!/usr/bin/env bash
# The HTTP gateway against nginx, same machine, same run (issue 15; BENCHMARKS.md "The HTTP
# gateway"). One store (crates/gateway/examples/gateway_bench.rs `prepare`): log "posts" of
# 4096 generated ~1 KiB Lemmy-like posts, and the Lemmy sample (/work/shared/lemmy or
# $LEMMY_DIR) imported as two logs. The gateway serves it; every response body it gives is saved
# as a static file, and nginx (Debian's package) serves those files, so both send the very same
# bodies. wrk drives both, one after the other, with the same connections and URL rotation.
#   bash scripts/bench-gateway.sh [SECONDS]      (default 10 per measurement)
# Env: GATEWAY_BENCH_BIN (use this build of the example), CONNS (default 8), SKIP_FAIRNESS=1,
# CACHE_BYTES=0 (the gateway keeps no answers: as before its cache), COMPRESS=0.
# Prints a markdown table per part. Needs root only to install nginx and wrk when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${CONNS:-8}
lemmy=${LEMMY_DIR:-/work/shared/lemmy}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${GATEWAY_BENCH_BIN:-}" ]; then
  cargo build --release -q -p peerhost-gateway --example gateway_bench
fi
bin=${GATEWAY_BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/gateway_bench}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

lemmy_arg=()
[ -d "$lemmy" ] && lemmy_arg=("$lemmy")
"$bin" prepare "$tmp" 4096 "${lemmy_arg[@]}" > "$tmp/keys.json"
key() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2],''))" "$tmp/keys.json" "$1"; }
posts=$(key posts)

# start_gateway: serve the store; its stdin is a fifo we hold open (closing it stops it).
start_gateway() {
  rm -f "$tmp/gw.in" "$tmp/gw.out"
  mkfifo "$tmp/gw.in"
  "$bin" serve "$tmp" < "$tmp/gw.in" > "$tmp/gw.out" & pids+=($!)
  gw_pid=$!
  exec {gw_w}>"$tmp/gw.in"
  for _ in $(seq 100); do grep -q port "$tmp/gw.out" 2>/dev/null && break; sleep 0.05; done
  gw_port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$tmp/gw.out" | head -n 1)
}
stop_gateway() {
  exec {gw_w}>&-
  wait "$gw_pid" 2>/dev/null || true
}
start_gateway
gw="http://127.0.0.1:$gw_port"
length=$(curl -sf "$gw/v1/logs/$posts/head" | python3 -c 'import json,sys; print(json.load(sys.stdin)["length"])')

# The URL sets, one path per line, and the same bodies under www/ for nginx.
mkdir -p "$tmp/www"
add() { # add SHAPE I GATEWAY_PATH: save the gateway's bodies (identity, gzip, br) for nginx
  local shape=$1 i=$2 path=$3
  mkdir -p "$tmp/www/$shape"
  curl -sf "$gw$path" -o "$tmp/www/$shape/$i"
  curl -sf -H 'Accept-Encoding: gzip' "$gw$path" -o "$tmp/www/$shape/$i.gz"
  echo "$path" >> "$tmp/$shape.gw"
  echo "/$shape/$i" >> "$tmp/$shape.nginx"
}
for i in $(seq 0 63); do
  add range64 "$i" "/v1/logs/$posts/blocks?start=$((i * 64))&end=$((i * 64 + 64))&length=$length&fork=0"
  s=$(((i * 61) % length))
  add range1 "$i" "/v1/logs/$posts/blocks?start=$s&end=$((s + 1))&length=$length&fork=0"
done
add head 0 "/v1/logs/$posts/head"

cat > "$tmp/paths.lua" <<'LUA'
local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
local headers = {}
if os.getenv("ENC") ~= "" then headers["Accept-Encoding"] = os.getenv("ENC") end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
LUA

nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 100000000;
  default_type application/vnd.peerhost.range-proof;
  types { }
  gzip_static on;
  etag off;
  client_body_temp_path $tmp/nginx-body;
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    root $tmp/www;
    add_header Cache-Control "public, max-age=31536000, immutable";
    add_header Access-Control-Allow-Origin "*";
    add_header Vary "Accept-Encoding";
  }
}
CONF
# (not holding the gateway's stdin open: nginx outlives this line)
"$nginx_bin" -c "$tmp/nginx.conf" -p "$tmp" -g 'daemon on;' 2>>"$tmp/nginx.err" {gw_w}>&-
ng="http://127.0.0.1:$nginx_port"
cmp -s <(curl -sf "$gw$(head -n 1 "$tmp/range64.gw")") <(curl -sf "$ng/range64/0") \
  || { echo "nginx does not serve the gateway's bytes" >&2; cat "$tmp/nginx.err" >&2; exit 1; }

# run NAME BASE SHAPE ENC: wrk for $secs s; one JSON line (requests/s, MB/s, p50, p99 ms).
run() {
  local name=$1 base=$2 shape=$3 enc=$4 list
  case $name in gateway) list=$tmp/$shape.gw ;; *) list=$tmp/$shape.nginx ;; esac
  PATHS=$list ENC=$enc wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$tmp/paths.lua" "$base" \
    > "$tmp/wrk.out" 2>&1 || true
  python3 - "$tmp/wrk.out" "$name" "$shape" "$enc" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def num(pattern, default=0.0):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else default
def ms(label):
    m = re.search(r'\s%s\s+([\d.]+)(us|ms|s)\b' % re.escape(label), text)
    if not m: return None
    v = float(m.group(1)); return {'us': v / 1000, 'ms': v, 's': v * 1000}[m.group(2)]
mb = re.search(r'Transfer/sec:\s+([\d.]+)(\w+)', text)
scale = {'B': 1e-6, 'KB': 1.024e-3, 'MB': 1.048576, 'GB': 1073.741824}
errors = re.search(r'Non-2xx or 3xx responses: (\d+)', text)
print(json.dumps({'server': sys.argv[2], 'shape': sys.argv[3], 'enc': sys.argv[4] or 'identity',
  'rps': num(r'Requests/sec:\s+([\d.]+)'),
  'mbps': float(mb.group(1)) * scale.get(mb.group(2), 1) if mb else 0,
  'p50': ms('50%'), 'p99': ms('99%'), 'non2xx': int(errors.group(1)) if errors else 0}))
PY
}

: > "$tmp/results"
for spec in "range64:" "range1:" "head:" "range64:gzip"; do
  shape=${spec%%:*}; enc=${spec#*:}
  # Both servers warm (the gateway's caches, nginx's page cache), then measured in turn.
  PATHS=$tmp/$shape.gw ENC=$enc wrk -t1 -c"$conns" -d1s -s "$tmp/paths.lua" "$gw" >/dev/null 2>&1 || true
  run gateway "$gw" "$shape" "$enc" | tee -a "$tmp/results"
  run nginx "$ng" "$shape" "$enc" | tee -a "$tmp/results"
done

# Compression: the bytes a browser receives for each range of text, as sent (curl counts the
# body on the wire; the gateway's counters below count the same).
comp() { # comp LABEL KEY START END
  local label=$1 k=$2 s=$3 e=$4 path id gz br
  [ -n "$k" ] || return 0
  local len
  len=$(curl -sf "$gw/v1/logs/$k/head" | python3 -c 'import json,sys; print(json.load(sys.stdin)["length"])')
  [ "$e" -le "$len" ] || e=$len
  path="/v1/logs/$k/blocks?start=$s&end=$e&length=$len&fork=0"
  id=$(curl -sf -o /dev/null -w '%{size_download}' "$gw$path")
  gz=$(curl -sf -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' "$gw$path")
  br=$(curl -sf -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: br' "$gw$path")
  printf '{"compress":"%s","blocks":%d,"identity":%d,"gzip":%d,"br":%d}\n' "$label" $((e - s)) "$id" "$gz" "$br"
}
{
  comp "Lemmy sample: 30 posts (one range)" "$(key lemmy-posts)" 0 64
  comp "Lemmy sample: 60 comments (one range)" "$(key lemmy-comments)" 0 64
  comp "generated posts 0..64" "$posts" 0 64
  comp "generated posts 1024..1088" "$posts" 1024 1088
} | tee -a "$tmp/results"
stop_gateway
tail -n 1 "$tmp/gw.out" | sed 's/^{/{"counters":"gateway",/' | tee -a "$tmp/results"

# Fairness: 50 clients each trying to hold 100 connections with a request head trickled a byte
# every 200 ms (reconnecting when closed), then 5 fresh clients GET /v1/logs one at a time.
if [ -z "${SKIP_FAIRNESS:-}" ]; then
  start_gateway
  "$bin" halfopen "127.0.0.1:$gw_port" 50 100 5 2>"$tmp/halfopen.err" | \
    sed 's/^{/{"fairness":"gateway",/' | tee -a "$tmp/results"
  stop_gateway
fi

python3 - "$tmp/results" "$secs" "$conns" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
secs, conns = sys.argv[2], sys.argv[3]
names = {'range64': '64-block range (64 KiB of 1 KiB posts, immutable URL)',
         'range1': '1-block range (one 1 KiB post with its proof)',
         'head': 'signed head (JSON)'}
print('\n| %s connections, %s s each | gateway req/s | nginx req/s | gateway / nginx | gateway p50 / p99 | nginx p50 / p99 |' % (conns, secs))
print('|---|---:|---:|---:|---|---|')
f = lambda v: '–' if v is None else ('%.2f ms' % v)
for shape in ('range64', 'range1', 'head'):
    for enc in ('identity', 'gzip'):
        g = next((r for r in rows if r.get('server') == 'gateway' and r['shape'] == shape and r['enc'] == enc), None)
        n = next((r for r in rows if r.get('server') == 'nginx' and r['shape'] == shape and r['enc'] == enc), None)
        if not g or not n: continue
        label = names[shape] + ('' if enc == 'identity' else ', Accept-Encoding: ' + enc)
        bad = ' (non-2xx: %d / %d)' % (g['non2xx'], n['non2xx']) if g['non2xx'] or n['non2xx'] else ''
        print('| %s%s | %.0f | %.0f | **%.2fx** | %s / %s | %s / %s |' % (label, bad, g['rps'], n['rps'],
              g['rps'] / n['rps'] if n['rps'] else 0, f(g['p50']), f(g['p99']), f(n['p50']), f(n['p99'])))
c = [r for r in rows if 'compress' in r]
if c:
    print('\n| range of text | blocks | identity bytes | gzip | br |')
    print('|---|---:|---:|---:|---:|')
    for r in c:
        i = r['identity']
        pct = lambda v: '%d (%.0f%%)' % (v, 100.0 * v / i) if i else str(v)
        print('| %s | %d | %d | %s | %s |' % (r['compress'], r['blocks'], i, pct(r['gzip']), pct(r['br'])))
for r in rows:
    if 'counters' in r:
        print('\ngateway counters (body bytes as sent, all requests of the run): %d bytes, %d requests' % (r['bytes'], r['requests']))
    if 'fairness' in r:
        p = r['probes_ms']
        print('\nfairness: 50 clients x 100 half-open requests (held: %d connections); fresh clients answered in: %s' % (
            r['held'], ', '.join('not within 10 s' if v is None else '%.0f ms' % v for v in p)))
PY
