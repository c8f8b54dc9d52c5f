# shellcheck shell=bash
# The containerd versions the tests run against: Debian bookworm's 1.6 (installed system-wide by deps.sh), and
# trixie's 1.7 and sid's 2.1, which are never installed: their .deb is downloaded and extracted into a private
# cache directory (they are built for a newer libc than bookworm's, but containerd and ctr run on bookworm).
# Source it, then:
#
#   ensure_containerd_versions      # makes sure 1.7 and 2.1 are in the cache (downloads only what is missing);
#                                   # quiet unless it fails
#   containerd_bin_dir SERIES       # prints the directory holding that series' containerd and ctr
#                                   # (1.6 → /usr/bin; 1.7, 2.1 → the cache); fails if it is not there
#   containerd_series_version DIR   # prints the version `DIR/containerd --version` reports, e.g. 1.7.24
#
# apt: trixie and sid are added as sources with Pin-Priority 100, so no package is ever upgraded from them by
# itself; the downloads are `apt-get download containerd=<version>` + `dpkg -x`.
# Cache: $CTRD_VERSIONS_CACHE (default /var/cache/containerd-shim-csharp/containerd)/<debian version>/, plus a
# <series> symlink to it. The Debian version each series is pinned to is below; if the mirror no longer has it,
# the suite's current version of the same series is taken (with a warning), and a different series is an error.

if [[ -n "${_SHIMV2_CONTAINERD_VERSIONS_SH:-}" ]]; then return 0; fi
_SHIMV2_CONTAINERD_VERSIONS_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CTRD_VERSIONS_CACHE="${CTRD_VERSIONS_CACHE:-/var/cache/containerd-shim-csharp/containerd}"
# series → "suite debian-version"
declare -gA SHIMV2_CONTAINERD_SOURCES=(
  [1.7]="trixie 1.7.24~ds1-6+deb13u1"
  [2.1]="sid 2.1.9+ds1-5"
)
SHIMV2_APT_SOURCES_FILE=/etc/apt/sources.list.d/shimv2-newer-containerd.sources
SHIMV2_APT_PIN_FILE=/etc/apt/preferences.d/shimv2-newer-containerd

containerd_series_version() {
  local out
  out="$("$1/containerd" --version 2>/dev/null)" || return 1
  # "containerd github.com/containerd/containerd 1.7.24~ds1 ..." / ".../v2 2.1.9+unknown"
  awk '{ v = $3; sub(/[~+].*/, "", v); print v; exit }' <<<"$out"
}

containerd_bin_dir() {
  local series="$1" dir
  case "$series" in
    1.6) dir=/usr/bin ;;
    *) [[ -n "${SHIMV2_CONTAINERD_SOURCES[$series]:-}" ]] || { echo "unknown containerd series $series (have 1.6 ${!SHIMV2_CONTAINERD_SOURCES[*]})" >&2; return 1; }
       dir="$CTRD_VERSIONS_CACHE/$series" ;;
  esac
  _containerd_dir_ok "$dir" "$series" || { echo "containerd $series is not in $dir (run ensure_containerd_versions)" >&2; return 1; }
  printf '%s\n' "$dir"
}

_containerd_dir_ok() {
  local dir="$1" series="$2" v
  [[ -x "$dir/containerd" && -x "$dir/ctr" ]] || return 1
  v="$(containerd_series_version "$dir")" || return 1
  [[ "$v" == "$series".* ]]
}

# The Debian mirror apt already uses for bookworm (deb822 or one-line sources).
_debian_mirror() {
  local m
  m="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null)"
  [[ -n "$m" ]] || m="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
       | awk '$0 ~ / bookworm / { print $2; exit }')"
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

_ensure_apt_sources() {
  local suites=() series
  for series in "${!SHIMV2_CONTAINERD_SOURCES[@]}"; do suites+=("${SHIMV2_CONTAINERD_SOURCES[$series]%% *}"); done
  local want_sources want_pins s
  want_sources="$(printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$(_debian_mirror)" "$(printf '%s\n' "${suites[@]}" | sort -u | tr '\n' ' ' | sed 's/ $//')")"
  want_pins="$(for s in $(printf '%s\n' "${suites[@]}" | sort -u); do
    printf '# Never upgrade anything from %s by itself: only its containerd is downloaded (not installed) for tests.\nPackage: *\nPin: release n=%s\nPin-Priority: 100\n\n' "$s" "$s"; done)"
  local changed=0
  if [[ "$(cat "$SHIMV2_APT_PIN_FILE" 2>/dev/null)" != "$want_pins" ]]; then
    printf '%s\n' "$want_pins" >"$SHIMV2_APT_PIN_FILE"; changed=1
  fi
  if [[ "$(cat "$SHIMV2_APT_SOURCES_FILE" 2>/dev/null)" != "$want_sources" ]]; then
    printf '%s\n' "$want_sources" >"$SHIMV2_APT_SOURCES_FILE"; changed=1
  fi
  return $(( 1 - changed ))   # 0 = changed (an apt-get update is due)
}

# _fetch_containerd SERIES: downloads and extracts that series into the cache.
_fetch_containerd() {
  local series="$1" suite version
  read -r suite version <<<"${SHIMV2_CONTAINERD_SOURCES[$series]}"
  local work deb
  work="$(mktemp -d "$CTRD_VERSIONS_CACHE/.download.XXXXXX")"
  # _apt cannot write into root's private dir: download as root (the warning says just that).
  if ! (cd "$work" && apt-get download -q "containerd=$version" >/dev/null 2>&1); then
    warn "containerd $version is no longer on the mirror; taking $suite's current containerd"
    run_quiet "apt-get download containerd/$suite" bash -c 'cd "$1" && apt-get download -q "containerd/$2"' _ "$work" "$suite" \
      || { rm -rf "$work"; return 1; }
  fi
  deb="$(find "$work" -maxdepth 1 -name 'containerd_*.deb' | head -n1)"
  [[ -n "$deb" ]] || { rm -rf "$work"; echo "apt-get download left no containerd .deb" >&2; return 1; }
  version="$(dpkg-deb -f "$deb" Version)"
  local dest="$CTRD_VERSIONS_CACHE/$version"
  rm -rf "$dest"
  run_quiet "dpkg -x $deb" dpkg -x "$deb" "$work/root" || { rm -rf "$work"; return 1; }
  mv "$work/root" "$dest"
  rm -rf "$work"
  if ! _containerd_dir_ok "$dest/usr/bin" "$series"; then
    echo "$suite's containerd ($version, $dest) does not run here or is not $series: $("$dest/usr/bin/containerd" --version 2>&1 | head -n1)" >&2
    return 1
  fi
  ln -sfn "$version/usr/bin" "$CTRD_VERSIONS_CACHE/$series"
}

ensure_containerd_versions() {
  local missing=() series
  for series in $(printf '%s\n' "${!SHIMV2_CONTAINERD_SOURCES[@]}" | sort); do
    _containerd_dir_ok "$CTRD_VERSIONS_CACHE/$series" "$series" || missing+=("$series")
  done
  (( ${#missing[@]} == 0 )) && return 0
  (( EUID == 0 )) || die "containerd ${missing[*]} missing from $CTRD_VERSIONS_CACHE; run as root to download them"
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "not a Debian system: cannot fetch containerd ${missing[*]}"
  mkdir -p "$CTRD_VERSIONS_CACHE"
  # One fetcher at a time (worktrees and CI jobs share the cache).
  exec {_ctrd_lock}>"$CTRD_VERSIONS_CACHE/.lock"
  flock "$_ctrd_lock"
  local rc=0
  (
    export DEBIAN_FRONTEND=noninteractive
    local need_update=0
    _ensure_apt_sources && need_update=1
    for series in "${missing[@]}"; do
      apt-cache show "containerd=${SHIMV2_CONTAINERD_SOURCES[$series]#* }" >/dev/null 2>&1 || need_update=1
    done
    if (( need_update )); then
      run_quiet "apt-get update" apt-get update -q || exit 1
    fi
    for series in "${missing[@]}"; do
      _containerd_dir_ok "$CTRD_VERSIONS_CACHE/$series" "$series" && continue   # another fetcher got it meanwhile
      _fetch_containerd "$series" || exit 1
    done
  ) || rc=$?
  flock -u "$_ctrd_lock"; exec {_ctrd_lock}>&-
  (( rc == 0 )) || die "fetching containerd ${missing[*]} failed"
}
