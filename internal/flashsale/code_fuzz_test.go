package flashsale

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzParseCode checks the code parser: no panic, invalid_code for anything
// refused, and an accepted code is exactly what NewCode writes for its sale:
// CodeLen canonical URL-safe base64 characters naming a positive sale id.
func FuzzParseCode(f *testing.F) {
	valid := NewCode(1795644000)
	for _, s := range []string{
		"", valid, valid[1:], valid + "A", strings.ToUpper(valid), strings.Repeat("A", CodeLen),
		strings.Repeat("_", CodeLen), strings.Repeat("+", CodeLen), strings.Repeat("=", CodeLen),
		valid[:CodeLen-1] + "B", valid[:CodeLen-1] + "\x00", strings.Repeat("é", CodeLen/2),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		id, err := ParseCode(code)
		if err != nil {
			if ErrorCode(err) != EInvalidCode || id != 0 {
				t.Fatalf("ParseCode(%q) = %d, %v", code, id, err)
			}
			return
		}
		if id <= 0 || len(code) != CodeLen {
			t.Fatalf("accepted %q as sale %d", code, id)
		}
		b, derr := base64.RawURLEncoding.Strict().DecodeString(code)
		if derr != nil || len(b) != codeBytes || base64.RawURLEncoding.EncodeToString(b) != code {
			t.Fatalf("accepted non-canonical %q", code)
		}
		// Another code of the same sale has the same prefix and parses alike.
		if other := NewCode(id); other[:10] != code[:10] {
			t.Fatalf("NewCode(%d) = %q does not share the prefix of %q", id, other, code)
		} else if got, err := ParseCode(other); err != nil || got != id {
			t.Fatalf("ParseCode(NewCode(%d)) = %d, %v", id, got, err)
		}
	})
}

// TestCodeRandomBits checks that each of the 128 bits after a code's sale id
// varies: over 2,000 codes every bit is set in 40% to 60% of them (a fair
// bit falls outside that band with a probability below 10⁻¹⁸), so no part of
// the random tail is constant, copied from the sale id or counted.
func TestCodeRandomBits(t *testing.T) {
	const n = 2000
	var ones [codeRandomBytes * 8]int
	for range n {
		b, err := base64.RawURLEncoding.DecodeString(NewCode(1795644000))
		if err != nil || len(b) != codeBytes {
			t.Fatalf("decode: %v", err)
		}
		for i := range ones {
			if b[8+i/8]&(1<<(i%8)) != 0 {
				ones[i]++
			}
		}
	}
	for i, c := range ones {
		if c < n*4/10 || c > n*6/10 {
			t.Errorf("random bit %d set in %d of %d codes", i, c, n)
		}
	}
}
