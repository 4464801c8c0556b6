package flashsale

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
)

// A checkout code is the URL-safe base64 (no padding) of the 8-byte sale id
// followed by 16 bytes from crypto/rand: 128 random bits, bound to one sale by
// its prefix and to one user by the cart it names.
const (
	codeRandomBytes = 16
	codeBytes       = 8 + codeRandomBytes
	// CodeLen is the length of every well-formed code.
	CodeLen = (codeBytes*8 + 5) / 6
)

// NewCode returns a fresh checkout code for a cart in the given sale.
func NewCode(saleID int64) string {
	var b [codeBytes]byte
	binary.BigEndian.PutUint64(b[:8], uint64(saleID))
	// crypto/rand.Read never returns an error and always fills b.
	_, _ = rand.Read(b[8:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseCode validates a code's form and returns the sale it belongs to.
// It returns EInvalidCode for anything that NewCode cannot have produced.
func ParseCode(code string) (saleID int64, err error) {
	if len(code) != CodeLen {
		return 0, Errorf(EInvalidCode, "code must be %d URL-safe characters", CodeLen)
	}
	var b [codeBytes]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(code))
	if err != nil || n != codeBytes {
		return 0, Errorf(EInvalidCode, "code must be %d URL-safe characters", CodeLen)
	}
	id := int64(binary.BigEndian.Uint64(b[:8]))
	if id <= 0 {
		return 0, Errorf(EInvalidCode, "code does not name a sale")
	}
	return id, nil
}
