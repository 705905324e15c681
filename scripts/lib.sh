# Shared by scripts/demo and the benchmarks: a throwaway broker and gateway on free ports, and CPU readings.
# shellcheck shell=bash

# The gateway binary: FLEETEDGE_BIN=path runs that one (to compare two builds with
# interleaved runs) instead of building the worktree's release binary.
FLEETEDGE=${FLEETEDGE_BIN:-./target/release/fleetedge}
build_gateway() {
  [ -n "${FLEETEDGE_BIN:-}" ] || cargo build --release --locked --quiet
}

# cpu_ticks PID: the process's user + system CPU so far, in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# children_cpu_ticks PID: the same for its reaped children (a load tool run from the script).
children_cpu_ticks() { awk '{print $16 + $17}' "/proc/$1/stat"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1:$2 after $3 s" >&2
  return 1
}

# start_broker DIR PORT: mosquitto on 127.0.0.1:PORT, pid in BROKER_PID
start_broker() {
  cat >"$1/mosquitto.conf" <<CONF
listener $2 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF
  mosquitto -c "$1/mosquitto.conf" 2>"$1/mosquitto.log" &
  BROKER_PID=$!
  wait_port 127.0.0.1 "$2" 10
}

# start_gateway DIR BROKER_PORT LISTEN_PORT [extra toml] [protocol]: pid in GATEWAY_PID; one TCP
# listener of the protocol (default teltonika) on LISTEN_PORT
start_gateway() {
  cat >"$1/fleetedge.toml" <<CONF
gateway_id = "demo-gw"
[buffer]
path = "$1/buffer"
[mqtt]
port = $2
[http]
bind = "127.0.0.1:$(free_port)"
[[listeners]]
protocol = "${5:-teltonika}"
bind = "127.0.0.1:$3"
${4:-}
CONF
  "$FLEETEDGE" run --config "$1/fleetedge.toml" 2>"$1/fleetedge.log" &
  GATEWAY_PID=$!
  wait_port 127.0.0.1 "$3" 20
}
