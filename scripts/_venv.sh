# Sourced by scripts/run and scripts/test: make .venv and install the project when pyproject changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON_BIN="${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}"
EXTRAS="${1:-}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv .venv
fi
hash="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=".venv/.installed-$hash${EXTRAS:+-dev}"
# A development install also satisfies the plain one.
if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-$hash-dev" ]; then
  echo "Installing the project${EXTRAS:+ with $EXTRAS extras} (first run takes a few minutes)"
  # This machine's pip config names local mirrors that may be absent: drop those warnings.
  quiet_pip() { .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
  quiet_pip --upgrade pip
  quiet_pip -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
