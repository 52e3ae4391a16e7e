#!/usr/bin/env bash
# The contracts never break: every commit that touched protos/ is checked against its parent
# with `buf breaking` (so nothing that ever landed on main can have broken a client), or, when
# BUF_AGAINST is set, the working tree against that input only.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.tools/node_modules/.bin/buf}
if [ -n "${BUF_AGAINST:-}" ]; then
  echo "buf breaking against $BUF_AGAINST"
  exec "$BUF" breaking protos --against "$BUF_AGAINST"
fi
if ! git rev-parse -q --verify HEAD >/dev/null; then
  echo "buf breaking: no commits yet"; exit 0
fi
checked=0
for commit in $(git rev-list --reverse HEAD -- protos); do
  parent=$(git rev-parse -q --verify "$commit^" 2>/dev/null || true)
  [ -n "$parent" ] && git cat-file -e "$parent:protos/buf.yaml" 2>/dev/null || continue
  "$BUF" breaking ".git#ref=$commit,subdir=protos" --against ".git#ref=$parent,subdir=protos" \
    || { echo "buf breaking: $(git log -1 --format='%h %s' "$commit") breaks the contracts" >&2; exit 1; }
  checked=$((checked + 1))
done
# and the working tree (uncommitted proto edits) against HEAD
if git cat-file -e HEAD:protos/buf.yaml 2>/dev/null; then
  "$BUF" breaking protos --against ".git#ref=HEAD,subdir=protos"
  checked=$((checked + 1))
fi
echo "buf breaking: $checked change(s) of the contracts checked, none breaking"
