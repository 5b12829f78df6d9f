#!/usr/bin/env bash
# Creates the virtualenv for `make setup`: scripts/make-venv.sh PYTHON VENV
# PYTHON must be Python 3.11-3.13 (the Makefile passes the first of python3.11/3.12/3.13 on PATH, or
# PY=...). Debian and Ubuntu ship venv's ensurepip separately (python3.X-venv): installed here with
# apt-get when running as root, else the command to run is printed.
set -euo pipefail
PY="${1:-}"
VENV="${2:?usage: make-venv.sh PYTHON VENV}"
if [ -x "$VENV/bin/python" ]; then
    exit 0
fi
if [ -z "$PY" ] || ! command -v "$PY" >/dev/null 2>&1; then
    echo "make-venv: no Python 3.11, 3.12 or 3.13 found${PY:+ (PY=$PY)}." >&2
    echo "  Debian 12: apt-get install python3.11 python3.11-venv   (Debian 13: python3.13 python3.13-venv;" >&2
    echo "  Ubuntu 24.04: python3.12 python3.12-venv), or name one: make setup PY=/path/to/python3.12" >&2
    exit 1
fi
VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if ! "$PY" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'; then
    echo "make-venv: $PY is Python $VER; rag-archive needs 3.11, 3.12 or 3.13 (make setup PY=python3.11)" >&2
    exit 1
fi
if ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
    PKG="python$VER-venv"
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "make-venv: $PY has no ensurepip; installing $PKG" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PKG" >/dev/null
    else
        echo "make-venv: $PY cannot create a virtualenv (no ensurepip). Install it, then run make again:" >&2
        echo "  sudo apt-get install $PKG" >&2
        exit 1
    fi
fi
"$PY" -m venv "$VENV"
