#!/usr/bin/env sh
# The browser tests (tests/test_web_browser.py) drive Debian's chromium package at
# /usr/bin/chromium through Playwright: never a downloaded browser. Installs it with apt
# when missing (fonts-nanum too, so screenshots show Korean), or says what to do.
set -eu
PACKAGES="chromium fonts-nanum"
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
fail() {
  echo "browser tests: /usr/bin/chromium is missing and $1." >&2
  echo "Install Debian's packages yourself: sudo apt-get install -y $PACKAGES" >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available (not Debian/Ubuntu?)"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "this user is not root and sudo is missing"
  SUDO="sudo -n"
fi
echo "browser tests: installing $PACKAGES with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends $PACKAGES \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $PACKAGES; } \
  || fail "apt-get could not install $PACKAGES"
[ -x /usr/bin/chromium ] || fail "the chromium package did not provide it"
