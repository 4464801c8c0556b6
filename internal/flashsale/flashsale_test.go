package flashsale

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCodeRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := NewCode(1795644000)
		if len(c) != CodeLen || strings.ContainsAny(c, "+/=") {
			t.Fatalf("code %q is not %d URL-safe characters", c, CodeLen)
		}
		if seen[c] {
			t.Fatalf("code %q repeated", c)
		}
		seen[c] = true
		id, err := ParseCode(c)
		if err != nil || id != 1795644000 {
			t.Fatalf("ParseCode(%q) = %d, %v", c, id, err)
		}
	}
}

func TestParseCodeRejects(t *testing.T) {
	for name, c := range map[string]string{
		"empty":        "",
		"short":        "abc",
		"long":         strings.Repeat("A", CodeLen+1),
		"not base64":   strings.Repeat("*", CodeLen),
		"padding":      strings.Repeat("A", CodeLen-1) + "=",
		"no sale":      strings.Repeat("A", CodeLen),
		"negative id":  strings.Repeat("_", CodeLen),
		"standard b64": strings.Repeat("+", CodeLen),
	} {
		if _, err := ParseCode(c); ErrorCode(err) != EInvalidCode {
			t.Errorf("%s: ParseCode(%q) error %v, want %s", name, c, err, EInvalidCode)
		}
	}
}

func TestValidateUserID(t *testing.T) {
	for id, ok := range map[string]bool{
		"alice": true, "user-42@example.com": true, "ünïcode": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a b": false, "a\x00b": false, "a\nb": false, "\xff": false,
	} {
		if err := ValidateUserID(id); (err == nil) != ok || (err != nil && ErrorCode(err) != EInvalidUserID) {
			t.Errorf("ValidateUserID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestSaleSlots(t *testing.T) {
	at := time.Date(2026, 11, 25, 22, 41, 7, 0, time.UTC)
	if got := SaleStart(at, time.Hour); !got.Equal(time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)) {
		t.Errorf("hourly slot of %s starts %s", at, got)
	}
	if got := SaleStart(at, time.Minute); !got.Equal(time.Date(2026, 11, 25, 22, 41, 0, 0, time.UTC)) {
		t.Errorf("minute slot of %s starts %s", at, got)
	}
	s := &Sale{ID: SaleID(at), StartedAt: at, EndedAt: at.Add(time.Hour), TotalItems: 10}
	for _, c := range []struct {
		now  time.Time
		code string
	}{
		{at.Add(-time.Nanosecond), ESaleNotStarted},
		{at, ""},
		{at.Add(time.Hour - time.Nanosecond), ""},
		{at.Add(time.Hour), ESaleEnded},
	} {
		if got := ErrorCode(s.CheckRunning(c.now)); got != c.code {
			t.Errorf("CheckRunning(%s) = %q, want %q", c.now, got, c.code)
		}
	}
}

func TestItemIDs(t *testing.T) {
	id := ItemID(1795644000, 10000)
	if id != 1795644000010000 {
		t.Errorf("ItemID = %d", id)
	}
	if sale, seq := SplitItemID(id); sale != 1795644000 || seq != 10000 {
		t.Errorf("SplitItemID(%d) = %d, %d", id, sale, seq)
	}
}

func TestNewSaleValidate(t *testing.T) {
	ok := NewSale{Duration: time.Hour, TotalItems: 10000, UserItemLimit: 10}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid sale rejected: %v", err)
	}
	for name, n := range map[string]NewSale{
		"no items":       {Duration: time.Hour, TotalItems: 0, UserItemLimit: 10},
		"too many items": {Duration: time.Hour, TotalItems: MaxSaleItems + 1, UserItemLimit: 10},
		"no limit":       {Duration: time.Hour, TotalItems: 10},
		"too short":      {Duration: time.Millisecond, TotalItems: 10, UserItemLimit: 10},
	} {
		if ErrorCode(n.Validate()) != EInvalid {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAttemptBudget: recording an attempt gets the request's remaining time,
// at least the grace (a request that ran out still gets its record written)
// and at most attemptTimeout.
func TestAttemptBudget(t *testing.T) {
	if got := attemptBudget(context.Background()); got != attemptTimeout {
		t.Errorf("no deadline: %v, want %v", got, attemptTimeout)
	}
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Minute))
	defer cancel()
	if got := attemptBudget(expired); got != attemptGrace {
		t.Errorf("deadline passed: %v, want %v", got, attemptGrace)
	}
	far, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if got := attemptBudget(far); got != attemptTimeout {
		t.Errorf("deadline in an hour: %v, want %v", got, attemptTimeout)
	}
	mid, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if got := attemptBudget(mid); got <= 2*time.Second || got > 3*time.Second {
		t.Errorf("deadline in 3s: %v, want the remaining time", got)
	}
}
