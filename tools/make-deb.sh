#!/bin/sh
# make-deb.sh: builds the Debian packages (debian/) from the tree's tracked
# files, as they are in the work tree, with `dpkg-buildpackage -us -uc -b`,
# in OUT/src (never in the tree itself: no obj-* or debian/tmp left in it,
# no .deb written next to the checkout), then checks them with lintian:
# any error or warning fails, apart from the overrides in
# debian/*.lintian-overrides (each says why).
# usage: tools/make-deb.sh OUT      (make deb: OUT=build-deb)
# Environment: DEB_BUILD_OPTIONS as dpkg-buildpackage takes it (make deb-test
# passes nocheck: make test has run the unit tests).
set -eu

OUT=${1:?usage: make-deb.sh OUT}
cd "$(dirname "$0")/.."
version=$(dpkg-parsechangelog -S Version)
src=$OUT/src/pigeonair-$version
rm -rf "$OUT"
mkdir -p "$src"
git ls-files -z | tar --null -T - -cf - | tar -C "$src" -xf -
(
	cd "$src"
	DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
		dpkg-buildpackage -us -uc -b
) >"$OUT/build.log" 2>&1 || { tail -n 40 "$OUT/build.log"; echo "make-deb: dpkg-buildpackage failed; log: $OUT/build.log" >&2; exit 1; }
changes=$(ls "$OUT"/src/pigeonair_"$version"_*.changes)
mv "$OUT"/src/*.deb "$OUT"/src/*.changes "$OUT"/src/*.buildinfo "$OUT"/
changes=$OUT/$(basename "$changes")
echo "make-deb: built $(cd "$OUT" && ls *.deb | tr '\n' ' ')in $OUT"
lintian --fail-on error,warning --display-info "$changes"
echo "make-deb: lintian: no error, no warning"
