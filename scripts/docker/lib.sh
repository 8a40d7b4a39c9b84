# Shared by the scripts under scripts/docker/ (sourced, not run).

# Progress goes to stderr: stdout of offline-images.sh is the `export` lines a caller evals.
dlog() { printf '[docker] %s\n' "$*" >&2; }

# Seconds since the epoch with a decimal, for the timings the scripts print.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The Debian mirror this machine's apt uses for SUITE (default bookworm), read from
# /etc/apt/sources.list and /etc/apt/sources.list.d/* (one-line and deb822 formats), so that no
# mirror is written into the project. Security and other suites are skipped: the stand-in images
# are made from the main archive only.
debian_mirror() {
  local suite="${1:-bookworm}" files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && files+=("$f"); done
  [ "${#files[@]}" -gt 0 ] || return 1
  mirror_in_sources "$suite" "${files[@]}"
}

# The first URI serving SUITE in the given apt source files.
mirror_in_sources() {
  local suite="$1"; shift
  awk -v suite="$suite" '
    # One-line format: deb [options] URI SUITE COMPONENTS...
    /^[[:space:]]*deb[[:space:]]/ {
      i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
      next
    }
    # deb822: stanzas separated by blank lines, "URIs:" and "Suites:" fields.
    /^[[:space:]]*$/ { if (types ~ /(^| )deb( |$)/ && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; exit } types = uris = suites = ""; next }
    /^Types:/ { types = $0; sub(/^Types:[[:space:]]*/, "", types) }
    /^URIs:/ { uris = $0; sub(/^URIs:[[:space:]]*/, "", uris) }
    /^Suites:/ { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
    END { if (types ~ /(^| )deb( |$)/ && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1] } }
  ' "$@" | head -n1 | grep .
}

# The label that records what an image was built from: same hash -> nothing to rebuild.
HASH_LABEL=org.sagaflow.content-hash

image_hash() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }

# sha256 of the files under DIR (names and contents, in a stable order) and of the extra words given.
tree_hash() {
  local dir="$1"; shift
  { (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); printf '%s\n' "$@"; } | sha256sum | cut -c1-64
}
