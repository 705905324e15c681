# Shared settings of the cross scripts; sourced, not run. Paths are absolute because cargo
# config values (-L dirs) and qemu prefixes must not depend on the current directory.
# shellcheck shell=bash

CROSS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Separate target dir: cross builds use another compiler and RUSTC_BOOTSTRAP=1, and must not
# take the lock of (or invalidate) the host builds in target/.
CROSS_TARGET_DIR=${CROSS_TARGET_DIR:-$CROSS_ROOT/target/cross}
CROSS_VENV=$CROSS_TARGET_DIR/tools/zig-venv
CROSS_UNWIND_DIR=$CROSS_TARGET_DIR/tools/musl-unwind
CROSS_DIST_DIR=$CROSS_TARGET_DIR/dist
# `rustup toolchain link` name for Debian's rustc-web 1.96 in /usr.
CROSS_TOOLCHAIN=deb-1.96
ZIGLANG_VERSION=0.17.0
CARGO_ZIGBUILD_VERSION=0.24.0
ALL_TARGETS=(
    aarch64-unknown-linux-gnu
    armv7-unknown-linux-gnueabihf
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
)
export CROSS_ROOT CROSS_TARGET_DIR CROSS_VENV CROSS_UNWIND_DIR CROSS_DIST_DIR CROSS_TOOLCHAIN
export ZIGLANG_VERSION CARGO_ZIGBUILD_VERSION

# Every cross cargo run gets the same environment: Debian's 1.96 (RUSTUP_TOOLCHAIN wins over
# rust-toolchain.toml, which pins 1.95 for host work), RUSTC_BOOTSTRAP=1 always (-Zbuild-std
# needs it, and toggling it rebuilds thiserror, whose build script watches it), the separate
# target dir, and the venv with zig/cargo-zigbuild first on PATH.
cross_env() {
    export RUSTUP_TOOLCHAIN=$CROSS_TOOLCHAIN
    export RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_DIR=$CROSS_TARGET_DIR
    export PATH=$CROSS_VENV/bin:$PATH
    # Without rustup (e.g. a machine where only Debian's toolchain exists), name it directly.
    if ! command -v rustup >/dev/null; then
        export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    fi
}

# cross_cargo <target> <cargo subcommand> [args…]: runs the subcommand for one target with the
# right driver (cargo or cargo-zigbuild), std source and target-specific flags.
cross_cargo() {
    local target=$1 sub=$2
    shift 2
    local driver=(cargo)
    local extra=(--config "$CROSS_ROOT/cross/cargo-config.toml" --target "$target")
    case $target in
        aarch64-unknown-linux-gnu)
            # Debian ships this std prebuilt (libstd-rust-web-dev:arm64).
            ;;
        armv7-unknown-linux-gnueabihf)
            extra+=(-Zbuild-std)
            ;;
        aarch64-unknown-linux-musl)
            extra+=(-Zbuild-std
                --config "target.aarch64-unknown-linux-musl.rustflags=[\"-C\", \"link-self-contained=no\", \"-L\", \"$CROSS_UNWIND_DIR/aarch64\"]")
            ;;
        armv7-unknown-linux-musleabihf)
            driver=(cargo-zigbuild)
            extra+=(-Zbuild-std)
            ;;
        *)
            echo "unknown target: $target (known: ${ALL_TARGETS[*]})" >&2
            return 2
            ;;
    esac
    (cd "$CROSS_ROOT" && "${driver[@]}" "$sub" "${extra[@]}" "$@")
}

# The command prefix that runs a binary of <target> under qemu-user; the same as the runners in
# cross/cargo-config.toml.
qemu_prefix() {
    case $1 in
        aarch64-unknown-linux-gnu)
            echo "qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib" ;;
        armv7-unknown-linux-gnueabihf)
            echo "qemu-arm -L /usr/arm-linux-gnueabihf -E LD_LIBRARY_PATH=/usr/arm-linux-gnueabihf/lib" ;;
        aarch64-unknown-linux-musl) echo "qemu-aarch64" ;;
        armv7-unknown-linux-musleabihf) echo "qemu-arm" ;;
        *) return 2 ;;
    esac
}

# The binutils prefix for strip/objdump of <target>'s binaries.
binutils_prefix() {
    case $1 in
        aarch64-*) echo aarch64-linux-gnu- ;;
        armv7-*) echo arm-linux-gnueabihf- ;;
        *) return 2 ;;
    esac
}
