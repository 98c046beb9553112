#!/usr/bin/env bash
# The project's one test command (README.md gives it; .ci/run calls it):
#
#   bash test/run.sh
#
# 1. installs what the tests drive when it is missing: the FTPS clients
#    curl and lftp, the DNS server BIND9, systemd-analyze and logrotate
#    for docs/deploy, Prometheus (with promtool), redis-server and HAProxy (apt), the ACME test CA Pebble
#    (go install), and checks that the clients run with TLS support;
# 2. go vet and staticcheck (installed into GOPATH/bin when missing);
# 3. go test -race on every package, last, so its ok/FAIL lines end the
#    output.
#
# Without curl or lftp the tests that need them are skipped, except under
# CI=true, where they fail.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*"; }

# as_root runs a command as root: directly when we are root, else via sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "need root (or sudo) to run: $*" >&2
		return 1
	fi
}

# --- external clients and servers ------------------------------------------
# curl and lftp are the FTPS clients of the interop tests; named (BIND9) is
# the DNS server of the ACME dns-01 tests; systemd-analyze and logrotate
# check the files in docs/deploy; prometheus scrapes ftpsd in
# test/prometheus_test.go and its promtool checks the shipped alert rules;
# Debian's rclone (1.60, at /usr/bin: a newer one may come first on PATH)
# shares one ticket cache across its connections (tls_resumption = "user");
# redis-server shares login bans between nodes ([cluster] redis), and
# haproxy balances two ftpsd nodes in test/cluster_test.go (the tests run
# their own in the foreground, on free loopback ports; the packaged
# services are not needed).
missing=()
for tool in curl lftp named systemd-analyze logrotate prometheus promtool redis-server haproxy; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ -x /usr/bin/rclone ] || missing+=(rclone)
if [ "${#missing[@]}" -gt 0 ]; then
	pkgs=()
	for tool in "${missing[@]}"; do
		case "$tool" in
		named) pkgs+=(bind9 bind9-dnsutils) ;;
		systemd-analyze) pkgs+=(systemd) ;;
		promtool) [[ " ${pkgs[*]} " == *" prometheus "* ]] || pkgs+=(prometheus) ;;
		*) pkgs+=("$tool") ;;
		esac
	done
	say "installing ${pkgs[*]} (apt-get)"
	if command -v apt-get >/dev/null 2>&1 &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; then
		:
		# The tests run their own; the packaged services are not wanted.
		for svc in haproxy redis-server; do
			if [[ " ${pkgs[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
				as_root systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
			fi
		done
	else
		echo "warning: could not install ${pkgs[*]}; the tests that need them are skipped (and fail under CI=true)" >&2
	fi
fi
if command -v curl >/dev/null 2>&1; then
	say "$(curl --version | sed -n 1p)"
	case "$(curl --version)" in
	*" ftps "*) ;;
	*) echo "curl has no FTPS support" >&2; exit 1 ;;
	esac
fi
if command -v lftp >/dev/null 2>&1; then
	say "$(lftp --version | sed -n 1p)"
	case "$(lftp --version)" in
	*GnuTLS* | *OpenSSL*) ;;
	*) echo "lftp has no TLS library" >&2; exit 1 ;;
	esac
fi

# --- go vet and staticcheck ----------------------------------------------------
say "$(go version)"
say "go vet ./..."
go vet ./...

gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v staticcheck >/dev/null 2>&1; then
	say "installing staticcheck"
	# v0.8.2 is the release known to build with this Go (1.26); @latest
	# is tried first so that a newer toolchain gets a matching release.
	go install honnef.co/go/tools/cmd/staticcheck@latest ||
		go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
# Pebble, the ACME test CA (test/acmetest would install it too, but inside a
# test's time limit).
for tool in pebble pebble-challtestsrv; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		say "installing $tool"
		go install "github.com/letsencrypt/pebble/v2/cmd/$tool@v2.10.1"
	fi
done
# versitygw, the S3 server the S3 storage tests start (about a minute to
# build).
if ! command -v versitygw >/dev/null 2>&1; then
	say "installing versitygw"
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
say "staticcheck ./... ($(staticcheck -version))"
staticcheck ./...

# --- tests (last: its ok/FAIL lines end the output) ---------------------------
say "go test -race -count=1 ./..."
go test -race -count=1 ./...
