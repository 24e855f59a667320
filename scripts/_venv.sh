# Shared by scripts/demo and scripts/test: make a virtual environment and install a requirements
# file into it, only when the file changed since the last install.
# Usage: ensure_venv <venv dir> <requirements file>
ensure_venv() {
  local venv="$1" requirements="$2"
  local stamp="$venv/.installed-$(basename "$requirements")"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ] || [ "requirements.txt" -nt "$stamp" ]; then
    echo "Installing $requirements into $venv ..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
}
