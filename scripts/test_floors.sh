#!/usr/bin/env bash
# Runs the test suite on the lowest versions pyproject.toml allows for diffusers, transformers,
# accelerate and peft (torch stays at the CI pin), in a fresh venv: ./scripts/test_floors.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-floors}
floors=$(python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
names = ("diffusers", "transformers", "accelerate", "peft")
print(" ".join(re.sub(r">=", "==", d) for d in deps if re.split(r"[<>=]", d)[0] in names))
PY
)
echo "floors: $floors"
python3 -m venv "$venv"
"$venv/bin/pip" install torch==2.13.0 $floors -e ".[test]"
"$venv/bin/pytest" -n 2
