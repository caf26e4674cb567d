#!/usr/bin/env bash
# Clean-room rebuild (gate 8 of docs/gates.md): warden built twice from
# scratch out of frozen dependencies, and the two binaries compared.
#
# Each build gets an empty CARGO_HOME and an empty target dir, fetches with
# `cargo fetch --locked`, then builds with `cargo build --release --frozen
# --offline`. What would make two builds differ is pinned: source paths are
# remapped (the checkout, CARGO_HOME and the toolchain's sysroot all map to
# fixed names), SOURCE_DATE_EPOCH is the commit's time, one codegen unit,
# and the builds run in the same directory, one after the other.
#
# Usage: scripts/clean-room.sh [EVIDENCE.json]   (default releases/<version>/clean-room.json)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
evidence="${1:-releases/$version/clean-room.json}"
mkdir -p "$(dirname "$evidence")"

work="$(mktemp -d "${TMPDIR:-/tmp}/warden-clean-room.XXXXXX")"
trap 'rm -rf "$work"' EXIT
sysroot="$(rustc --print sysroot)"
export SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_STRIP=none

build() { # $1: label
  local home="$work/cargo-home" target="$work/target"
  rm -rf "$home" "$target"
  mkdir -p "$home"
  local start=$SECONDS
  export CARGO_HOME="$home" CARGO_TARGET_DIR="$target"
  export RUSTFLAGS="--remap-path-prefix=$root=/warden --remap-path-prefix=$home=/cargo-home --remap-path-prefix=$sysroot=/rust -C codegen-units=1"
  cargo fetch --locked >&2
  cargo build --release --frozen --offline --bin warden >&2
  echo "build $1: $((SECONDS - start)) s" >&2
  sha256sum "$target/release/warden" | cut -d' ' -f1
}

first="$(build 1)"
second="$(build 2)"
lock="$(sha256sum Cargo.lock | cut -d' ' -f1)"
cat > "$evidence" <<JSON
{
  "sha256": ["$first", "$second"],
  "identical": $([ "$first" = "$second" ] && echo true || echo false),
  "commit": "$(git rev-parse HEAD)",
  "cargo_lock_sha256": "$lock",
  "source_date_epoch": $SOURCE_DATE_EPOCH,
  "rustc": "$(rustc --version)",
  "cargo": "$(cargo --version)",
  "at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
JSON
echo "first  $first"
echo "second $second"
echo "evidence: $evidence"
[ "$first" = "$second" ]
