#!/bin/sh
# mkdeb.sh - `make deb`: the lbd Debian binary package, with dpkg-deb.
#
#   make deb [BUILD=build]      ->  $BUILD/lbd_VERSION_ARCH.deb
#
# Not a debhelper build, but the same steps by hand, each with the dpkg tool
# Debian uses for it: binaries built with dpkg-buildflags (hardening) in
# their own build dir and stripped; the file tree laid out by
# scripts/install.sh (PREFIX=/usr, the unit in /lib/systemd/system); man
# pages and docs compressed with gzip -9n; Depends from dpkg-shlibdeps;
# DEBIAN/control from packaging/debian/control and changelog through
# dpkg-gencontrol; conffiles = every file under /etc; md5sums; and
# dpkg-deb --root-owner-group (no fakeroot needed). The package's source
# files are in packaging/debian/.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BUILD:-build}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
PKG=$ROOT/packaging/debian
HARD=$OUT/deb-build   # objects built with the hardening flags
STAGE=$OUT/deb-root   # the package's file tree
SRC=$OUT/deb-src      # a debian/ dir for dpkg-shlibdeps and dpkg-gencontrol

# LBD_DEB_CHANGELOG: another changelog (a test builds a "newer" package
# with it; the version in the binary follows).
CHANGELOG=${LBD_DEB_CHANGELOG:-$PKG/changelog}
VERSION=$(dpkg-parsechangelog -l "$CHANGELOG" -S Version)
ARCH=$(dpkg --print-architecture)
DEB=$OUT/lbd_${VERSION}_${ARCH}.deb

# 1. Build with Debian's hardening flags (PIE, bindnow, relro, fortify,
#    stack protector), in a build dir of its own.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
CF="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS)"
LF="$(dpkg-buildflags --get LDFLAGS)"
# SAN= : never a sanitizer build in a package, even under make test SAN=1.
make -s -C "$ROOT" BUILD="$HARD" SAN= EXTRA_CFLAGS="$CF" LDFLAGS="$LF" VERSION="$VERSION" all

# 2. The file tree.
rm -rf "$STAGE" "$SRC"
BUILD=$HARD PREFIX=/usr DESTDIR=$STAGE SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
	sh "$ROOT/scripts/install.sh"
# Under /etc everything is a conffile; the example lives in the docs instead.
rm -f "$STAGE/etc/lbd/lbd.yaml.example"
# The upgrade path of postinst: lbctl restart, reporting (seamless-restart).
install -d -m 0755 "$STAGE/usr/lib/lbd"
install -m 0755 "$PKG/seamless-restart" "$STAGE/usr/lib/lbd/seamless-restart"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$STAGE/usr/sbin/lbd" "$STAGE/usr/bin/lbctl"
gzip -9n "$STAGE/usr/share/man/man8/lbd.8" "$STAGE/usr/share/man/man8/lbctl.8"

DOC=$STAGE/usr/share/doc/lbd
install -d -m 0755 "$DOC/examples"
install -m 0644 "$PKG/copyright" "$DOC/copyright"
gzip -9n -c "$CHANGELOG" >"$DOC/changelog.Debian.gz"
gzip -9n -c "$ROOT/README.md" >"$DOC/README.md.gz"
gzip -9n -c "$ROOT/SECURITY.md" >"$DOC/SECURITY.md.gz"
# Every document under docs/ (the README, the man pages and lbctl's help
# point at them), and every example config and plan.
for f in "$ROOT"/docs/*.md; do
	gzip -9n -c "$f" >"$DOC/$(basename "$f").gz"
done
for f in "$ROOT"/config/examples/*.yaml; do
	install -m 0644 "$f" "$DOC/examples/$(basename "$f")"
done
# Monitoring: the alert rules (with their promtool tests) and the dashboard.
install -m 0644 "$ROOT/packaging/prometheus/lbd-alerts.yml" "$DOC/examples/lbd-alerts.yml"
install -m 0644 "$ROOT/packaging/prometheus/lbd-alerts.test.yml" "$DOC/examples/lbd-alerts.test.yml"
install -m 0644 "$ROOT/packaging/grafana/lbd.json" "$DOC/examples/grafana-lbd.json"
install -m 0644 "$ROOT/packaging/keepalived/keepalived.conf.tmpl" "$DOC/examples/keepalived.conf.tmpl"
install -m 0644 "$ROOT/packaging/keepalived/README.md" "$DOC/examples/keepalived-README.md"
install -m 0644 "$ROOT/packaging/kured/README.md" "$DOC/examples/kured-README.md"
install -m 0644 "$ROOT/packaging/kured/lbd-gate-watch.env" "$DOC/examples/lbd-gate-watch.env"
install -m 0644 "$ROOT/packaging/kured/gate-watch.yaml" "$DOC/examples/kured-gate-watch.yaml"
chmod 0644 "$DOC"/*.gz
install -d -m 0755 "$STAGE/usr/share/lintian/overrides"
install -m 0644 "$PKG/lintian-overrides" "$STAGE/usr/share/lintian/overrides/lbd"

# 3. DEBIAN/: maintainer scripts, conffiles, control, md5sums.
install -d -m 0755 "$STAGE/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$PKG/$s" "$STAGE/DEBIAN/$s"
done
(cd "$STAGE" && find etc -type f | sort | sed 's|^|/|') >"$STAGE/DEBIAN/conffiles"
chmod 0644 "$STAGE/DEBIAN/conffiles"

install -d "$SRC/debian"
cp "$PKG/control" "$SRC/debian/"
cp "$CHANGELOG" "$SRC/debian/changelog"
(
	cd "$SRC"
	echo "misc:Depends=" >debian/substvars
	dpkg-shlibdeps -Tdebian/substvars "$STAGE/usr/sbin/lbd" "$STAGE/usr/bin/lbctl"
	dpkg-gencontrol -plbd -ldebian/changelog -cdebian/control -Tdebian/substvars \
		-fdebian/files -P"$STAGE"
)
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
	xargs md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"

# 4. The archive: files owned by root whoever builds it.
find "$STAGE" -type d -exec chmod 0755 {} +
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
