# Sourced by the scripts that build and cache tools (collector.sh, vulncheck.sh).
#
# flashsale_cache_dir prints the directory they cache into: $FLASHSALE_CACHE_DIR, else
# $XDG_CACHE_HOME/flashsale, else $HOME/.cache/flashsale; it fails when none is set.
flashsale_cache_dir() {
	if [[ -n "${FLASHSALE_CACHE_DIR:-}" ]]; then
		echo "$FLASHSALE_CACHE_DIR"
	elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
		echo "$XDG_CACHE_HOME/flashsale"
	elif [[ -n "${HOME:-}" ]]; then
		echo "$HOME/.cache/flashsale"
	else
		return 1
	fi
}
