package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// Error codes of the API that the domain does not define: only HTTP has
// bodies, request targets, headers and media types.
const (
	eTooLarge             = "request_too_large" // a body over maxBodyBytes
	eURITooLong           = "uri_too_long"
	eHeadersTooLarge      = "headers_too_large"
	eUnsupportedMediaType = "unsupported_media_type"
)

// errorStatus is the one table from error codes to HTTP statuses. Codes it
// does not know, and EInternal, are 500.
func errorStatus(code string) int {
	switch code {
	case flashsale.EInvalid, flashsale.EInvalidUserID, flashsale.EInvalidItemID, flashsale.EInvalidCode:
		return http.StatusBadRequest
	case flashsale.EUnauthorized:
		return http.StatusUnauthorized
	case flashsale.ENotFound, flashsale.EItemNotFound, flashsale.ECodeNotFound:
		return http.StatusNotFound
	case flashsale.EMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case flashsale.EItemSold, flashsale.EAlreadyInCart, flashsale.EConflict, flashsale.EPurchaseBusy, flashsale.ESaleNotStarted:
		return http.StatusConflict
	case flashsale.ESaleEnded:
		return http.StatusGone
	case eTooLarge:
		return http.StatusRequestEntityTooLarge
	case eURITooLong:
		return http.StatusRequestURITooLong
	case eHeadersTooLarge:
		return http.StatusRequestHeaderFieldsTooLarge
	case eUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case flashsale.EUserLimit:
		return http.StatusUnprocessableEntity
	case flashsale.ERateLimited:
		return http.StatusTooManyRequests
	case flashsale.EUnavailable, flashsale.EOverloaded:
		return http.StatusServiceUnavailable
	}
	if strings.HasPrefix(code, "invalid_") {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// retryable reports whether the client should retry after a second.
func retryable(code string) bool {
	return code == flashsale.EUnavailable || code == flashsale.EOverloaded || code == flashsale.EPurchaseBusy
}

// errorResponse is the body of every error.
type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// appendJSON writes the response as json.Marshal does, without reflection.
func (e errorResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"error":`...)
	b = appendJSONString(b, e.Error)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	return append(b, '}')
}

// writeError answers err as JSON with the status of its code. The cause is
// never shown to the client: it is kept on the response for the request log,
// which logs it for 5xx answers only.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := flashsale.ErrorCode(err)
	if rw, ok := w.(*responseWriter); ok {
		rw.err = err
	}
	if retryable(code) {
		w.Header().Set("Retry-After", "1")
	}
	var wait flashsale.RetryAfter
	if errors.As(err, &wait) {
		w.Header().Set("Retry-After", strconv.FormatInt(wait.Seconds(), 10))
	}
	writeJSON(w, r, errorStatus(code), errorResponse{Error: code, Message: flashsale.ErrorMessage(err)})
}

// Header values shared by every JSON answer. A header's value slice is
// assigned rather than Set, which would allocate one per answer; nothing
// modifies a value slice in place.
var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	noStore         = []string{"no-store"}
	noSniff         = []string{"nosniff"}
)

// jsonAppender is a response that writes its JSON without reflection.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// writeJSON answers v as JSON with the given status.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var b []byte
	var err error
	if a, ok := v.(jsonAppender); ok {
		b = a.appendJSON(make([]byte, 0, 128))
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		if rw, ok := w.(*responseWriter); ok {
			rw.err = fmt.Errorf("encode %s response: %w", r.Pattern, err)
		}
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal_error","message":"internal error"}`)
	}
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Content-Type-Options"] = jsonContentType, noStore, noSniff
	w.WriteHeader(status)
	// A write error means the client went away; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// tooLarge is the error of a body over maxBodyBytes.
func tooLarge() error {
	return flashsale.Errorf(eTooLarge, "the request body must be at most %d bytes", maxBodyBytes)
}

// appendJSONString appends s as a JSON string: as it is when it holds only
// printable ASCII that encoding/json leaves alone (codes, timestamps, most
// messages), through encoding/json otherwise: the result is json.Marshal's.
func appendJSONString(b []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
