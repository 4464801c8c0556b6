package postgres

import (
	"fmt"
	"strconv"
	"strings"
)

// int64Array scans a PostgreSQL bigint[] (its text form, which is what the
// database/sql driver hands over for arrays).
type int64Array []int64

func (a *int64Array) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	case nil:
		*a = nil
		return nil
	default:
		return fmt.Errorf("scan bigint[]: unexpected %T", src)
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	out := (*a)[:0]
	for f := range strings.SplitSeq(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return fmt.Errorf("scan bigint[]: %w", err)
		}
		out = append(out, n)
	}
	*a = out
	return nil
}
