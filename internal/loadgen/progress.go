package loadgen

import (
	"context"
	"fmt"
	"io"
	"time"
)

// progress prints a line a second until stop ends: request rate, answers by
// kind and items sold. On a terminal (rewrite) the line rewrites itself.
func progress(stop context.Context, w io.Writer, rewrite bool, lr *loadRun) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var prev Totals
	for {
		select {
		case <-stop.Done():
			if rewrite {
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
		}
		c := lr.rec.counts()
		line := fmt.Sprintf("[%3.0fs] %6d req/s | 2xx %d  4xx %d  503 %d  5xx %d  no answer %d | sold %d/%d",
			time.Since(lr.rec.start).Seconds(), c.Requests-prev.Requests,
			c.OK, c.Rejected, c.Unavailable, c.ServerErrors, c.NoAnswer, lr.soldSoFar(), lr.sale.TotalItems)
		if rewrite {
			fmt.Fprint(w, "\r\033[K"+line)
		} else {
			fmt.Fprintln(w, line)
		}
		prev = c
	}
}

// soldSoFar is the sale's items sold: as last read from the service when the
// profile buys, else as the sale was found (the profile sells nothing).
func (lr *loadRun) soldSoFar() int {
	if lr.watch != nil {
		sold, _ := lr.watch.state()
		return sold
	}
	sold, _, _ := lr.ledger.state()
	return lr.sale.ItemsSold + sold
}
