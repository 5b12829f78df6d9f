#!/usr/bin/env bash
# The CPU build of torch into a virtualenv: scripts/install-torch.sh PYTHON VERSION INDEX PYPI [CONSTRAINTS]
# 1. a local wheel where pip finds one without an index (its configured find-links, e.g. /opt/wheels);
# 2. else PyTorch's CPU index INDEX (torch==VERSION+cpu; on Linux an unlabelled torch from PyPI is a
#    multi-GB CUDA build), with PYPI as the extra index for torch's own dependencies.
# TORCH_DRY_RUN=1: pip resolves and reports (-v) what it would install, and installs nothing.
set -euo pipefail
PY="$1" VERSION="$2" INDEX="$3" PYPI="$4" CONSTRAINTS="${5:-}"
OPTS=(-q)
[ -n "${TORCH_DRY_RUN:-}" ] && OPTS=(--dry-run -v)
[ -n "$CONSTRAINTS" ] && OPTS+=(-c "$CONSTRAINTS")
LABEL=""
[ "$(uname -s)" = "Linux" ] && LABEL="+cpu"
have="$("$PY" -c 'from importlib.metadata import version
try: print(version("torch"))
except Exception: pass' 2>/dev/null || true)"
if [ -z "${TORCH_DRY_RUN:-}" ] && [ "$have" = "$VERSION$LABEL" ]; then
    echo "install-torch: torch $have already installed"
    exit 0
fi
# Where would pip get torch==VERSION with no index at all? Only a local wheel answers.
wheel="$("$PY" -m pip install --dry-run --ignore-installed --no-deps --no-index --quiet --report - \
          "torch==$VERSION" 2>/dev/null \
        | "$PY" -c 'import json, sys, urllib.parse, urllib.request
try: url = json.load(sys.stdin)["install"][0]["download_info"]["url"]
except Exception: sys.exit()
parts = urllib.parse.urlsplit(url)
print(urllib.request.url2pathname(parts.path) if parts.scheme == "file" else "torch @ " + url)' || true)"
if [ -n "$wheel" ]; then
    cmd=("$PY" -m pip install "${OPTS[@]}" "$wheel")
    echo "install-torch: local wheel $wheel"
else
    cmd=("$PY" -m pip install "${OPTS[@]}" --index-url "$INDEX" --extra-index-url "$PYPI"
         "torch==$VERSION$LABEL")
    echo "install-torch: no local torch $VERSION wheel; from $INDEX"
fi
echo "+ ${cmd[*]}"
"${cmd[@]}"
