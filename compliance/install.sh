#!/usr/bin/env bash
# Install the Autobahn TestSuite (wstest) into a private Python 2.7 virtualenv.
#
# Idempotent: when the virtualenv exists and was built from the current pin files, it only
# checks that wstest runs and exits 0.  Otherwise it (re)builds the virtualenv from scratch.
#
# Environment:
#   AUTOBAHN_VENV   where the virtualenv goes
#                   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/stargate/autobahn-venv)
#   AUTOBAHN_PYTHON2  the Python 2.7 interpreter to build it with
#                   (default: pyenv's 2.7.x, else python2.7 on PATH)
#   AUTOBAHN_FORCE=1  rebuild even when the virtualenv looks current
#
# Prints the wstest path on its last line of output.  Exits non-zero with a message on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/stargate"
venv="${AUTOBAHN_VENV:-$cache_root/autobahn-venv}"
req_autobahn="$here/requirements-autobahn.txt"
req_virtualenv="$here/requirements-virtualenv.txt"
stamp="$venv/.stargate-autobahn-stamp"

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- the pins decide whether an existing virtualenv is current --------------------------------
[[ -r "$req_autobahn" && -r "$req_virtualenv" ]] || die "pin files missing next to $0"
want_stamp="$(cat "$req_virtualenv" "$req_autobahn" | sha256sum | cut -d' ' -f1)"

if [[ "${AUTOBAHN_FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; then
    if "$venv/bin/wstest" --autobahnversion >/dev/null 2>&1; then
        log "up to date: $venv"
        echo "$venv/bin/wstest"
        exit 0
    fi
    log "virtualenv at $venv is stamped but wstest does not run; rebuilding"
fi

# --- find Python 2.7 -------------------------------------------------------------------------
find_python2() {
    if [[ -n "${AUTOBAHN_PYTHON2:-}" ]]; then
        echo "$AUTOBAHN_PYTHON2"
        return
    fi
    local root candidate
    if command -v pyenv >/dev/null 2>&1 && root="$(pyenv root 2>/dev/null)"; then
        for candidate in "$root"/versions/2.7.18/bin/python "$root"/versions/2.7*/bin/python; do
            [[ -x "$candidate" ]] && { echo "$candidate"; return; }
        done
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python python2.7 python2; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return
        fi
    done
}

py2="$(find_python2)"
[[ -n "$py2" ]] || die "no Python 2.7 found (tried pyenv versions 2.7*, python2.7, python2); \
install one with 'pyenv install 2.7.18' or point AUTOBAHN_PYTHON2 at it"
py2_version="$("$py2" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || die "$py2 does not run"
[[ "$py2_version" == 2.7 ]] || die "$py2 is Python $py2_version, need 2.7 (wstest is Python 2 only)"
"$py2" -m pip --version >/dev/null 2>&1 \
    || die "$py2 has no pip (needed once to fetch virtualenv); run '$py2 -m ensurepip'"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
    || die "no C compiler (cc/gcc): wsaccel and other pinned packages are built from source"
log "using Python 2.7 at $py2"

# --- virtualenv, kept out of the interpreter's own site-packages ------------------------------
boot="$cache_root/virtualenv-py27"
boot_stamp="$boot/.stamp"
want_boot="$(sha256sum "$req_virtualenv" | cut -d' ' -f1)"
if [[ ! -f "$boot_stamp" || "$(cat "$boot_stamp")" != "$want_boot" ]]; then
    log "fetching virtualenv for Python 2.7 into $boot"
    rm -rf "$boot"
    mkdir -p "$boot"
    "$py2" -m pip install --disable-pip-version-check --no-warn-script-location --quiet \
        --target "$boot/lib" -r "$req_virtualenv" \
        || die "pip could not install virtualenv for Python 2.7 (see output above)"
    echo "$want_boot" > "$boot_stamp"
fi

# --- (re)create the virtualenv ---------------------------------------------------------------
if [[ -e "$venv" ]]; then
    # Only ever delete something that is recognisably ours (or empty).
    if [[ -f "$stamp" || -x "$venv/bin/python" || -z "$(ls -A "$venv" 2>/dev/null)" ]]; then
        log "removing stale virtualenv $venv"
        rm -rf "$venv"
    else
        die "$venv exists and is not a virtualenv; refusing to delete it (set AUTOBAHN_VENV)"
    fi
fi
mkdir -p "$(dirname "$venv")"
log "creating virtualenv $venv"
PYTHONPATH="$boot/lib" "$py2" -m virtualenv --quiet --no-periodic-update \
    --app-data "$boot/app-data" "$venv" \
    || die "virtualenv creation failed"

log "installing autobahntestsuite and pinned dependencies (about a minute)"
PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore "$venv/bin/python" -m pip install \
    --no-warn-script-location --quiet -r "$req_autobahn" \
    || die "pip install of autobahntestsuite failed (see output above); pins: $req_autobahn"
PYTHONWARNINGS=ignore "$venv/bin/python" -m pip check >&2 \
    || die "installed packages are inconsistent (pip check)"
version_out="$("$venv/bin/wstest" --autobahnversion 2>&1)" \
    || die "wstest was installed but does not run: $version_out"
log "$(echo "$version_out" | tr '\n' ' ')"
echo "$want_stamp" > "$stamp"
log "done: $venv"
echo "$venv/bin/wstest"
