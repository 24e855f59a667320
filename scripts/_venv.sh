# shellcheck shell=bash
# Shared by scripts/demo and scripts/test: make a virtual environment and install a lock file into it
# with --require-hashes (every package pinned, every download checked against the lock's sha256 hashes;
# pip refuses a package the lock does not hash). Reinstalls only when the lock's content changed since the
# last install: the stamp holds the sha256 of the lock it installed (edit a .in, run ./scripts/lock).
# Usage: ensure_venv <venv dir> <lock file>
ensure_venv() {
  local venv="$1" lock="$2"
  local stamp digest
  stamp="$venv/.installed-$(basename "$lock")"
  digest="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$lock")"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "Installing $lock into $venv ..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    printf '%s\n' "$digest" > "$stamp"
  fi
}
