#!/usr/bin/env bash
# Checks that `pip install .` and its extras resolve to binary wheels, without TensorFlow, on
# platforms that have no TensorFlow wheels (macOS arm64; Linux aarch64, e.g. Grace hosts) and on
# Linux x86_64: `.` and `.[gcs]` everywhere, `.[cuda12]`/`.[cuda13]` on Linux, `.[tpu]` on x86_64.
# Needs PyPI; fetches metadata and builds one tiny pure-Python wheel.
#   .ci/check_install_resolves.sh [PYTHON]      (default: python3; PY_VERSION=3.11, TARGETS=... to narrow)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
PY_VERSION=${PY_VERSION:-3.11}
TARGETS=${TARGETS:-"macos-arm64 linux-aarch64 linux-x86_64"}

# pip expands a macOS tag to the older macOS versions but takes manylinux tags literally: list the
# manylinux tags of glibc 2.17 to 2.35 (Ubuntu 22.04, as on TPU VMs and Grace hosts).
platform_flags() {
    case "$1" in
        macos-arm64) echo "--platform macosx_14_0_arm64" ;;
        linux-*)
            local arch=${1#linux-} flags="--platform manylinux2014_${1#linux-}"
            for minor in $(seq 17 35); do flags="$flags --platform manylinux_2_${minor}_${arch}"; done
            echo "$flags" ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

requirements() {
    case "$1" in
        macos-arm64) echo ". .[gcs]" ;;
        linux-aarch64) echo ". .[gcs] .[cuda12] .[cuda13]" ;;
        linux-x86_64) echo ". .[gcs] .[cuda12] .[cuda13] .[tpu]" ;;
    esac
}

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
# promise (a TFDS dependency) is published only as a pure-Python sdist, which installs anywhere but
# which a binary-only resolution cannot see: give it the wheel built here.
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "promise>=2.3"
status=0
for target in $TARGETS; do
    for requirement in $(requirements "$target"); do
        # shellcheck disable=SC2046  # the flags are meant to split
        if "$PYTHON" -m pip install --dry-run --ignore-installed --find-links "$wheels" --only-binary=:all: \
            $(platform_flags "$target") --python-version "$PY_VERSION" --implementation cp \
            "$requirement" > "$wheels/log" 2>&1; then
            would=$(grep "^Would install" "$wheels/log" | cut -d' ' -f3-)
            echo "resolves: $requirement on $target (Python $PY_VERSION): $(echo "$would" | wc -w) packages," \
                "$(echo "$would" | tr ' ' '\n' | grep -E '^(jax|jaxlib|jax-cuda[0-9]+-plugin|libtpu)-[0-9]' | tr '\n' ' ')"
            if echo "$would" | tr ' ' '\n' | grep -q -E '^tensorflow(-cpu)?-[0-9]'; then
                echo "  but pulls TensorFlow"; status=1
            fi
        else
            echo "DOES NOT RESOLVE: $requirement on $target (Python $PY_VERSION)"
            grep -v "^WARNING" "$wheels/log" | tail -20
            status=1
        fi
    done
done
exit $status
