#!/usr/bin/env bash
# Renders the seed node's web page in headless Chromium and checks it
# (TestPageInBrowser in transport/seednode): the DOM after the page's
# script ran, and a screenshot saved for people to look at, whose path
# it prints.
#
# Run from anywhere:  bash transport/seednode/page/test.sh
# Installs Debian's chromium when it is missing (needs root and apt).
#
# Environment:
#   ROOKERY_SCREENSHOT_DIR  where the screenshot goes (default: a new
#                           temporary directory, kept)
#   ROOKERY_CHROMIUM        the browser to run (default: chromium on PATH)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
export PATH="/usr/local/go/bin:${PATH}"

if [[ -z "${ROOKERY_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
	if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		echo "chromium is missing and cannot be installed here: install Debian's chromium (apt-get install -y chromium)" >&2
		exit 1
	fi
	echo "chromium is missing: installing Debian's chromium"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y chromium
fi
"${ROOKERY_CHROMIUM:-chromium}" --version

export ROOKERY_SCREENSHOT_DIR="${ROOKERY_SCREENSHOT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/rookery-page.XXXXXX")}"
export ROOKERY_BROWSER_REQUIRED=1
go test ./transport/seednode -run '^TestPageInBrowser$' -count=1 -v
echo "screenshot of the seed node's page: ${ROOKERY_SCREENSHOT_DIR}/seed-page.png"
