#!/bin/sh
# install.sh - `make install`: lbd, lbctl, the units (lbd.service, and
# lbd-gate-watch.service for nodes that reboot through kured), man pages,
# completion, and a default /etc/lbd/lbd.yaml (never overwritten).
#
#   make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] [UNITDIR=...]
#
# Environment (the Makefile passes these):
#   BUILD       where lbd and lbctl were built (default build)
#   PREFIX      /usr/local; the Debian package uses /usr
#   DESTDIR     staging root, empty for a real install
#   SYSCONFDIR  /etc (the config goes in $SYSCONFDIR/lbd)
#   UNITDIR     $PREFIX/lib/systemd/system (the package: /lib/systemd/system)
#
# It does not create the lbd user (the unit runs as User=lbd); on a real
# install it says how, as the Debian package's postinst does it.
set -eu

BUILD=${BUILD:-build}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for b in lbd lbctl; do
	[ -x "$BUILD/$b" ] || { echo "install: $BUILD/$b not built (run make)" >&2; exit 1; }
done

d() { install -d -m 0755 "$DESTDIR$1"; }
d "$PREFIX/sbin"
d "$PREFIX/bin"
d "$PREFIX/share/man/man8"
d "$PREFIX/share/bash-completion/completions"
d "$UNITDIR"
d "$SYSCONFDIR/lbd"

install -m 0755 "$BUILD/lbd" "$DESTDIR$PREFIX/sbin/lbd"
install -m 0755 "$BUILD/lbctl" "$DESTDIR$PREFIX/bin/lbctl"
install -m 0644 "$ROOT/packaging/debian/lbd.8" "$DESTDIR$PREFIX/share/man/man8/lbd.8"
install -m 0644 "$ROOT/packaging/debian/lbctl.8" "$DESTDIR$PREFIX/share/man/man8/lbctl.8"
install -m 0644 "$ROOT/packaging/debian/lbctl.bash-completion" \
	"$DESTDIR$PREFIX/share/bash-completion/completions/lbctl"

# The unit names /usr/sbin/lbd and /etc/lbd/lbd.yaml; point it at this install.
sed -e "s|/usr/sbin/lbd|$PREFIX/sbin/lbd|g" -e "s|/etc/lbd/|$SYSCONFDIR/lbd/|g" \
	"$ROOT/packaging/systemd/lbd.service" >"$DESTDIR$UNITDIR/lbd.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/lbd.service.tmp"
mv "$DESTDIR$UNITDIR/lbd.service.tmp" "$DESTDIR$UNITDIR/lbd.service"
# The kured companion (packaging/kured/): names /usr/bin/lbctl.
sed -e "s|/usr/bin/lbctl|$PREFIX/bin/lbctl|g" \
	"$ROOT/packaging/kured/lbd-gate-watch.service" >"$DESTDIR$UNITDIR/lbd-gate-watch.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/lbd-gate-watch.service.tmp"
mv "$DESTDIR$UNITDIR/lbd-gate-watch.service.tmp" "$DESTDIR$UNITDIR/lbd-gate-watch.service"

# The default config, only where there is none: an install never clobbers
# an operator's file. The example is always refreshed beside it.
install -m 0644 "$ROOT/config/examples/k3s-three-masters.yaml" \
	"$DESTDIR$SYSCONFDIR/lbd/lbd.yaml.example"
if [ ! -e "$DESTDIR$SYSCONFDIR/lbd/lbd.yaml" ]; then
	install -m 0644 "$ROOT/config/examples/k3s-three-masters.yaml" \
		"$DESTDIR$SYSCONFDIR/lbd/lbd.yaml"
fi

if [ -z "$DESTDIR" ]; then
	cat <<MSG
installed lbd in $PREFIX. Before starting it:
  getent passwd lbd || useradd --system --user-group --home-dir /var/lib/lbd --shell /usr/sbin/nologin lbd
  \$EDITOR $SYSCONFDIR/lbd/lbd.yaml && $PREFIX/sbin/lbd -t -c $SYSCONFDIR/lbd/lbd.yaml
  systemctl daemon-reload && systemctl enable --now lbd
MSG
fi
