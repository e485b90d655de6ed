#!/bin/bash
# Builds the .deb from the test's build directory, unpacks it into a temporary root, checks its
# contents and runs the installed `strata --check` on the installed config.
#   deb_test.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
src="$1"
build="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

deb="$("$src/packaging/build-deb" --build-dir "$build" --output "$tmp")"
echo "built $deb"
dpkg-deb --field "$deb" Package | grep -x strata >/dev/null
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -x "/etc/strata/strata.yaml" >/dev/null

root="$tmp/root"
dpkg -x "$deb" "$root"
for f in usr/bin/strata lib/systemd/system/strata.service etc/logrotate.d/strata \
         etc/strata/strata.yaml usr/share/doc/strata/examples/strata-alerts.yml; do
    test -e "$root/$f" || { echo "missing /$f"; exit 1; }
done
unit="$root/lib/systemd/system/strata.service"
for key in "User=strata" "NoNewPrivileges=yes" "ProtectSystem=strict" "CAP_NET_BIND_SERVICE" \
           "LimitNOFILE=" "ExecReload=/bin/kill -HUP" "ExecStartPre=/usr/bin/strata --check"; do
    grep -q -- "$key" "$unit" || { echo "unit lacks $key"; exit 1; }
done
grep -q "USR1" "$root/etc/logrotate.d/strata"
for key in "ProtectProc=invisible" "ProcSubset=pid" "PrivateMounts=yes" "RemoveIPC=yes" \
           "SystemCallFilter=~@resources"; do
    grep -qx -- "$key" "$unit" || { echo "unit lacks $key"; exit 1; }
done

# Production shape: no test origin or demo config where a production machine runs things.
test ! -e "$root/usr/bin/strata-origin" || { echo "strata-origin in /usr/bin"; exit 1; }
if find "$root" -name strata-origin | grep -q .; then echo "strata-origin shipped"; exit 1; fi
test -f "$root/usr/share/doc/strata/examples/strata.yaml" || { echo "no examples/strata.yaml"; exit 1; }
etc_conf="$root/etc/strata/strata.yaml"
if grep -Eq '127\.0\.0\.1:(900[1-3]|11211)' "$etc_conf"; then
    echo "/etc/strata/strata.yaml has demo upstreams or memcached"; exit 1
fi
if grep -Eq '^ *l2:' "$etc_conf"; then echo "/etc/strata/strata.yaml configures L2"; exit 1; fi
grep -q '^ *token_file: /etc/strata/admin.token' "$etc_conf" || { echo "no token_file"; exit 1; }
# postinst makes the token (dpkg must not ship one) readable by root and strata only.
test ! -e "$root/etc/strata/admin.token" || { echo "admin.token shipped in the package"; exit 1; }
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst > "$tmp/postinst"
grep -q '/dev/urandom' "$tmp/postinst" || { echo "postinst makes no token"; exit 1; }
grep -q 'chown root:strata /etc/strata/admin.token' "$tmp/postinst" || { echo "token owner"; exit 1; }
grep -q 'chmod 0640 /etc/strata/admin.token' "$tmp/postinst" || { echo "token mode"; exit 1; }
sh -n "$tmp/postinst"

"$root/usr/bin/strata" --version
# postinst writes the token on the target machine; stand in for it here.
echo "test-token" > "$tmp/admin.token"
sed "s#/etc/strata/admin.token#$tmp/admin.token#" "$root/etc/strata/strata.yaml" > "$tmp/installed.yaml"
"$root/usr/bin/strata" --check -c "$tmp/installed.yaml"
"$root/usr/bin/strata" --check -c "$root/usr/share/doc/strata/examples/strata.yaml"
# A broken copy is refused with a position and exit 78.
sed 's/^workers: .*/workers: many/' "$tmp/installed.yaml" > "$tmp/bad.yaml"
set +e
out="$("$root/usr/bin/strata" --check -c "$tmp/bad.yaml" 2>&1)"
code=$?
set -e
[ "$code" -eq 78 ] || { echo "bad config: exit $code, want 78"; exit 1; }
echo "$out" | grep -q "bad.yaml:[0-9]*:[0-9]*: workers" || { echo "no position: $out"; exit 1; }
echo "deb ok"
