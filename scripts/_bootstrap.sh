# shellcheck shell=bash
# Shared helpers for scripts/run and scripts/test. Source it (don't run it), then call:
#   paycell_bootstrap            .venv in the checkout, with paycell installed editable ('.[dev]');
#                                pip runs only when pyproject.toml changed since the last install
#   paycell_devservices_env ...  eval `python -m paycell.devservices env --state .state ...`:
#                                Postgres and Redis from PAYCELL_* vars, else the local default
#                                ports, else embedded servers started under .state/
#   paycell_jwt_secret_env       PAYCELL_JWT_SECRET, when unset: the dev secret in .state/jwt_secret
#                                (mode 0600), generated the first time (paycell ships no secret)
# Sourcing it cds to the repository root. Set PYTHON to pick another interpreter (>= 3.11).

PAYCELL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PAYCELL_VENV="$PAYCELL_ROOT/.venv"
PAYCELL_STATE="$PAYCELL_ROOT/.state"
PAYCELL_MIN_PYTHON="3.11"
cd "$PAYCELL_ROOT" || exit 1

paycell_die() {
    printf 'scripts/%s: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

paycell_note() {
    printf '%s\n' "$*" >&2
}

# Exit 0 when interpreter $1 runs and is at least PAYCELL_MIN_PYTHON.
_paycell_python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

_paycell_pyproject_hash() {
    "$PAYCELL_VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$PAYCELL_ROOT/pyproject.toml"
}

paycell_bootstrap() {
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 \
        || paycell_die "paycell needs Python >= $PAYCELL_MIN_PYTHON, and '$python' is not on PATH (set PYTHON=/path/to/python3.11)"
    if ! _paycell_python_ok "$python"; then
        paycell_die "paycell needs Python >= $PAYCELL_MIN_PYTHON, but '$python' is $("$python" -V 2>&1 || echo 'not runnable')" \
            "(install 3.11 or newer, or set PYTHON=/path/to/python3.11)"
    fi

    # A .venv that no longer runs (moved checkout, removed interpreter) or is too old is rebuilt.
    if [ -e "$PAYCELL_VENV" ] && ! _paycell_python_ok "$PAYCELL_VENV/bin/python"; then
        paycell_note "paycell: $PAYCELL_VENV is broken or older than Python $PAYCELL_MIN_PYTHON; recreating it"
        rm -rf "$PAYCELL_VENV"
    fi
    if [ ! -x "$PAYCELL_VENV/bin/python" ]; then
        paycell_note "paycell: creating $PAYCELL_VENV with $("$python" -V 2>&1)"
        "$python" -m venv "$PAYCELL_VENV" \
            || paycell_die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi

    local stamp="$PAYCELL_VENV/.paycell-pyproject.sha256" want have=""
    want="$(_paycell_pyproject_hash)" || paycell_die "cannot read pyproject.toml"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$want" != "$have" ]; then
        local started=$SECONDS
        paycell_note "paycell: installing paycell and its dependencies into .venv (pyproject.toml changed; the first time takes a minute or so) ..."
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            "$PAYCELL_VENV/bin/python" -m pip install -qq --editable "${PAYCELL_ROOT}[dev]" \
            || paycell_die "pip install -e '.[dev]' failed (see the errors above)"
        printf '%s\n' "$want" >"$stamp"
        paycell_note "paycell: installed in $((SECONDS - started))s"
    fi
    export VIRTUAL_ENV="$PAYCELL_VENV"
    export PATH="$PAYCELL_VENV/bin:$PATH"
}

# Export the PAYCELL_* URLs of the Postgres and Redis to use; extra args go to `devservices env`
# (e.g. --test). Stop embedded servers with: .venv/bin/python -m paycell.devservices stop --state .state
paycell_devservices_env() {
    local exports
    exports="$("$PAYCELL_VENV/bin/python" -m paycell.devservices env --state "$PAYCELL_STATE" "$@")" \
        || paycell_die "could not find or start Postgres and Redis (see above)"
    eval "$exports"
}

# Export PAYCELL_JWT_SECRET unless it is set: the one kept in .state/jwt_secret, made the first time.
paycell_jwt_secret_env() {
    local exports
    exports="$("$PAYCELL_VENV/bin/python" -m paycell.devservices jwt-secret --state "$PAYCELL_STATE")" \
        || paycell_die "could not read or generate the dev JWT secret (see above)"
    eval "$exports"
}
