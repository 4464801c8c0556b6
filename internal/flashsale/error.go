package flashsale

import (
	"errors"
	"fmt"
	"time"
)

// Error codes are stable identifiers returned to clients in the "error" field of
// a JSON error and used as the bounded "reason" label of failure metrics.
const (
	EInvalid          = "invalid_request"    // malformed or oversized parameter
	EInvalidUserID    = "invalid_user_id"    // user_id missing, too long or not printable
	EInvalidItemID    = "invalid_item_id"    // id missing or not a positive integer
	EInvalidCode      = "invalid_code"       // code missing or not a well-formed code
	ENotFound         = "not_found"          // unknown route or sale
	EItemNotFound     = "item_not_found"     // no such item in any sale
	ECodeNotFound     = "code_not_found"     // no cart with this code
	EItemSold         = "item_sold"          // item already sold
	EAlreadyInCart    = "already_in_cart"    // item already in the user's cart
	EUserLimit        = "user_limit_reached" // the user cannot buy more items in this sale
	ESaleNotStarted   = "sale_not_started"   // the item's sale has not started yet
	ESaleEnded        = "sale_ended"         // the item's or code's sale is over
	EConflict         = "conflict"           // the resource already exists
	EPurchaseBusy     = "purchase_in_progress"
	EUnauthorized     = "unauthorized"
	EMethodNotAllowed = "method_not_allowed"
	EUnavailable      = "service_unavailable" // PostgreSQL or Redis unreachable
	EOverloaded       = "overloaded"          // too many requests in flight: retry shortly
	ERateLimited      = "rate_limited"        // the user's or address's request budget is spent
	EInternal         = "internal_error"
)

// Error is the one error type of the service: a stable code, a message safe to
// show to the client, and optionally the underlying cause (never shown).
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a dependency failure so that it is reported as 503.
func Unavailable(dependency string, err error) *Error {
	return &Error{Code: EUnavailable, Message: dependency + " is unavailable, retry shortly", Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal for
// any other error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// RetryAfter is the cause of an error that the client may retry after this
// long: the HTTP API sends it as Retry-After.
type RetryAfter time.Duration

func (d RetryAfter) Error() string { return "retry after " + time.Duration(d).String() }

// Seconds is the Retry-After value: whole seconds, rounded up, at least 1.
func (d RetryAfter) Seconds() int64 {
	s := int64((time.Duration(d) + time.Second - 1) / time.Second)
	return max(s, 1)
}
