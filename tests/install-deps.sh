#!/usr/bin/env bash
# Installs the Debian packages the tests drive, when they are missing and we
# are root.  Without root, tests that need a missing program skip (exit 77).
set -u
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "note: not root; tests needing ${missing[*]} will skip" >&2
    exit 0
fi
echo "installing test packages: ${missing[*]}" >&2
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
    || echo "warning: apt-get could not install ${missing[*]}; those tests will skip" >&2
exit 0
