#!/usr/bin/env bash
# Fails when a C++ file under include/, src/, tests/, tools/ or bench/ is not clang-formatted.
set -u
cd "$1" || exit 2
bad=0
while IFS= read -r f; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not clang-formatted: $f"
    bad=$((bad + 1))
  fi
done < <(find include src tests tools bench -name '*.cpp' -o -name '*.h' | sort)
echo "format: $bad file(s) need clang-format"
[ "$bad" -eq 0 ]
