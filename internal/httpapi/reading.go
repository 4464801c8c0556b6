package httpapi

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/reading"
)

// readingMaxAge is the age of the readings behind the probes, /metrics' health
// gauge and the sale reads: past it the next caller reads again. It bounds
// what those routes cost PostgreSQL and Redis, whatever their request rate:
// about one check of each dependency, one active-sale query and one query per
// sale id asked for, per second.
const readingMaxAge = time.Second

// activeSaleKey is the key of the active sale among the sale readings, which
// are otherwise keyed by sale id.
const activeSaleKey = "active"

// readings are what the server answers the unthrottled reads from, shared by
// their concurrent callers.
type readings struct {
	checks *reading.Cache[struct{}]    // by check name
	memory *reading.Cache[memoryStats] // runtime.ReadMemStats stops the world
	sales  *reading.Cache[*flashsale.Sale]
}

// newReadings builds the server's readings on s's checks and service.
func (s *Server) newReadings() readings {
	opts := reading.Options{MaxAge: readingMaxAge, Timeout: checkTimeout}
	return readings{
		checks: reading.New(func(ctx context.Context, name string) (struct{}, error) {
			for _, c := range s.checks {
				if c.name == name {
					err := runCheck(ctx, c, checkTimeout)
					if err != nil {
						// Once per reading, not once per probe.
						s.log.WarnContext(ctx, "dependency check failed", "check", name, "err", err)
					}
					return struct{}{}, err
				}
			}
			return struct{}{}, errors.New("no check " + name)
		}, opts),
		memory: reading.New(func(context.Context, string) (memoryStats, error) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return memoryStats{Alloc: ms.Alloc, TotalAlloc: ms.TotalAlloc, Sys: ms.Sys, NumGC: ms.NumGC}, nil
		}, opts),
		sales: reading.New(func(ctx context.Context, key string) (*flashsale.Sale, error) {
			if key == activeSaleKey {
				return s.svc.ActiveSale(ctx)
			}
			id, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return nil, err // keys are parsed ids
			}
			return s.svc.Sale(ctx, id)
		}, reading.Options{MaxAge: readingMaxAge}),
	}
}

// sale returns the reading of the sale with the given id, or of the active
// sale for activeSaleKey. A caller that leaves before it is read gets 503.
func (s *Server) sale(ctx context.Context, key string) (*flashsale.Sale, error) {
	sale, err := s.readings.sales.Get(ctx, key)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil, flashsale.Unavailable("database", err)
	}
	return sale, err
}
