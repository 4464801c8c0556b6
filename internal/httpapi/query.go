package httpapi

import (
	"net/url"
	"strconv"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// maxQueryLen bounds a raw query string; the API's own parameters need far less.
const maxQueryLen = 4 << 10

// parseQuery parses a raw query string strictly: a malformed escape or a
// semicolon separator is an error rather than silently dropped.
func parseQuery(raw string) (url.Values, error) {
	if len(raw) > maxQueryLen {
		return nil, flashsale.Errorf(flashsale.EInvalid, "the query string must be at most %d bytes", maxQueryLen)
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, &flashsale.Error{Code: flashsale.EInvalid, Message: "malformed query string", Err: err}
	}
	return v, nil
}

// queryValue returns the value of key in v and whether it is present. A key
// repeated with different values is an error with the given code; repeated
// with the same value it is accepted.
func queryValue(v url.Values, key, code string) (string, bool, error) {
	vs := v[key]
	if len(vs) == 0 {
		return "", false, nil
	}
	for _, x := range vs[1:] {
		if x != vs[0] {
			return "", true, flashsale.Errorf(code, "%s is given more than once with different values", key)
		}
	}
	return vs[0], true, nil
}

// parseID parses a positive int64 written in decimal ASCII digits only (no
// sign, space or base prefix), at most flashsale.MaxIDLen characters long.
func parseID(s string) (int64, bool) {
	if s == "" || len(s) > flashsale.MaxIDLen {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
