#!/usr/bin/env bash
# Installs code-server 4.100.3 (a full VS Code 1.100.3: server + web workbench) into .vscode-test/ without
# any download except the npm registry, for the e2e tests (test/e2e/run.ts). code-server's own postinstall
# fetches from GitHub twice (argon2 prebuilt, ripgrep binary); this script replaces those steps:
# argon2 is built from source, ripgrep is Debian's `rg`.
#
# Idempotent: a marker file records a finished install; delete .vscode-test/code-server to start over.
# Needs: node 20, npm, python3, make, g++, libkrb5-dev, ripgrep (Debian packages; .ci/run installs them).
set -euo pipefail

VERSION=4.100.3
CODE_VERSION=1.100.3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.vscode-test/code-server"
MARKER="$PREFIX/.installed-$VERSION"
CS="$PREFIX/node_modules/code-server"
VSC="$CS/lib/vscode"

say() { printf '\n[setup-code-server] %s\n' "$*"; }
die() { printf '\n[setup-code-server] ERROR: %s\n' "$*" >&2; exit 1; }
run() { printf '  $ %s\n' "$*"; "$@"; }
trap 'printf "\n[setup-code-server] FAILED (exit %s) at line %s: %s\nNothing is marked installed; re-run to retry.\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

check_version() {
  local out
  local scratch
  scratch="$(mktemp -d)"
  # code-server writes a config.yaml and logs under XDG dirs even for --version: keep them out of $HOME.
  out="$(XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data" "$PREFIX/node_modules/.bin/code-server" --version 2>&1)" \
    || { rm -rf "$scratch"; die "code-server --version failed: $out"; }
  rm -rf "$scratch"
  printf '  code-server --version: %s\n' "$(echo "$out" | tail -n 1)"
  echo "$out" | grep -q "^$VERSION .*with Code $CODE_VERSION" \
    || die "expected '$VERSION ... with Code $CODE_VERSION', got: $out"
}

if [ -f "$MARKER" ] && [ -x "$PREFIX/node_modules/.bin/code-server" ]; then
  say "code-server $VERSION already installed in $PREFIX (marker $MARKER)"
  check_version
  exit 0
fi

START=$(date +%s)
say "installing code-server $VERSION into $PREFIX"

# Tools the native builds need; fail here with a clear message rather than deep inside node-gyp.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" = "20" ] || die "code-server $VERSION needs Node 20, this is $(node --version)"
for tool in python3 make g++ rg; do
  command -v "$tool" >/dev/null || die "'$tool' is missing; install Debian packages: python3 make g++ ripgrep libkrb5-dev"
done
[ -e /usr/include/krb5.h ] || [ -e /usr/include/gssapi/gssapi.h ] || die "Kerberos headers missing; install Debian package libkrb5-dev"
RG="$(command -v rg)"

# Native modules compile against the headers of this Node (offline) rather than downloading them.
if [ -z "${npm_config_nodedir:-}" ] && [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
# ~/.npmrc may say yes=false; npx inside install steps must not stop to ask.
export npm_config_yes=true
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

rm -rf "$PREFIX"
mkdir -p "$PREFIX"
cd "$PREFIX"
echo '{ "name": "scalelm-code-server", "private": true }' > package.json

say "1/7 npm install code-server@$VERSION (scripts off: its postinstall downloads from GitHub)"
run npm install --no-save --ignore-scripts --no-package-lock "code-server@$VERSION"
[ -d "$CS" ] || die "code-server did not install into $CS"

say "2/7 argon2: build from source (code-server loads it at start even with --auth none)"
ARGON2="$(cd "$CS" && node -p 'require("path").dirname(require.resolve("argon2/package.json"))')"
(cd "$ARGON2" && run npx node-pre-gyp install --fallback-to-build)
(cd "$CS" && node -e 'require("argon2")') || die "argon2 built but does not load"

say "3/7 VS Code server dependencies (lib/vscode), scripts off"
(cd "$VSC" && run npm install --omit=dev --ignore-scripts)

say "4/7 ripgrep: use Debian's $RG instead of @vscode/ripgrep's download"
mkdir -p "$VSC/node_modules/@vscode/ripgrep/bin"
run ln -sfn "$RG" "$VSC/node_modules/@vscode/ripgrep/bin/rg"

say "5/7 rebuild the native modules of VS Code server"
(cd "$VSC" && run npm rebuild kerberos @vscode/spdlog node-pty native-watchdog @vscode/deviceid)
for m in kerberos @vscode/spdlog node-pty native-watchdog @vscode/deviceid; do
  (cd "$VSC" && node -e "require('$m')") || die "native module $m does not load after rebuild"
done

say "6/7 the rest of code-server's postinstall: links"
(cd "$VSC" && run ln -sfn node_modules node_modules.asar)
(cd "$VSC/bin/remote-cli" && run ln -sfn code-linux.sh code-server)
(cd "$VSC/bin/helpers" && run ln -sfn browser-linux.sh browser.sh)

say "7/7 built-in extensions' dependencies (lib/vscode/extensions)"
(cd "$VSC/extensions" && run npm install --omit=dev)

[ -x "$PREFIX/node_modules/.bin/code-server" ] || die "no code-server executable at $PREFIX/node_modules/.bin/code-server"
check_version
date -u +%FT%TZ > "$MARKER"
say "done in $(( $(date +%s) - START )) s; $(du -sh "$PREFIX" | cut -f1) in $PREFIX"
